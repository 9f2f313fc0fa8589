"""Lambda behind ``GET /apk/latest``, ``GET /apk/{version}`` and ``GET /health``.

Handler string: ``latest_apk.handler.handler``. The deployment package is this folder only (stdlib + boto3).
"""

from __future__ import annotations
