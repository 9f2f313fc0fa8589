"""Routing, finding an APK in S3 and presigning its URL, free of Lambda plumbing.

Storage layout (written by ``cicd/publish.py``; ``<P>`` is ``APK_PREFIX``, default ``apk/``)::

    <P><version>/<name>.apk   the build; user metadata ``sha256`` (hex) and ``version``
    <P>LATEST                 pointer: JSON {version, key, sha256, size, uploaded_at}, written last by a
                              publish and only ever moved to a higher version

Latest is the highest ``MAJOR.MINOR.PATCH`` (numeric order; names that do not parse are ignored). The function
reads the pointer and HEADs the object it names (two requests). If the pointer is absent, unreadable or stale
(object gone) it lists the version folders (``Delimiter='/'``, every page, so >1,000 versions work) and takes
the highest holding an ``.apk``; none at all is 404 ``no_build_published``. Size, time and sha256 come from the
HEAD, never from the pointer. Several ``.apk`` in one folder: the newest upload wins (then the greatest key).
IAM: ``s3:GetObject`` on ``<P>*``, ``s3:ListBucket`` on the bucket (so a missing key is 404, not 403).
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from datetime import UTC
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from latest_apk.models import (
    ApkObject,
    InvalidExpires,
    InvalidVersion,
    MethodNotAllowed,
    NothingPublished,
    Reply,
    RouteNotFound,
    StorageUnavailable,
    VersionNotFound,
    parse_seconds,
)
from latest_apk.versions import Version, parse_version

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef, ListObjectsV2OutputTypeDef

    from latest_apk.models import Config, Request

MAX_POINTER_BYTES = 16_384
ALLOW = ("GET", "HEAD", "OPTIONS")
PREFLIGHT_HEADERS = {
    "Allow": ", ".join(ALLOW),
    "Access-Control-Allow-Methods": ", ".join(ALLOW),
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "600",
}
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@contextmanager
def _storage(action: str) -> Iterator[None]:
    """Any S3 failure becomes :class:`StorageUnavailable`, its cause kept for the log."""
    try:
        yield
    except (ClientError, BotoCoreError) as err:
        raise StorageUnavailable(f"The APK store could not be reached ({action}); try again later.") from err


def _missing(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


class ApkStore:
    """The APKs under one bucket and prefix."""

    def __init__(self, s3: S3Client, bucket: str, prefix: str) -> None:
        self._s3, self._bucket, self._prefix = s3, bucket, prefix

    def latest(self) -> ApkObject:
        found = self._from_pointer() or next(filter(None, map(self._find, self.versions_descending())), None)
        if not found:
            raise NothingPublished("No build published yet.")
        return found

    def get(self, version: Version) -> ApkObject:
        found = self._find(version)
        if not found:
            raise VersionNotFound(f"Version {version} has not been published.")
        return found

    def _pages(self, prefix: str) -> Iterator[ListObjectsV2OutputTypeDef]:
        with _storage("list"):
            paginator = self._s3.get_paginator("list_objects_v2")
            yield from paginator.paginate(Bucket=self._bucket, Prefix=prefix, Delimiter="/")

    def versions_descending(self) -> list[Version]:
        """Every version folder, highest first."""
        pages = self._pages(self._prefix)
        names = (c["Prefix"][len(self._prefix) : -1] for page in pages for c in page.get("CommonPrefixes", []))
        return sorted(filter(None, map(parse_version, names)), reverse=True)

    def _from_pointer(self) -> ApkObject | None:
        """The object the pointer names if the pointer is usable and the object exists."""
        with _storage("read pointer"):
            try:
                response = self._s3.get_object(Bucket=self._bucket, Key=self._prefix + "LATEST")
            except ClientError as err:
                if _missing(err):
                    return None
                raise
            with response["Body"] as body:
                raw = body.read(MAX_POINTER_BYTES + 1)
        try:
            pointer: Any = json.loads(raw) if len(raw) <= MAX_POINTER_BYTES else None
        except ValueError:
            return None
        if not isinstance(pointer, dict) or not isinstance(pointer.get("version"), str):
            return None
        version, key = parse_version(pointer["version"]), pointer.get("key")
        if version and isinstance(key, str) and self._is_apk(version, key):
            return self._head(version, key)
        return None

    def _find(self, version: Version) -> ApkObject | None:
        """The newest ``.apk`` directly inside the version's folder."""
        pages = self._pages(f"{self._prefix}{version}/")
        found = [(o["LastModified"], o["Key"]) for page in pages for o in page.get("Contents", [])]
        found = [item for item in found if self._is_apk(version, item[1])]
        return self._head(version, max(found)[1]) if found else None

    def _is_apk(self, version: Version, key: str) -> bool:
        folder = f"{self._prefix}{version}/"
        name = key[len(folder) :]
        return key.startswith(folder) and len(name) > 4 and name.endswith(".apk") and "/" not in name

    def _head(self, version: Version, key: str) -> ApkObject | None:
        with _storage("read object"):
            try:
                head: HeadObjectOutputTypeDef = self._s3.head_object(Bucket=self._bucket, Key=key)
            except ClientError as err:
                if _missing(err):
                    return None
                raise
        digest = head.get("Metadata", {}).get("sha256", "").lower()
        return ApkObject(
            str(version),
            key,
            head["ContentLength"],
            digest if _SHA256_RE.fullmatch(digest) else None,
            head["LastModified"].astimezone(UTC),
        )

    def presign(self, key: str, expires: int) -> str:
        """A SigV4 presigned GET (computed locally, no request)."""
        with _storage("sign"):
            return self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=expires
            )


