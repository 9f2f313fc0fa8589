import 'dart:convert';

import 'package:flutter_test/flutter_test.dart';
import 'package:http/http.dart' as http;
import 'package:http/testing.dart';
import 'package:latest_apk_app/src/api_client.dart';
import 'package:latest_apk_app/src/config.dart';
import 'package:latest_apk_app/src/models.dart';

const String _sha = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08';

Map<String, Object?> _apkJson({Map<String, Object?> overrides = const <String, Object?>{}}) {
  return <String, Object?>{
    'version': '0.1.42',
    'key': 'apks/0.1.42/app-release.apk',
    'size': 18432000,
    'sha256': _sha,
    'uploaded_at': '2026-11-20T09:30:00Z',
    'url': 'https://bucket.example.test/apks/0.1.42/app-release.apk?X-Amz-Signature=abc',
    'expires_in': 900,
    ...overrides,
  };
}

http.Response _json(Object body, int status) {
  return http.Response(
    jsonEncode(body),
    status,
    headers: const <String, String>{'content-type': 'application/json; charset=utf-8'},
  );
}

ApiClient _client(MockClientHandler handler) {
  return ApiClient(baseUrl: 'https://api.example.test/dev/', httpClient: MockClient(handler));
}

void main() {
  group('ApiClient.fetchLatest', () {
    test('calls {base}/apk/latest and parses a published build', () async {
      final List<http.Request> requests = <http.Request>[];
      final ApiClient client = _client((http.Request request) async {
        requests.add(request);
        return _json(_apkJson(), 200);
      });

      final LatestApkResult result = await client.fetchLatest();

      expect(requests.single.method, 'GET');
      expect(requests.single.url.toString(), 'https://api.example.test/dev/apk/latest');
      expect(requests.single.headers['Accept'], 'application/json');
      expect(result, isA<ApkAvailable>());
      final LatestApk apk = (result as ApkAvailable).apk;
      expect(apk.version, '0.1.42');
      expect(apk.key, 'apks/0.1.42/app-release.apk');
      expect(apk.size, 18432000);
      expect(apk.sizeText, '18.4 MB');
      expect(apk.sha256, _sha);
      expect(apk.uploadedAt, DateTime.utc(2026, 11, 20, 9, 30));
      expect(apk.uploadedText, '2026-11-20 09:30 UTC');
      expect(apk.url.host, 'bucket.example.test');
      expect(apk.expiresIn, const Duration(minutes: 15));
    });

    test('accepts a build whose sha256 was not recorded', () async {
      final ApiClient client = _client(
        (http.Request request) async => _json(_apkJson(overrides: <String, Object?>{'sha256': null}), 200),
      );

      final LatestApkResult result = await client.fetchLatest();

      expect((result as ApkAvailable).apk.sha256, isNull);
    });

    test('maps the 404 "no build published" answer to NoBuildPublished', () async {
      final ApiClient client = _client(
        (http.Request request) async => _json(
          <String, String>{'error': 'no_build_published', 'message': 'No APK has been published yet.'},
          404,
        ),
      );

      final LatestApkResult result = await client.fetchLatest();

      expect(result, isA<NoBuildPublished>());
      expect((result as NoBuildPublished).message, 'No APK has been published yet.');
    });

    test('treats any other 404 (wrong API URL) as an error', () async {
      final ApiClient client = _client(
        (http.Request request) async =>
            _json(<String, String>{'error': 'not_found', 'message': 'No route for GET /x.'}, 404),
      );

      await expectLater(
        client.fetchLatest(),
        throwsA(
          isA<ApiException>()
              .having((ApiException e) => e.statusCode, 'statusCode', 404)
              .having((ApiException e) => e.code, 'code', 'not_found')
              .having((ApiException e) => e.message, 'message', 'No route for GET /x.'),
        ),
      );
    });

    test('maps an error body to ApiException with its message and code', () async {
      final ApiClient client = _client(
        (http.Request request) async => _json(
          <String, String>{'error': 'storage_unavailable', 'message': 'Storage is unavailable.'},
          503,
        ),
      );

      await expectLater(
        client.fetchLatest(),
        throwsA(
          isA<ApiException>()
              .having((ApiException e) => e.statusCode, 'statusCode', 503)
              .having((ApiException e) => e.code, 'code', 'storage_unavailable')
              .having((ApiException e) => e.message, 'message', 'Storage is unavailable.'),
        ),
      );
    });

    test('describes an error without a JSON body by its status', () async {
      final ApiClient client = _client(
        (http.Request request) async => http.Response('<html>Bad gateway</html>', 502),
      );

      await expectLater(
        client.fetchLatest(),
        throwsA(
          isA<ApiException>()
              .having((ApiException e) => e.statusCode, 'statusCode', 502)
              .having((ApiException e) => e.message, 'message', contains('HTTP 502')),
        ),
      );
    });

    test('reports a malformed 200 body naming the field', () async {
      final ApiClient client = _client(
        (http.Request request) async => _json(_apkJson(overrides: <String, Object?>{'size': 'big'}), 200),
      );

      await expectLater(
        client.fetchLatest(),
        throwsA(isA<ApiException>().having((ApiException e) => e.message, 'message', contains('"size"'))),
      );
    });

    test('reports a 200 body that is not a JSON object', () async {
      final ApiClient client = _client((http.Request request) async => _json(<int>[1, 2], 200));

      await expectLater(client.fetchLatest(), throwsA(isA<ApiException>()));
    });

    test('maps a network failure to ApiException', () async {
      final ApiClient client = _client(
        (http.Request request) async => throw http.ClientException('Connection refused', request.url),
      );

      await expectLater(
        client.fetchLatest(),
        throwsA(isA<ApiException>().having((ApiException e) => e.message, 'message', contains('Connection refused'))),
      );
    });
  });

  group('LatestApk.fromJson', () {
    test('rejects each missing or malformed field by name', () {
      final Map<String, Object?> bad = <String, Object?>{
        'version': '',
        'key': 42,
        'size': -1,
        'sha256': 'not-hex',
        'uploaded_at': 'yesterday',
        'url': 'ftp://files.example.test/app.apk',
        'expires_in': 0,
      };
      for (final MapEntry<String, Object?> entry in bad.entries) {
        expect(
          () => LatestApk.fromJson(_apkJson(overrides: <String, Object?>{entry.key: entry.value})),
          throwsA(isA<FormatException>().having((FormatException e) => e.message, 'message', contains(entry.key))),
          reason: 'field ${entry.key} = ${entry.value}',
        );
      }
    });

    test('rejects a missing field', () {
      final Map<String, Object?> json = _apkJson()..remove('url');

      expect(() => LatestApk.fromJson(json), throwsFormatException);
    });
  });

  group('formatting', () {
    test('formatBytes uses SI units with one decimal', () {
      expect(formatBytes(0), '0 B');
      expect(formatBytes(999), '999 B');
      expect(formatBytes(1000), '1.0 kB');
      expect(formatBytes(1536), '1.5 kB');
      expect(formatBytes(18432000), '18.4 MB');
      expect(formatBytes(999950000), '1.0 GB');
      expect(() => formatBytes(-1), throwsArgumentError);
    });

    test('formatUtc shows UTC minutes', () {
      expect(formatUtc(DateTime.utc(2026, 1, 2, 3, 4, 59)), '2026-01-02 03:04 UTC');
    });
  });

  group('AppConfig', () {
    test('an empty API URL is a configuration problem', () {
      final AppConfig config = AppConfig.checked(
        apiBaseUrl: '  ',
        environment: 'dev',
        source: ConfigSource.dartDefine,
      );

      expect(config.isUsable, isFalse);
      expect(config.problem, contains('API_BASE_URL'));
    });

    test('a relative API URL is a configuration problem', () {
      final AppConfig config = AppConfig.checked(
        apiBaseUrl: 'api/dev',
        environment: 'dev',
        source: ConfigSource.dartDefine,
      );

      expect(config.problem, contains('not an absolute http(s) URL'));
    });

    test('trailing slashes are removed', () {
      final AppConfig config = AppConfig.checked(
        apiBaseUrl: 'https://api.example.test/prod//',
        environment: 'prod',
        source: ConfigSource.dartDefine,
      );

      expect(config.isUsable, isTrue);
      expect(config.apiBaseUrl, 'https://api.example.test/prod');
    });

    test('config.json wins on the web and falls back to the defines when absent', () async {
      final MockClient present = MockClient(
        (http.Request request) async => _json(
          <String, String>{'api_base_url': 'https://api.example.test/preprod', 'environment': 'preprod'},
          200,
        ),
      );
      final AppConfig fromFile = await AppConfig.load(
        client: present,
        isWeb: true,
        pageUri: Uri.parse('https://app.example.test/index.html'),
      );
      expect(fromFile.source, ConfigSource.runtimeFile);
      expect(fromFile.apiBaseUrl, 'https://api.example.test/preprod');
      expect(fromFile.environment, 'preprod');

      final MockClient absent = MockClient((http.Request request) async => http.Response('Not found', 404));
      final AppConfig fallback = await AppConfig.load(
        client: absent,
        isWeb: true,
        pageUri: Uri.parse('https://app.example.test/index.html'),
      );
      expect(fallback.source, ConfigSource.dartDefine);
    });

    test('config.json is fetched next to the page', () async {
      final List<Uri> fetched = <Uri>[];
      final MockClient client = MockClient((http.Request request) async {
        fetched.add(request.url);
        return http.Response('Not found', 404);
      });

      await AppConfig.load(client: client, isWeb: true, pageUri: Uri.parse('https://app.example.test/apk/#/'));

      expect(fetched.single.path, '/apk/config.json');
    });

    test('a malformed config.json is a configuration problem naming the file', () {
      final AppConfig config = AppConfig.fromRuntimeJson(
        '{"api_base_url": 42}',
        fallback: AppConfig.checked(apiBaseUrl: '', environment: 'dev', source: ConfigSource.dartDefine),
      );

      expect(config.isUsable, isFalse);
      expect(config.problem, contains('config.json'));
    });
  });
}
