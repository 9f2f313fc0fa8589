import 'package:flutter/foundation.dart';

final RegExp _sha256Pattern = RegExp(r'^[0-9a-f]{64}$');

/// The newest published APK, as `GET /apk/latest` describes it.
@immutable
class LatestApk {
  const LatestApk({
    required this.version,
    required this.key,
    required this.size,
    required this.sha256,
    required this.uploadedAt,
    required this.url,
    required this.expiresIn,
  });

  /// Parses and checks the API's JSON answer.
  ///
  /// Throws a [FormatException] naming the first field that is missing or
  /// has the wrong shape.
  factory LatestApk.fromJson(Map<String, Object?> json) {
    final String version = _requireString(json, 'version');
    final String key = _requireString(json, 'key');
    final int size = _requireInt(json, 'size', min: 0);
    final Object? rawSha = json['sha256'];
    if (rawSha != null && (rawSha is! String || !_sha256Pattern.hasMatch(rawSha.toLowerCase()))) {
      throw const FormatException('"sha256" must be 64 hexadecimal characters or null');
    }
    final String uploadedText = _requireString(json, 'uploaded_at');
    final DateTime? uploadedAt = DateTime.tryParse(uploadedText);
    if (uploadedAt == null) {
      throw FormatException('"uploaded_at" is not an ISO 8601 date-time', uploadedText);
    }
    final String urlText = _requireString(json, 'url');
    final Uri? url = Uri.tryParse(urlText);
    if (url == null || !(url.isScheme('https') || url.isScheme('http')) || url.host.isEmpty) {
      throw const FormatException('"url" must be an absolute http(s) URL');
    }
    final int expiresIn = _requireInt(json, 'expires_in', min: 1);
    return LatestApk(
      version: version,
      key: key,
      size: size,
      sha256: rawSha is String ? rawSha.toLowerCase() : null,
      uploadedAt: uploadedAt.toUtc(),
      url: url,
      expiresIn: Duration(seconds: expiresIn),
    );
  }

  /// The build version, e.g. `0.1.42`.
  final String version;

  /// The object key in the bucket, e.g. `apks/0.1.42/app-release.apk`.
  final String key;

  /// The APK's size in bytes.
  final int size;

  /// Lower-case hex SHA-256 of the APK, or null when it was not recorded.
  final String? sha256;

  /// When the APK was uploaded (UTC).
  final DateTime uploadedAt;

  /// The presigned download URL.
  final Uri url;

  /// How long [url] stays valid after the answer was produced.
  final Duration expiresIn;

  /// The size in human-readable form, e.g. `18.4 MB`.
  String get sizeText => formatBytes(size);

  /// The upload time as `YYYY-MM-DD HH:MM UTC`.
  String get uploadedText => formatUtc(uploadedAt);
}

String _requireString(Map<String, Object?> json, String field) {
  final Object? value = json[field];
  if (value is! String || value.trim().isEmpty) {
    throw FormatException('"$field" must be a non-empty string');
  }
  return value;
}

int _requireInt(Map<String, Object?> json, String field, {required int min}) {
  final Object? value = json[field];
  if (value is num && value.isFinite && value == value.roundToDouble() && value >= min) {
    return value.toInt();
  }
  throw FormatException('"$field" must be a whole number >= $min');
}

/// Formats a byte count with SI units: `999 B`, `1.5 kB`, `18.4 MB`, `2.0 GB`.
String formatBytes(int bytes) {
  if (bytes < 0) {
    throw ArgumentError.value(bytes, 'bytes', 'must not be negative');
  }
  const List<String> units = <String>['kB', 'MB', 'GB', 'TB'];
  if (bytes < 1000) {
    return '$bytes B';
  }
  double value = bytes.toDouble();
  String unit = units.first;
  for (final String candidate in units) {
    value /= 1000;
    unit = candidate;
    if (value < 999.95) {
      break;
    }
  }
  return '${value.toStringAsFixed(1)} $unit';
}

/// Formats [time] in UTC as `YYYY-MM-DD HH:MM UTC`.
String formatUtc(DateTime time) {
  final DateTime utc = time.toUtc();
  String two(int n) => n.toString().padLeft(2, '0');
  return '${utc.year}-${two(utc.month)}-${two(utc.day)} '
      '${two(utc.hour)}:${two(utc.minute)} UTC';
}
