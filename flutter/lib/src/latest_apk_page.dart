import 'dart:async';
import 'dart:math' as math;

import 'package:flutter/material.dart';
import 'package:flutter/services.dart';
import 'package:http/http.dart' as http;
import 'package:url_launcher/url_launcher.dart';

import 'api_client.dart';
import 'config.dart';
import 'models.dart';

/// Opens a URL; returns whether it could be opened. Injectable for tests.
typedef UrlOpener = Future<bool> Function(Uri url);

/// Opens [url] outside the app: the browser downloads the APK.
Future<bool> openInBrowser(Uri url) {
  return launchUrl(url, mode: LaunchMode.externalApplication);
}

/// A presigned link this close to expiry is fetched again before opening.
const Duration _expiryMargin = Duration(seconds: 30);

/// The single screen: the environment, the newest APK and its download.
class LatestApkPage extends StatefulWidget {
  const LatestApkPage({
    super.key,
    required this.config,
    this.httpClient,
    this.openUrl = openInBrowser,
  });

  /// Which API to call; an unusable configuration shows its problem.
  final AppConfig config;

  /// The HTTP client for the API (a new one when null).
  final http.Client? httpClient;

  /// Opens the download link.
  final UrlOpener openUrl;

  @override
  State<LatestApkPage> createState() => _LatestApkPageState();
}

sealed class _View {
  const _View();
}

final class _Loading extends _View {
  const _Loading();
}

final class _Empty extends _View {
  const _Empty(this.message);

  final String message;
}

final class _Failed extends _View {
  const _Failed(this.message);

  final String message;
}

final class _Loaded extends _View {
  const _Loaded(this.apk, this.fetchedAt);

  final LatestApk apk;
  final DateTime fetchedAt;

  bool get linkExpired =>
      DateTime.now().isAfter(fetchedAt.add(apk.expiresIn).subtract(_expiryMargin));
}

class _LatestApkPageState extends State<LatestApkPage> {
  final GlobalKey<RefreshIndicatorState> _refreshKey = GlobalKey<RefreshIndicatorState>();
  ApiClient? _api;
  _View _view = const _Loading();
  int _generation = 0;

  @override
  void initState() {
    super.initState();
    if (widget.config.isUsable) {
      _api = ApiClient(baseUrl: widget.config.apiBaseUrl, httpClient: widget.httpClient);
      unawaited(_load());
    }
  }

  @override
  void dispose() {
    _api?.close();
    super.dispose();
  }

  /// Fetches the latest APK and shows the answer. Used by pull to refresh.
  Future<void> _load() async {
    final ApiClient? api = _api;
    if (api == null) {
      return;
    }
    final int generation = ++_generation;
    final _View next = await _fetch(api);
    // A newer request started meanwhile, or the page is gone: drop this one.
    if (!mounted || generation != _generation) {
      return;
    }
    setState(() {
      _view = next;
    });
  }

  Future<_View> _fetch(ApiClient api) async {
    try {
      final LatestApkResult result = await api.fetchLatest();
      return switch (result) {
        ApkAvailable(:final LatestApk apk) => _Loaded(apk, DateTime.now()),
        NoBuildPublished(:final String message) => _Empty(message),
      };
    } on ApiException catch (error) {
      return _Failed(error.message);
    }
  }

  void _retry() {
    setState(() {
      _view = const _Loading();
    });
    unawaited(_load());
  }

  void _refreshFromButton() {
    unawaited(_refreshKey.currentState?.show());
  }

  Future<void> _download(_Loaded loaded) async {
    final ScaffoldMessengerState messenger = ScaffoldMessenger.of(context);
    LatestApk apk = loaded.apk;
    if (loaded.linkExpired) {
      await _load();
      final _View current = _view;
      if (current is! _Loaded) {
        return;
      }
      apk = current.apk;
    }
    bool opened;
    try {
      opened = await widget.openUrl(apk.url);
    } on PlatformException {
      opened = false;
    }
    if (!opened) {
      messenger.showSnackBar(
        const SnackBar(content: Text('Could not open the download link.')),
      );
    }
  }

