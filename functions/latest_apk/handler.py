"""Lambda entry point ``latest_apk.handler.handler``: API Gateway REST proxy event in, proxy response out.

Thin: configuration and S3 client once per container, parse the event, ``logic.handle`` answers, domain errors
map to statuses here (``STATUS_BY_ERROR``, the one place), one JSON log line per request. Answers are JSON with
``Cache-Control: no-store``; errors are ``{"error", "message"}`` and the cause of a 5xx only goes to the log.

No Powertools: the package must stay under 10 KB zipped with only stdlib + boto3 (the runtime's), so the artifact
promoted to prod is this folder alone; Powertools means a layer or MBs in the zip and tens of ms of imports at
every cold start, for what is here a few dozen lines (a JSON log line, a route table).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config as BotoConfig

from latest_apk import logic
from latest_apk.models import (
    BadRequest,
    Config,
    ConfigError,
    MethodNotAllowed,
    Misconfigured,
    NothingPublished,
    Request,
    RouteNotFound,
    ServiceError,
    StorageUnavailable,
    VersionNotFound,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_s3 import S3Client

STATUS_BY_ERROR: dict[type[ServiceError], int] = {
    BadRequest: 400,  # and InvalidVersion, InvalidExpires
    RouteNotFound: 404,
    VersionNotFound: 404,
    NothingPublished: 404,
    MethodNotAllowed: 405,
    Misconfigured: 500,
    StorageUnavailable: 502,
}
HEADERS = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Access-Control-Allow-Origin": "*",  # public, read-only, no cookies; the Flutter web app is cross-origin
}
INTERNAL_ERROR = {"error": "internal_error", "message": "The service could not answer; try again later."}


def log(level: str, message: str, **fields: object) -> None:
    """One JSON line on stdout (one CloudWatch Logs event)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    sys.stdout.write(json.dumps({"timestamp": now, "level": level, "message": message, **fields}, default=str) + "\n")
    sys.stdout.flush()


@functools.cache
def load_config() -> Config | ConfigError:
    """The configuration, or why it is invalid: validated, and logged, once per container."""
    try:
        return Config.from_env(os.environ)
    except ConfigError as err:
        log("ERROR", f"invalid configuration: {err}", variable=err.variable)
        return err


@functools.cache
def s3_client() -> S3Client:
    """One client per container: SigV4, the function's region; boto3 itself honours ``AWS_ENDPOINT_URL``."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    retries: Any = {"max_attempts": 3, "mode": "standard"}
    config = BotoConfig(signature_version="s3v4", connect_timeout=3, read_timeout=5, retries=retries)
    return boto3.client("s3", region_name=region, config=config)


def status_of(err: ServiceError) -> int:
    return next((STATUS_BY_ERROR[c] for c in type(err).__mro__ if c in STATUS_BY_ERROR), 500)


def _answer(status: int, body: Mapping[str, Any] | None, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {**HEADERS, **(headers or {})},
        "body": "" if body is None else json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Answer one API Gateway REST proxy (payload v1) event; never raises."""
    started = time.perf_counter()
    method = path = ""
    fields: dict[str, object] = {}
    try:
        config = load_config()
        if isinstance(config, ConfigError):
            raise Misconfigured(INTERNAL_ERROR["message"])
        request = Request.from_event(event)
        method, path = request.method, request.path
        fields["api_request_id"] = request.api_request_id
        reply = logic.handle(request, config, s3_client())
        response = _answer(reply.status, reply.body, reply.headers)
    except ServiceError as err:
        status = status_of(err)
        allow = {"Allow": ", ".join(err.allow)} if isinstance(err, MethodNotAllowed) else None
        response = _answer(
            status, INTERNAL_ERROR if status == 500 else {"error": err.code, "message": err.message}, allow
        )
        fields["error"] = err.code
        if err.__cause__:
            fields["cause"] = f"{type(err.__cause__).__name__}: {err.__cause__}"[:1000]
    except Exception as err:  # last line of defence: a generic 500; the details go to the log
        response = _answer(500, INTERNAL_ERROR)
        fields.update(error="internal_error", cause=f"{type(err).__name__}: {err}"[:1000])
        fields["traceback"] = "".join(traceback.format_exception(err))[-4000:]
    if method == "HEAD":
        response["body"] = ""
    status = response["statusCode"]
    log(
        "ERROR" if status >= 500 else "INFO",
        "request",
        method=method[:16],
        path=path[:256],
        status=status,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        request_id=getattr(context, "aws_request_id", None),
        **fields,
    )
    return response
