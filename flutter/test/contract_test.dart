import 'dart:convert';
import 'dart:io';

import 'package:flutter_test/flutter_test.dart';
import 'package:http/http.dart' as http;
import 'package:http/testing.dart';
import 'package:latest_apk_app/src/api_client.dart';
import 'package:latest_apk_app/src/models.dart';

/// Every example answer of the API contract (openapi.yaml), by operation and
/// status; rendered into the fixture by `inv api.render`.
final Map<String, Object?> _examples =
    jsonDecode(File('test/fixtures/api_examples.json').readAsStringSync()) as Map<String, Object?>;

List<Map<String, Object?>> _answers(String operation, String status) {
  final Map<String, Object?> byStatus = _examples[operation]! as Map<String, Object?>;
  final List<Object?> bodies = (byStatus[status] as List<Object?>?) ?? const <Object?>[];
  return bodies.cast<Map<String, Object?>>();
}

ApiClient _answering(Map<String, Object?> body, int status) {
  return ApiClient(
    baseUrl: 'https://api.example.test/dev/',
    httpClient: MockClient((http.Request request) async {
      return http.Response(
        jsonEncode(body),
        status,
        headers: const <String, String>{'content-type': 'application/json'},
      );
    }),
  );
}

void main() {
  group('the contract examples', () {
    for (final String operation in <String>['getLatestApk', 'getApkVersion']) {
      test('$operation: every 200 example parses as a LatestApk', () {
        final List<Map<String, Object?>> bodies = _answers(operation, '200');
        expect(bodies, isNotEmpty);
        for (final Map<String, Object?> body in bodies) {
          final LatestApk apk = LatestApk.fromJson(body);
          expect(apk.version, body['version']);
          expect(apk.size, body['size']);
          expect(apk.expiresIn.inSeconds, body['expires_in']);
          expect(apk.url.toString(), body['url']);
        }
      });
    }

    test('the 404 example of /apk/latest means no build is published', () async {
      final Map<String, Object?> body = _answers('getLatestApk', '404').single;
      expect(await _answering(body, 404).fetchLatest(), isA<NoBuildPublished>());
    });

    test('every error example of /apk/latest is an ApiException with its code', () async {
      for (final String status in <String>['400', '500', '502']) {
        final List<Map<String, Object?>> bodies = _answers('getLatestApk', status);
        expect(bodies, isNotEmpty, reason: 'status $status has an example');
        for (final Map<String, Object?> body in bodies) {
          await expectLater(
            _answering(body, int.parse(status)).fetchLatest(),
            throwsA(
              isA<ApiException>()
                  .having((ApiException e) => e.code, 'code', body['error'])
                  .having((ApiException e) => e.statusCode, 'statusCode', int.parse(status)),
            ),
          );
        }
      }
    });
  });
}