  Future<void> _copySha256(String sha256) async {
    final ScaffoldMessengerState messenger = ScaffoldMessenger.of(context);
    await Clipboard.setData(ClipboardData(text: sha256));
    messenger.showSnackBar(
      const SnackBar(content: Text('SHA-256 copied to the clipboard.')),
    );
  }

  @override
  Widget build(BuildContext context) {
    final bool canRefresh = widget.config.isUsable && _view is! _Loading;
    return Scaffold(
      appBar: AppBar(
        title: const Text('Latest APK'),
        actions: <Widget>[
          _EnvironmentChip(environment: widget.config.environment),
          IconButton(
            tooltip: 'Refresh',
            icon: const Icon(Icons.refresh),
            onPressed: canRefresh ? _refreshFromButton : null,
          ),
        ],
      ),
      body: SafeArea(child: _buildBody(context)),
    );
  }

  Widget _buildBody(BuildContext context) {
    final String? problem = widget.config.problem;
    if (problem != null) {
      return _MessageView(
        icon: Icons.settings_outlined,
        title: 'Configuration error',
        message: problem,
      );
    }
    final _View view = _view;
    if (view is _Loading) {
      return const Center(
        child: CircularProgressIndicator(semanticsLabel: 'Loading the latest build'),
      );
    }
    final Widget footer = _ApiFooter(config: widget.config);
    return RefreshIndicator(
      key: _refreshKey,
      onRefresh: _load,
      child: switch (view) {
        _Loading() => const SizedBox.shrink(),
        _Empty(:final String message) => _MessageView(
            icon: Icons.inventory_2_outlined,
            title: 'No build published yet',
            message: message,
            footer: footer,
          ),
        _Failed(:final String message) => _MessageView(
            icon: Icons.cloud_off_outlined,
            title: 'Could not load the latest build',
            message: message,
            action: FilledButton.icon(
              onPressed: _retry,
              icon: const Icon(Icons.refresh),
              label: const Text('Retry'),
            ),
            footer: footer,
          ),
        final _Loaded loaded => _ApkDetails(
            loaded: loaded,
            onDownload: () => unawaited(_download(loaded)),
            onCopySha256: (String sha256) => unawaited(_copySha256(sha256)),
            footer: footer,
          ),
      },
    );
  }
}

class _EnvironmentChip extends StatelessWidget {
  const _EnvironmentChip({required this.environment});

  final String environment;

  @override
  Widget build(BuildContext context) {
    final ColorScheme colors = Theme.of(context).colorScheme;
    return Padding(
      padding: const EdgeInsets.symmetric(horizontal: 8),
      child: Chip(
        avatar: Icon(Icons.cloud_outlined, size: 18, color: colors.onSecondaryContainer),
        label: Text(environment),
        backgroundColor: colors.secondaryContainer,
        labelStyle: TextStyle(color: colors.onSecondaryContainer),
        visualDensity: VisualDensity.compact,
      ),
    );
  }
}

class _ApiFooter extends StatelessWidget {
  const _ApiFooter({required this.config});

  final AppConfig config;

  @override
  Widget build(BuildContext context) {
    final String source =
        config.source == ConfigSource.runtimeFile ? runtimeConfigFile : 'build settings';
    return Padding(
      padding: const EdgeInsets.only(top: 24),
      child: Text(
        'API: ${config.apiBaseUrl} (from $source)',
        textAlign: TextAlign.center,
        style: Theme.of(context).textTheme.bodySmall,
      ),
    );
  }
}

/// A centred icon, title and message that can still be pulled to refresh.
class _MessageView extends StatelessWidget {
  const _MessageView({
    required this.icon,
    required this.title,
    required this.message,
    this.action,
    this.footer,
  });

  final IconData icon;
  final String title;
  final String message;
  final Widget? action;
  final Widget? footer;

