import 'dart:async';
import 'dart:convert';

import 'package:flutter/material.dart';
import 'package:flutter_test/flutter_test.dart';
import 'package:http/http.dart' as http;
import 'package:http/testing.dart';
import 'package:latest_apk_app/main.dart';
import 'package:latest_apk_app/src/config.dart';

const String _sha = '2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae';

final AppConfig _config = AppConfig.checked(
  apiBaseUrl: 'https://api.example.test/dev',
  environment: 'dev',
  source: ConfigSource.dartDefine,
);

http.Response _apk(String version) {
  return http.Response(
    jsonEncode(<String, Object?>{
      'version': version,
      'key': 'apks/$version/app-release.apk',
      'size': 18432000,
      'sha256': _sha,
      'uploaded_at': '2026-11-20T09:30:00Z',
      'url': 'https://bucket.example.test/apks/$version/app-release.apk?sig=1',
      'expires_in': 900,
    }),
    200,
    headers: const <String, String>{'content-type': 'application/json; charset=utf-8'},
  );
}

http.Response _error(int status, String code, String message) {
  return http.Response(
    jsonEncode(<String, String>{'error': code, 'message': message}),
    status,
    headers: const <String, String>{'content-type': 'application/json; charset=utf-8'},
  );
}

/// Answers the queued responses in order and counts the requests.
class _Api {
  _Api(this.responses);

  final List<http.Response> responses;
  int calls = 0;

  MockClient get client => MockClient((http.Request request) async {
        expect(request.url.toString(), 'https://api.example.test/dev/apk/latest');
        calls++;
        return responses.removeAt(0);
      });
}

Future<List<Uri>> _pumpApp(WidgetTester tester, http.Client client, {AppConfig? config}) async {
  final List<Uri> opened = <Uri>[];
  await tester.pumpWidget(
    LatestApkApp(
      config: config ?? _config,
      httpClient: client,
      openUrl: (Uri url) async {
        opened.add(url);
        return true;
      },
    ),
  );
  return opened;
}

void main() {
  testWidgets('shows a spinner while loading, then the build', (WidgetTester tester) async {
    final Completer<http.Response> answer = Completer<http.Response>();
    final MockClient client = MockClient((http.Request request) => answer.future);

    await _pumpApp(tester, client);

    expect(find.byType(CircularProgressIndicator), findsOneWidget);
    expect(find.text('dev'), findsOneWidget);
    expect(find.text('0.1.7'), findsNothing);

    answer.complete(_apk('0.1.7'));
    await tester.pumpAndSettle();

    expect(find.byType(CircularProgressIndicator), findsNothing);
    expect(find.text('0.1.7'), findsOneWidget);
  });

  testWidgets('shows the loaded build and opens its download link', (WidgetTester tester) async {
    final _Api api = _Api(<http.Response>[_apk('0.1.42')]);

    final List<Uri> opened = await _pumpApp(tester, api.client);
    await tester.pumpAndSettle();

    expect(find.text('0.1.42'), findsOneWidget);
    expect(find.text('18.4 MB'), findsOneWidget);
    expect(find.text('2026-11-20 09:30 UTC'), findsOneWidget);
    expect(find.text(_sha), findsOneWidget);
    expect(find.text('dev'), findsOneWidget);
    expect(find.textContaining('https://api.example.test/dev'), findsOneWidget);

    await tester.ensureVisible(find.text('Download APK'));
    await tester.tap(find.text('Download APK'));
    await tester.pumpAndSettle();

    expect(opened, <Uri>[Uri.parse('https://bucket.example.test/apks/0.1.42/app-release.apk?sig=1')]);
    expect(api.calls, 1);
  });

  testWidgets('shows the empty state when no build is published', (WidgetTester tester) async {
    final _Api api = _Api(<http.Response>[
      _error(404, 'no_build_published', 'No APK has been published yet.'),
    ]);

    await _pumpApp(tester, api.client);
    await tester.pumpAndSettle();

    expect(find.text('No build published yet'), findsOneWidget);
    expect(find.text('No APK has been published yet.'), findsOneWidget);
    expect(find.text('Download APK'), findsNothing);
  });

  testWidgets('shows the error with a retry that loads again', (WidgetTester tester) async {
    final _Api api = _Api(<http.Response>[
      _error(503, 'storage_unavailable', 'Storage is unavailable.'),
      _apk('0.1.43'),
    ]);

    await _pumpApp(tester, api.client);
    await tester.pumpAndSettle();

    expect(find.text('Could not load the latest build'), findsOneWidget);
    expect(find.text('Storage is unavailable.'), findsOneWidget);

    await tester.tap(find.text('Retry'));
    await tester.pumpAndSettle();

    expect(api.calls, 2);
    expect(find.text('Could not load the latest build'), findsNothing);
    expect(find.text('0.1.43'), findsOneWidget);
  });

  testWidgets('pull to refresh fetches the newest build', (WidgetTester tester) async {
    final _Api api = _Api(<http.Response>[_apk('0.1.50'), _apk('0.1.51')]);

    await _pumpApp(tester, api.client);
    await tester.pumpAndSettle();
    expect(find.text('0.1.50'), findsOneWidget);

    await tester.fling(find.text('0.1.50'), const Offset(0, 400), 1000);
    await tester.pumpAndSettle();

    expect(api.calls, 2);
    expect(find.text('0.1.50'), findsNothing);
    expect(find.text('0.1.51'), findsOneWidget);
  });

  testWidgets('shows a configuration error without calling any API', (WidgetTester tester) async {
    final _Api api = _Api(<http.Response>[]);
    final AppConfig missing = AppConfig.checked(
      apiBaseUrl: '',
      environment: 'local',
      source: ConfigSource.dartDefine,
    );

    await _pumpApp(tester, api.client, config: missing);
    await tester.pumpAndSettle();

    expect(find.text('Configuration error'), findsOneWidget);
    expect(find.textContaining('API_BASE_URL'), findsOneWidget);
    expect(find.byType(CircularProgressIndicator), findsNothing);
    expect(api.calls, 0);
  });
}
