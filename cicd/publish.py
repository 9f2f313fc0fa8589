"""Publish builds to S3: APKs into the store the ``latest_apk`` Lambda reads, and the Flutter web tree.

APK store layout (the contract with ``functions/latest_apk/logic.py``; ``PREFIX`` defaults to ``apk/``)::

    PREFIX<version>/<name>.apk   the build. User metadata ``sha256`` (lower-case hex of the file) and
                                 ``version``; ContentType ``application/vnd.android.package-archive``.
    PREFIX LATEST                the pointer: JSON {"version", "key", "sha256", "size", "uploaded_at"}.

:func:`publish_apk` uploads the APK, checks it with HEAD (size and sha256 metadata), and only then writes the
pointer, and only if that does not move it backwards: the pointer names the highest ``MAJOR.MINOR.PATCH``
published (re-publishing the current version refreshes it). The pointer is replaced with a conditional write
(``If-Match`` on its ETag, or ``If-None-Match: *`` when absent), retried on a conflict, so two publishes racing
cannot move it backwards either. When the pointer is absent or unreadable, the highest version folder in the
bucket is the baseline. The Lambda treats the pointer as a shortcut: it checks the object exists and falls back to
listing the version folders, so a stale pointer is never served.

:func:`publish_directory` uploads a web build tree (``flutter build web``) with the content type of each file and
``Cache-Control: no-cache`` (Flutter's file names carry no content hash, so browsers must revalidate), entry
points last so a visitor never loads a new ``index.html`` that references files not yet uploaded. It does not
delete objects the new tree no longer has.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

from cicd.errors import StepFailed, UsageError
from cicd.versioning import VERSION_RE

if TYPE_CHECKING:
    from pathlib import Path

    from mypy_boto3_s3 import S3Client

APK_CONTENT_TYPE = "application/vnd.android.package-archive"
POINTER_NAME = "LATEST"
MAX_VERSION_LENGTH = 64
MAX_POINTER_BYTES = 16_384
POINTER_ATTEMPTS = 5
WEB_CACHE_CONTROL = "no-cache"
WEB_ENTRY_POINTS = ("flutter_service_worker.js", "flutter_bootstrap.js", "index.html")  # uploaded last, in order
WEB_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".frag": "application/octet-stream",
    ".bin": "application/octet-stream",
    ".symbols": "application/octet-stream",
}
_APK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.apk")
_CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey"})
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_BUILTIN_TYPES = mimetypes.MimeTypes()  # Python's own table only: the result does not depend on /etc/mime.types


@dataclass(frozen=True)
class PublishedApk:
    """One APK in the store, and where the pointer stands after publishing it."""

    bucket: str
    key: str
    version: str
    sha256: str
    size: int
    uploaded_at: str  # ISO 8601 UTC, from the object's LastModified
    pointer_key: str
    pointer_moved: bool
    latest_version: str  # what the pointer (or, with no pointer, the highest folder) names now


@dataclass(frozen=True)
class PublishedFile:
    key: str
    content_type: str
    size: int


@dataclass(frozen=True)
class PublishedTree:
    bucket: str
    prefix: str
    files: tuple[PublishedFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class _Pointer:
    version: tuple[int, int, int] | None  # None: absent or unreadable
    etag: str | None  # None: absent


def parse_version(version: str) -> tuple[int, int, int] | None:
    """``MAJOR.MINOR.PATCH`` (ASCII digits, no leading zeros) as a tuple in numeric order, or None."""
    ok = len(version) <= MAX_VERSION_LENGTH and version.isascii()
    match = VERSION_RE.fullmatch(version) if ok else None
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return (major, minor, patch)


def _check_prefix(prefix: str, what: str) -> None:
    if prefix.startswith("/") or (prefix and not prefix.endswith("/")):
        raise UsageError(f"invalid {what} prefix {prefix!r}: use '' or a path ending in '/', e.g. 'apk/'")


def _code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


def _failed(action: str, err: Exception) -> StepFailed:
    return StepFailed(f"{action} failed: {type(err).__name__}: {err}")


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def publish_apk(
    s3_client: S3Client, bucket: str, apk_path: Path, version: str, *, prefix: str = "apk/"
) -> PublishedApk:
    """Upload ``apk_path`` as ``<prefix><version>/<name>.apk``, verify it, then move the pointer forward."""
    parsed = parse_version(version)
    if parsed is None:
        raise UsageError(f"invalid version {version[:80]!r}: expected MAJOR.MINOR.PATCH, e.g. 1.4.27")
    _check_prefix(prefix, "APK")
    if not apk_path.is_file():
        raise UsageError(f"APK not found: {apk_path}")
    if _APK_NAME_RE.fullmatch(apk_path.name) is None:
        raise UsageError(f"invalid APK file name {apk_path.name!r}: expected letters, digits, . _ + - and '.apk'")

    digest = _sha256(apk_path)
    size = apk_path.stat().st_size
    key = f"{prefix}{version}/{apk_path.name}"
    extra = {"ContentType": APK_CONTENT_TYPE, "Metadata": {"sha256": digest, "version": version}}
    try:
        s3_client.upload_file(str(apk_path), bucket, key, ExtraArgs=extra)
        head = s3_client.head_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError, Boto3Error) as err:
        raise _failed(f"upload of s3://{bucket}/{key}", err) from err
    stored_sha = head.get("Metadata", {}).get("sha256")
    if head["ContentLength"] != size or stored_sha != digest:
        raise StepFailed(
            f"upload of s3://{bucket}/{key} did not verify: {head['ContentLength']} bytes and sha256 {stored_sha}, "
            f"expected {size} bytes and {digest}"
        )
    uploaded_at = head["LastModified"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pointer = json.dumps(
        {"version": version, "key": key, "sha256": digest, "size": size, "uploaded_at": uploaded_at}, indent=2
    )
    moved, latest = _advance_pointer(s3_client, bucket, prefix, parsed, pointer.encode())
    return PublishedApk(
        bucket=bucket,
        key=key,
        version=version,
        sha256=digest,
        size=size,
        uploaded_at=uploaded_at,
        pointer_key=prefix + POINTER_NAME,
        pointer_moved=moved,
        latest_version=".".join(map(str, latest)),
    )


def _advance_pointer(
    s3_client: S3Client, bucket: str, prefix: str, version: tuple[int, int, int], body: bytes
) -> tuple[bool, tuple[int, int, int]]:
    """Write the pointer if ``version`` is not below the current one; compare-and-swap, retried on a race."""
    pointer_key = prefix + POINTER_NAME
    for _ in range(POINTER_ATTEMPTS):
        try:
            current = _read_pointer(s3_client, bucket, pointer_key)
            baseline = current.version or _highest_folder(s3_client, bucket, prefix)
            if baseline is not None and version < baseline:
                return (False, baseline)
            _put_pointer(s3_client, bucket, pointer_key, body, current.etag)
        except ClientError as err:
            if _code(err) in _CONFLICT_CODES:
                continue  # someone else moved the pointer meanwhile: read it again
            raise _failed(f"writing the pointer s3://{bucket}/{pointer_key}", err) from err
        except BotoCoreError as err:
            raise _failed(f"writing the pointer s3://{bucket}/{pointer_key}", err) from err
        return (True, version)
    raise StepFailed(f"the pointer s3://{bucket}/{pointer_key} kept changing during {POINTER_ATTEMPTS} attempts")


def _put_pointer(s3_client: S3Client, bucket: str, key: str, body: bytes, etag: str | None) -> None:
    """Replace the pointer only if it is still ``etag`` (or create it only if it is still absent)."""
    kind, cache = "application/json", "no-cache"
    if etag is None:
        s3_client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind, CacheControl=cache, IfNoneMatch="*")
    else:
        s3_client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind, CacheControl=cache, IfMatch=etag)


def _read_pointer(s3_client: S3Client, bucket: str, key: str) -> _Pointer:
    try:
        response = s3_client.get_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if _code(err) in _MISSING_CODES:
            return _Pointer(None, None)
        raise
    with response["Body"] as stream:
        raw = stream.read(MAX_POINTER_BYTES + 1)
    etag = response.get("ETag")
    try:
        data = json.loads(raw) if len(raw) <= MAX_POINTER_BYTES else None
    except ValueError:
        data = None
    text = data.get("version") if isinstance(data, dict) else None
    return _Pointer(parse_version(text) if isinstance(text, str) else None, etag)


def _highest_folder(s3_client: S3Client, bucket: str, prefix: str) -> tuple[int, int, int] | None:
    """The highest ``<prefix><version>/`` folder in the bucket (every page), or None."""
    best: tuple[int, int, int] | None = None
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    for page in pages:
        for common in page.get("CommonPrefixes", []):
            found = parse_version(common.get("Prefix", "")[len(prefix) :].rstrip("/"))
            if found is not None and (best is None or found > best):
                best = found
    return best


def content_type(path: Path) -> str:
    """The Content-Type a browser expects for a file of a web build."""
    known = WEB_CONTENT_TYPES.get(path.suffix.lower())
    if known is not None:
        return known
    guessed, _ = _BUILTIN_TYPES.guess_type(path.name, strict=False)
    return guessed or "application/octet-stream"


def _upload_order(relative: str) -> tuple[int, str]:
    name = relative.rsplit("/", 1)[-1]
    last = relative == name and name in WEB_ENTRY_POINTS
    return (1 + WEB_ENTRY_POINTS.index(name) if last else 0, relative)


def publish_directory(s3_client: S3Client, bucket: str, directory: Path, *, prefix: str = "") -> PublishedTree:
    """Upload every file under ``directory`` to ``<prefix><relative path>`` with its content type."""
    _check_prefix(prefix, "web")
    if not directory.is_dir():
        raise UsageError(f"web build folder not found: {directory} (build it first, e.g. `flutter build web`)")
    files = {path.relative_to(directory).as_posix(): path for path in directory.rglob("*") if path.is_file()}
    if not files:
        raise UsageError(f"web build folder {directory} is empty: nothing to publish")
    published: list[PublishedFile] = []
    for relative in sorted(files, key=_upload_order):
        path = files[relative]
        key, kind = prefix + relative, content_type(path)
        try:
            s3_client.upload_file(
                str(path), bucket, key, ExtraArgs={"ContentType": kind, "CacheControl": WEB_CACHE_CONTROL}
            )
        except (ClientError, BotoCoreError, Boto3Error) as err:
            raise _failed(f"upload of s3://{bucket}/{key}", err) from err
        published.append(PublishedFile(key=key, content_type=kind, size=path.stat().st_size))
    return PublishedTree(bucket=bucket, prefix=prefix, files=tuple(published))
