import 'dart:convert';

import 'package:flutter/foundation.dart';
import 'package:http/http.dart' as http;

/// Name of the runtime configuration file the web build reads beside its
/// `index.html`. The pipeline's publish step writes one per environment.
const String runtimeConfigFile = 'config.json';

/// Where the configuration in use came from (shown in the app's footer).
enum ConfigSource {
  /// `--dart-define=API_BASE_URL=...` given when the app was built.
  dartDefine,

  /// `config.json` fetched next to the web page at start-up.
  runtimeFile,
}

/// The API the app talks to and the name of its environment.
///
/// A configuration is either usable ([problem] is null) or carries a
/// [problem] that the app shows as its configuration error state.
@immutable
class AppConfig {
  const AppConfig._({
    required this.apiBaseUrl,
    required this.environment,
    required this.source,
    this.problem,
  });

  /// A checked configuration: builds the error state when the
  /// base URL is empty or not an absolute http(s) URL.
  factory AppConfig.checked({
    required String apiBaseUrl,
    required String environment,
    required ConfigSource source,
  }) {
    final String base = normalizeBaseUrl(apiBaseUrl);
    final String env = environment.trim().isEmpty ? 'unknown' : environment.trim();
    final String where = source == ConfigSource.runtimeFile
        ? '"api_base_url" in $runtimeConfigFile'
        : 'API_BASE_URL';
    if (base.isEmpty) {
      return AppConfig._(
        apiBaseUrl: '',
        environment: env,
        source: source,
        problem: 'No API URL is configured. Build or run the app with '
            '--dart-define=API_BASE_URL=<the API URL> (for example the '
            'output of the deploy step), or publish a $runtimeConfigFile '
            'beside the web app.',
      );
    }
    final Uri? uri = Uri.tryParse(base);
    if (uri == null ||
        !(uri.isScheme('https') || uri.isScheme('http')) ||
        uri.host.isEmpty) {
      return AppConfig._(
        apiBaseUrl: base,
        environment: env,
        source: source,
        problem: '$where is not an absolute http(s) URL: "$base".',
      );
    }
    return AppConfig._(apiBaseUrl: base, environment: env, source: source);
  }

  /// The configuration compiled into the app with `--dart-define`.
  factory AppConfig.fromDefines() {
    return AppConfig.checked(
      apiBaseUrl: const String.fromEnvironment('API_BASE_URL'),
      environment: const String.fromEnvironment('APP_ENV', defaultValue: 'local'),
      source: ConfigSource.dartDefine,
    );
  }

  /// The configuration read from a `config.json` body:
  /// `{"api_base_url": "https://...", "environment": "dev"}`.
  ///
  /// `environment` is optional and falls back to [fallback]'s. A body that is
  /// not such an object gives a configuration with a [problem].
  factory AppConfig.fromRuntimeJson(String body, {required AppConfig fallback}) {
    final Object? decoded;
    try {
      decoded = jsonDecode(body);
    } on FormatException catch (error) {
      return AppConfig._(
        apiBaseUrl: '',
        environment: fallback.environment,
        source: ConfigSource.runtimeFile,
        problem: '$runtimeConfigFile is not valid JSON: ${error.message}.',
      );
    }
    if (decoded is! Map<String, Object?>) {
      return AppConfig._(
        apiBaseUrl: '',
        environment: fallback.environment,
        source: ConfigSource.runtimeFile,
        problem: '$runtimeConfigFile must hold a JSON object.',
      );
    }
    final Object? base = decoded['api_base_url'];
    final Object? env = decoded['environment'];
    if (base is! String || (env != null && env is! String)) {
      return AppConfig._(
        apiBaseUrl: '',
        environment: fallback.environment,
        source: ConfigSource.runtimeFile,
        problem: '$runtimeConfigFile needs a string "api_base_url" '
            '(and optionally a string "environment").',
      );
    }
    return AppConfig.checked(
      apiBaseUrl: base,
      environment: env is String ? env : fallback.environment,
      source: ConfigSource.runtimeFile,
    );
  }

  /// The API's base URL without a trailing slash ('' when not configured).
  final String apiBaseUrl;

  /// The environment name shown in the app bar (dev, preprod, prod, local).
  final String environment;

  /// Where this configuration came from.
  final ConfigSource source;

  /// Why the configuration cannot be used, or null when it can.
  final String? problem;

  /// Whether the app can call the API with this configuration.
  bool get isUsable => problem == null;

  /// Loads the configuration for this run of the app.
  ///
  /// On the web, `config.json` next to the page wins when it exists, so one
  /// web build serves every environment; everywhere else (and when the file is
  /// absent or the request fails) the `--dart-define` values apply.
  static Future<AppConfig> load({
    http.Client? client,
    bool isWeb = kIsWeb,
    Uri? pageUri,
    Duration timeout = const Duration(seconds: 5),
  }) async {
    final AppConfig defined = AppConfig.fromDefines();
    if (!isWeb) {
      return defined;
    }
    final http.Client httpClient = client ?? http.Client();
    try {
      final Uri uri = (pageUri ?? Uri.base).resolve(runtimeConfigFile).replace(
        queryParameters: <String, String>{
          // Defeats caches: the file changes when an environment is republished.
          'v': DateTime.now().millisecondsSinceEpoch.toString(),
        },
      );
      final http.Response response = await httpClient.get(uri).timeout(timeout);
      if (response.statusCode != 200) {
        return defined;
      }
      final String body = utf8.decode(response.bodyBytes, allowMalformed: true);
      // Hosts that answer every unknown path with index.html have no file.
      if (body.trimLeft().startsWith('<')) {
        return defined;
      }
      return AppConfig.fromRuntimeJson(body, fallback: defined);
    } on Exception {
      // Unreachable, timed out or refused: the compiled-in values apply.
      return defined;
    } finally {
      if (client == null) {
        httpClient.close();
      }
    }
  }
}

/// Trims [value] and removes trailing slashes, so paths can be appended.
String normalizeBaseUrl(String value) {
  String result = value.trim();
  while (result.endsWith('/')) {
    result = result.substring(0, result.length - 1);
  }
  return result;
}
