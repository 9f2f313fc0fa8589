import 'dart:async';
import 'dart:convert';

import 'package:http/http.dart' as http;

import 'config.dart';
import 'models.dart';

/// The error code of the API's 404 answer when nothing is published yet.
const String noBuildPublishedCode = 'no_build_published';

/// What `GET /apk/latest` answered.
sealed class LatestApkResult {
  const LatestApkResult();
}

/// A build is published: its metadata and download link.
final class ApkAvailable extends LatestApkResult {
  const ApkAvailable(this.apk);

  final LatestApk apk;
}

/// The API answered 404 "no build published yet".
final class NoBuildPublished extends LatestApkResult {
  const NoBuildPublished(this.message);

  final String message;
}

/// A failed call: the server could not be reached, or it answered an error
/// (non-2xx other than "no build published") or an unexpected body.
class ApiException implements Exception {
  const ApiException(this.message, {this.statusCode, this.code});

  /// A sentence for the user.
  final String message;

  /// The HTTP status, when the server answered.
  final int? statusCode;

  /// The API's `error` code, when the body carried one.
  final String? code;

  @override
  String toString() {
    final String status = statusCode == null ? '' : ' (HTTP $statusCode)';
    return 'ApiException: $message$status';
  }
}

/// Calls the latest-APK API. The [http.Client] is injectable for tests.
class ApiClient {
  ApiClient({
    required String baseUrl,
    http.Client? httpClient,
    this.timeout = const Duration(seconds: 15),
  })  : baseUrl = normalizeBaseUrl(baseUrl),
        _http = httpClient ?? http.Client(),
        _ownsClient = httpClient == null;

  /// The API's base URL without a trailing slash.
  final String baseUrl;

  /// How long one request may take.
  final Duration timeout;

  final http.Client _http;
  final bool _ownsClient;

  /// `{baseUrl}/apk/latest`.
  Uri get latestApkUri => Uri.parse('$baseUrl/apk/latest');

  /// Fetches the newest APK's metadata.
  ///
  /// Returns [ApkAvailable] or [NoBuildPublished]; throws [ApiException] for
  /// anything else.
  Future<LatestApkResult> fetchLatest() async {
    final http.Response response = await _get(latestApkUri);
    final int status = response.statusCode;
    final Object? body = _decodeJson(response);
    if (status == 200) {
      if (body is! Map<String, Object?>) {
        throw const ApiException('The server sent an answer that is not a JSON object.', statusCode: 200);
      }
      try {
        return ApkAvailable(LatestApk.fromJson(body));
      } on FormatException catch (error) {
        throw ApiException('The server sent an unexpected answer: ${error.message}.', statusCode: 200);
      }
    }
    final String? code = _field(body, 'error');
    final String? message = _field(body, 'message');
    if (status == 404 && code == noBuildPublishedCode) {
      return NoBuildPublished(message ?? 'No build has been published yet.');
    }
    throw ApiException(
      message ?? _describeStatus(status),
      statusCode: status,
      code: code,
    );
  }

  /// Closes the HTTP client when this object created it.
  void close() {
    if (_ownsClient) {
      _http.close();
    }
  }

  Future<http.Response> _get(Uri uri) async {
    try {
      return await _http
          .get(uri, headers: const <String, String>{'Accept': 'application/json'})
          .timeout(timeout);
    } on TimeoutException {
      throw ApiException('The server did not answer within ${timeout.inSeconds} seconds.');
    } on http.ClientException catch (error) {
      throw ApiException('Could not reach the server: ${error.message}');
    } on Exception catch (error) {
      throw ApiException('Could not reach the server: $error');
    }
  }
}

Object? _decodeJson(http.Response response) {
  try {
    return jsonDecode(utf8.decode(response.bodyBytes));
  } on FormatException {
    return null;
  }
}

String? _field(Object? body, String name) {
  if (body is Map<String, Object?>) {
    final Object? value = body[name];
    if (value is String && value.isNotEmpty) {
      return value;
    }
  }
  return null;
}

String _describeStatus(int status) {
  if (status == 403 || status == 401) {
    return 'The server refused the request (HTTP $status). Check the API URL.';
  }
  if (status == 404) {
    return 'The API URL does not point to the latest-APK service (HTTP 404).';
  }
  if (status >= 500) {
    return 'The server had a problem (HTTP $status). Try again later.';
  }
  return 'The server answered HTTP $status.';
}