  @override
  Widget build(BuildContext context) {
    final ThemeData theme = Theme.of(context);
    final Widget? actionWidget = action;
    final Widget? footerWidget = footer;
    return LayoutBuilder(
      builder: (BuildContext context, BoxConstraints constraints) {
        return SingleChildScrollView(
          physics: const AlwaysScrollableScrollPhysics(),
          padding: const EdgeInsets.all(24),
          child: ConstrainedBox(
            constraints: BoxConstraints(
              minHeight: constraints.hasBoundedHeight ? math.max(0.0, constraints.maxHeight - 48) : 0.0,
            ),
            child: Center(
              child: ConstrainedBox(
                constraints: const BoxConstraints(maxWidth: 480),
                child: Column(
                  mainAxisSize: MainAxisSize.min,
                  children: <Widget>[
                    Icon(icon, size: 56, color: theme.colorScheme.primary),
                    const SizedBox(height: 16),
                    Text(title, style: theme.textTheme.titleLarge, textAlign: TextAlign.center),
                    const SizedBox(height: 8),
                    Text(message, style: theme.textTheme.bodyMedium, textAlign: TextAlign.center),
                    if (actionWidget != null) ...<Widget>[
                      const SizedBox(height: 24),
                      actionWidget,
                    ],
                    if (footerWidget != null) footerWidget,
                  ],
                ),
              ),
            ),
          ),
        );
      },
    );
  }
}

class _ApkDetails extends StatelessWidget {
  const _ApkDetails({
    required this.loaded,
    required this.onDownload,
    required this.onCopySha256,
    required this.footer,
  });

  final _Loaded loaded;
  final VoidCallback onDownload;
  final ValueChanged<String> onCopySha256;
  final Widget footer;

  @override
  Widget build(BuildContext context) {
    final LatestApk apk = loaded.apk;
    final String? sha256 = apk.sha256;
    final int minutes = apk.expiresIn.inMinutes;
    final String validity = minutes >= 1
        ? 'The download link is valid for $minutes min after loading.'
        : 'The download link is valid for ${apk.expiresIn.inSeconds} s after loading.';
    return ListView(
      physics: const AlwaysScrollableScrollPhysics(),
      padding: const EdgeInsets.all(16),
      children: <Widget>[
        Center(
          child: ConstrainedBox(
            constraints: const BoxConstraints(maxWidth: 640),
            child: Column(
              crossAxisAlignment: CrossAxisAlignment.stretch,
              children: <Widget>[
                Card(
                  child: Column(
                    children: <Widget>[
                      ListTile(
                        leading: const Icon(Icons.tag),
                        title: const Text('Version'),
                        subtitle: Text(apk.version),
                      ),
                      ListTile(
                        leading: const Icon(Icons.sd_storage_outlined),
                        title: const Text('Size'),
                        subtitle: Text(apk.sizeText),
                      ),
                      ListTile(
                        leading: const Icon(Icons.schedule),
                        title: const Text('Uploaded'),
                        subtitle: Text(apk.uploadedText),
                      ),
                      ListTile(
                        leading: const Icon(Icons.fingerprint),
                        title: const Text('SHA-256'),
                        subtitle: sha256 == null
                            ? const Text('not recorded')
                            : SelectableText(
                                sha256,
                                style: const TextStyle(fontFamily: 'monospace'),
                              ),
                        trailing: sha256 == null
                            ? null
                            : IconButton(
                                tooltip: 'Copy SHA-256',
                                icon: const Icon(Icons.copy),
                                onPressed: () => onCopySha256(sha256),
                              ),
                      ),
                      ListTile(
                        leading: const Icon(Icons.folder_outlined),
                        title: const Text('Object key'),
                        subtitle: Text(apk.key),
                      ),
                    ],
                  ),
                ),
                const SizedBox(height: 16),
                FilledButton.icon(
                  onPressed: onDownload,
                  icon: const Icon(Icons.download),
                  label: const Text('Download APK'),
                ),
                const SizedBox(height: 8),
                Text(
                  validity,
                  textAlign: TextAlign.center,
                  style: Theme.of(context).textTheme.bodySmall,
                ),
                footer,
              ],
            ),
          ),
        ),
      ],
    );
  }
}
