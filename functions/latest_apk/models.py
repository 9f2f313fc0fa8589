"""Edge models: configuration (environment variables), request, answers, domain errors.

A domain error carries an ``error`` code and a message safe for clients; ``handler.STATUS_BY_ERROR`` maps them
to HTTP statuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

ENVIRONMENTS = ("dev", "preprod", "prod")
SIGV4_MAX_TTL = 604_800  # presigned SigV4 URLs live at most 7 days

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SECONDS_RE = re.compile(r"[0-9]{1,10}")  # ASCII only: int() also takes " 1_0 " and non-ASCII digits
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


class ConfigError(Exception):
    """A missing or invalid environment variable: ``str()`` is one log line, never shown to a client."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable} {problem}")


def parse_seconds(raw: str, maximum: int) -> int | None:
    """``raw`` as whole seconds in 1..maximum, else None."""
    seconds = int(raw) if _SECONDS_RE.fullmatch(raw) else 0
    return seconds if 1 <= seconds <= maximum else None


def _get(env: Mapping[str, str], name: str, default: str = "", pattern: re.Pattern[str] = _LABEL_RE) -> str:
    value = env.get(name, "").strip() or default
    if not value:
        raise ConfigError(name, "is required but not set")
    if not pattern.fullmatch(value):
        raise ConfigError(name, f"must match {pattern.pattern}, got {value[:64]!r}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    seconds = parse_seconds(env.get(name, "").strip() or str(default), maximum)
    if seconds is None:
        raise ConfigError(name, f"must be whole seconds from 1 to {maximum}, got {env.get(name, '')[:64]!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class Config:
    bucket: str
    prefix: str
    ttl_default: int
    ttl_max: int
    environment: str
    build_version: str
    build_commit: str | None
    service_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Validate ``env``; raise :class:`ConfigError` naming the first bad variable."""
        bucket = _get(env, "APK_BUCKET", pattern=_BUCKET_RE)
        if ".." in bucket:
            raise ConfigError("APK_BUCKET", f"is not a bucket name: {bucket!r}")
        prefix = env.get("APK_PREFIX", "apk/").strip()
        if prefix.startswith("/") or (prefix and not prefix.endswith("/")) or len(prefix) > 256:
            raise ConfigError("APK_PREFIX", f"must be empty or end with '/', not start with it: {prefix[:64]!r}")
        ttl_max = _seconds(env, "URL_TTL_MAX", 3600, SIGV4_MAX_TTL)
        ttl_default = _seconds(env, "URL_TTL_DEFAULT", min(300, ttl_max), ttl_max)
        environment = _get(env, "ENVIRONMENT", pattern=re.compile("|".join(ENVIRONMENTS)))
        version = _get(env, "BUILD_VERSION")
        commit = _get(env, "BUILD_COMMIT") if env.get("BUILD_COMMIT", "").strip() else None
        service = _get(env, "SERVICE_NAME", "latest-apk")
        return cls(bucket, prefix, ttl_default, ttl_max, environment, version, commit, service)


@dataclass(frozen=True, slots=True)
class Request:
    """What the function reads from an API Gateway REST (payload v1) proxy event."""

    method: str
    path: str
    stage: str | None
    query: Mapping[str, tuple[str, ...]]
    api_request_id: str | None

    @classmethod
    def from_event(cls, event: object) -> Request:
        """Optional members may be null or absent; :class:`BadRequest` when there is no method or path."""
        if not isinstance(event, dict):
            raise BadRequest("The request could not be read.")
        method, path = event.get("httpMethod"), event.get("path")
        if not isinstance(method, str) or not isinstance(path, str) or not method:
            raise BadRequest("The request has no method or path.")
        context = event.get("requestContext")
        context = context if isinstance(context, dict) else {}
        stage, request_id = context.get("stage"), context.get("requestId")
        query: dict[str, tuple[str, ...]] = {}  # every value of each parameter; the multi-value map wins
        for member in ("multiValueQueryStringParameters", "queryStringParameters"):
            given = event.get(member)
            for name, values in (given if isinstance(given, dict) else {}).items():
                listed = values if isinstance(values, list) else [values]
                query.setdefault(str(name), tuple(v for v in listed if isinstance(v, str)))
        return cls(
            method.upper(),
            path,
            stage if isinstance(stage, str) and stage else None,
            query,
            request_id if isinstance(request_id, str) else None,
        )


@dataclass(frozen=True, slots=True)
class ApkObject:
    """A published APK as its HEAD describes it (``sha256`` from the user metadata)."""

    version: str
    key: str
    size: int
    sha256: str | None
    uploaded_at: datetime


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer: JSON body (None: no body), status, extra headers."""

    body: Mapping[str, Any] | None
    status: int = 200
    headers: Mapping[str, str] | None = None


class ServiceError(Exception):
    """An error the client may see: ``code`` and ``message`` form the JSON error body."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class BadRequest(ServiceError):
    code = "bad_request"


class InvalidVersion(BadRequest):
    code = "invalid_version"


class InvalidExpires(BadRequest):
    code = "invalid_expires"


class RouteNotFound(ServiceError):
    code = "not_found"


class VersionNotFound(ServiceError):
    code = "version_not_found"


class NothingPublished(ServiceError):
    code = "no_build_published"


class MethodNotAllowed(ServiceError):
    code = "method_not_allowed"

    def __init__(self, allow: tuple[str, ...]) -> None:
        self.allow = allow
        super().__init__(f"Use {', '.join(allow)} here.")


class StorageUnavailable(ServiceError):
    """S3 failed or is unreachable; the cause is logged, not shown."""

    code = "storage_unavailable"


class Misconfigured(ServiceError):
    """Invalid configuration (logged once per container); the client learns nothing more."""
