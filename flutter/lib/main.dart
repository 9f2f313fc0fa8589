import 'package:flutter/material.dart';
import 'package:http/http.dart' as http;

import 'src/config.dart';
import 'src/latest_apk_page.dart';

Future<void> main() async {
  WidgetsFlutterBinding.ensureInitialized();
  final AppConfig config = await AppConfig.load();
  runApp(LatestApkApp(config: config));
}

/// The app: Material 3 theme (light and dark) around [LatestApkPage].
class LatestApkApp extends StatelessWidget {
  const LatestApkApp({
    super.key,
    required this.config,
    this.httpClient,
    this.openUrl = openInBrowser,
  });

  /// The API and environment to show.
  final AppConfig config;

  /// The HTTP client for API calls (tests pass a mock).
  final http.Client? httpClient;

  /// Opens the download link (tests pass a fake).
  final UrlOpener openUrl;

  static const Color _seed = Color(0xFF00796B);

  @override
  Widget build(BuildContext context) {
    return MaterialApp(
      title: 'Latest APK',
      debugShowCheckedModeBanner: false,
      // Material 3 is ThemeData's default since Flutter 3.16.
      theme: ThemeData(colorScheme: ColorScheme.fromSeed(seedColor: _seed)),
      darkTheme: ThemeData(
        colorScheme: ColorScheme.fromSeed(seedColor: _seed, brightness: Brightness.dark),
      ),
      home: LatestApkPage(config: config, httpClient: httpClient, openUrl: openUrl),
    );
  }
}