def _route(path: str) -> tuple[str, str | None] | None:
    path = path[:-1] if len(path) > 1 and path.endswith("/") else path
    if path in ("/health", "/apk/latest"):
        return (path.rsplit("/", 1)[1], None)
    parts = path.split("/")
    return ("version", parts[2]) if len(parts) == 3 and parts[:2] == ["", "apk"] and parts[2] else None


def match_route(request: Request) -> tuple[str, str | None]:
    """Route on ``path`` as API Gateway gives it; a leading ``/<stage>`` (custom domains, local runtimes) is
    dropped only when the path as it is matches nothing."""
    found = _route(request.path)
    stage = f"/{request.stage}/"
    if not found and request.stage and request.path.startswith(stage):
        found = _route(request.path[len(stage) - 1 :])
    if not found:
        raise RouteNotFound("No such resource; try GET /apk/latest, /apk/{version} or /health.")
    return found


def parse_expires(query: Mapping[str, tuple[str, ...]], config: Config) -> int:
    """The ``expires`` parameter (1..URL_TTL_MAX seconds, given once), else URL_TTL_DEFAULT."""
    values = query.get("expires")
    if not values:
        return config.ttl_default
    seconds = parse_seconds(values[0], config.ttl_max)
    if seconds is None or len(set(values)) > 1:
        raise InvalidExpires(f"expires must be given once, as whole seconds from 1 to {config.ttl_max}.")
    return seconds


def handle(request: Request, config: Config, s3: S3Client) -> Reply:
    """Answer one request or raise a :class:`~latest_apk.models.ServiceError`."""
    route, argument = match_route(request)
    if request.method == "OPTIONS":
        return Reply(None, 204, PREFLIGHT_HEADERS)
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(ALLOW)
    if route == "health":
        return Reply(
            {
                "service": config.service_name,
                "environment": config.environment,
                "version": config.build_version,
                "commit": config.build_commit,
            }
        )
    version = parse_version(argument) if argument else None
    if argument and not version:
        raise InvalidVersion("The version must look like MAJOR.MINOR.PATCH, e.g. 1.4.27.")
    expires = parse_expires(request.query, config)
    store = ApkStore(s3, config.bucket, config.prefix)
    apk = store.get(version) if version else store.latest()
    return Reply(
        {
            "version": apk.version,
            "key": apk.key,
            "size": apk.size,
            "sha256": apk.sha256,
            "uploaded_at": apk.uploaded_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "url": store.presign(apk.key, expires),
            "expires_in": expires,
        }
    )
