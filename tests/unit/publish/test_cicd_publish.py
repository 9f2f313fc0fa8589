"""cicd/publish.py: the APK store layout the Lambda reads, the forward-only pointer, the web tree upload."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from cicd.errors import EXIT_USAGE, StepFailed, UsageError
from cicd.publish import (
    APK_CONTENT_TYPE,
    PublishedApk,
    PublishedTree,
    content_type,
    publish_apk,
    publish_directory,
)
from tests.unit.apk_store import BUCKET, put_apk, put_pointer


def apk(tmp_path: Path, data: bytes = b"PK\x03\x04 android", name: str = "app-release.apk") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def pointer(client: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(client.get_object(Bucket=BUCKET, Key="apk/LATEST")["Body"].read())
    return data


def keys(client: Any) -> list[str]:
    return [item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def fail_on(monkeypatch: Any, client: Any, operation: str, error: Exception, key: str | None = "apk/LATEST") -> None:
    """Make ``client`` raise ``error`` on ``operation`` of ``key`` (of any key when None); every other call goes on."""
    original = client._make_api_call

    def make_api_call(name: str, params: Any) -> Any:
        if name == operation and key in (None, params.get("Key")):
            raise error
        return original(name, params)

    monkeypatch.setattr(client, "_make_api_call", make_api_call)


# --- publish_apk ---------------------------------------------------------------------------------------------


def test_publish_uploads_with_metadata_then_writes_the_pointer(s3: Any, tmp_path: Path) -> None:
    data = b"\x00\x01 android build " * 1000
    result = publish_apk(s3, BUCKET, apk(tmp_path, data), "1.4.27")
    digest = hashlib.sha256(data).hexdigest()
    assert isinstance(result, PublishedApk)
    assert (result.bucket, result.key, result.version) == (BUCKET, "apk/1.4.27/app-release.apk", "1.4.27")
    assert (result.sha256, result.size) == (digest, len(data))
    assert (result.pointer_key, result.pointer_moved, result.latest_version) == ("apk/LATEST", True, "1.4.27")
    assert result.uploaded_at.endswith("Z")
    with pytest.raises(FrozenInstanceError):
        result.version = "2.0.0"  # type: ignore[misc]  # assigning to a frozen field is the point

    head = s3.head_object(Bucket=BUCKET, Key=result.key)
    assert head["ContentType"] == APK_CONTENT_TYPE
    assert head["Metadata"] == {"sha256": digest, "version": "1.4.27"}
    assert head["ContentLength"] == len(data)
    assert s3.get_object(Bucket=BUCKET, Key=result.key)["Body"].read() == data
    assert pointer(s3) == {
        "version": "1.4.27",
        "key": result.key,
        "sha256": digest,
        "size": len(data),
        "uploaded_at": result.uploaded_at,
    }
    assert s3.head_object(Bucket=BUCKET, Key="apk/LATEST")["ContentType"] == "application/json"


def test_a_multipart_upload_keeps_the_metadata(s3: Any, tmp_path: Path) -> None:
    data = bytes(range(256)) * (9 * 4096)  # 9 MiB: above boto3's 8 MiB multipart threshold
    result = publish_apk(s3, BUCKET, apk(tmp_path, data), "1.0.0")
    head = s3.head_object(Bucket=BUCKET, Key=result.key)
    assert "-" in head["ETag"], "uploaded in parts"
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest() == result.sha256
    assert head["ContentType"] == APK_CONTENT_TYPE


def test_the_pointer_only_moves_forward(s3: Any, tmp_path: Path) -> None:
    assert publish_apk(s3, BUCKET, apk(tmp_path, b"one"), "1.2.0").pointer_moved
    older = publish_apk(s3, BUCKET, apk(tmp_path, b"two"), "1.1.9")
    assert (older.pointer_moved, older.latest_version) == (False, "1.2.0")
    assert pointer(s3)["version"] == "1.2.0"
    assert "apk/1.1.9/app-release.apk" in keys(s3), "the older build is still published, just not latest"

    newer = publish_apk(s3, BUCKET, apk(tmp_path, b"three"), "1.10.0")  # numeric, not text, order
    assert (newer.pointer_moved, newer.latest_version) == (True, "1.10.0")
    assert pointer(s3)["version"] == "1.10.0"
    assert not publish_apk(s3, BUCKET, apk(tmp_path, b"four"), "1.9.99").pointer_moved
    assert pointer(s3)["version"] == "1.10.0"


def test_republishing_the_current_version_refreshes_the_pointer(s3: Any, tmp_path: Path) -> None:
    publish_apk(s3, BUCKET, apk(tmp_path, b"first"), "2.0.0")
    again = publish_apk(s3, BUCKET, apk(tmp_path, b"second", "app-fixed.apk"), "2.0.0")
    assert again.pointer_moved
    assert pointer(s3)["key"] == "apk/2.0.0/app-fixed.apk"
    assert pointer(s3)["sha256"] == hashlib.sha256(b"second").hexdigest()


def test_without_a_pointer_a_higher_folder_keeps_it_unwritten(s3: Any, tmp_path: Path) -> None:
    put_apk(s3, "3.0.0")  # uploaded out of band, no pointer
    put_apk(s3, "9.9", name="ignored.apk")  # not a version folder
    result = publish_apk(s3, BUCKET, apk(tmp_path), "2.0.0")
    assert (result.pointer_moved, result.latest_version) == (False, "3.0.0")
    assert "apk/LATEST" not in keys(s3)
    assert publish_apk(s3, BUCKET, apk(tmp_path), "3.0.1").pointer_moved
    assert pointer(s3)["version"] == "3.0.1"


@pytest.mark.parametrize("corrupt", [b"{not json", b"[]", b'{"version": "banana"}', b"x" * 20_000])
def test_an_unreadable_pointer_is_replaced(s3: Any, tmp_path: Path, corrupt: bytes) -> None:
    put_apk(s3, "1.0.0")
    put_pointer(s3, corrupt)
    assert publish_apk(s3, BUCKET, apk(tmp_path), "1.0.1").pointer_moved
    assert pointer(s3)["version"] == "1.0.1"


def test_a_racing_publish_cannot_move_the_pointer_backwards(s3: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """Another pipeline writes 5.0.0's pointer between our read and our write: the conditional write fails,
    we read again, and leave the pointer at 5.0.0."""
    put_pointer(s3, {"version": "1.0.0", "key": "apk/1.0.0/app-release.apk"})
    original = s3._make_api_call
    raced: list[bool] = []

    def make_api_call(operation: str, params: Any) -> Any:
        response = original(operation, params)
        if operation == "GetObject" and params["Key"] == "apk/LATEST" and not raced:
            raced.append(True)
            body = json.dumps({"version": "5.0.0", "key": "apk/5.0.0/app-release.apk"}).encode()
            original("PutObject", {"Bucket": BUCKET, "Key": "apk/LATEST", "Body": body})
        return response

    monkeypatch.setattr(s3, "_make_api_call", make_api_call)
    result = publish_apk(s3, BUCKET, apk(tmp_path), "2.0.0")
    assert raced
    assert (result.pointer_moved, result.latest_version) == (False, "5.0.0")
    assert pointer(s3)["version"] == "5.0.0"


def test_a_pointer_that_never_settles_fails_the_step(s3: Any, tmp_path: Path, monkeypatch: Any) -> None:
    error = ClientError({"Error": {"Code": "PreconditionFailed", "Message": "changed"}}, "PutObject")
    fail_on(monkeypatch, s3, "PutObject", error)
    with pytest.raises(StepFailed, match="kept changing"):
        publish_apk(s3, BUCKET, apk(tmp_path), "2.0.0")


@pytest.mark.parametrize(
    "version",
    [
        *("", "1", "1.2", "1.2.3.4", "v1.2.3", "01.2.3", "1.2.3-rc1", "1.2.3\n", " 1.2.3"),
        *("\u0661.\u0662.\u0663", "1.2." + "9" * 70),
    ],
)
def test_a_bad_version_is_a_usage_error_and_uploads_nothing(s3: Any, tmp_path: Path, version: str) -> None:
    with pytest.raises(UsageError) as caught:
        publish_apk(s3, BUCKET, apk(tmp_path), version)
    message = str(caught.value)
    assert "MAJOR.MINOR.PATCH" in message
    assert "\n" not in message
    assert caught.value.return_code == EXIT_USAGE
    assert keys(s3) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [("app release.apk", "invalid APK file name"), ("app.zip", "invalid APK file name"), (".apk", "invalid APK")],
)
def test_a_bad_file_name_is_a_usage_error(s3: Any, tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(UsageError, match=expected):
        publish_apk(s3, BUCKET, apk(tmp_path, name=name), "1.0.0")
    assert keys(s3) == []


def test_a_missing_file_or_bad_prefix_is_a_usage_error(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="APK not found"):
        publish_apk(s3, BUCKET, tmp_path / "absent.apk", "1.0.0")
    for prefix in ("/apk/", "apk"):
        with pytest.raises(UsageError, match="prefix"):
            publish_apk(s3, BUCKET, apk(tmp_path), "1.0.0", prefix=prefix)


def test_another_prefix(s3: Any, tmp_path: Path) -> None:
    result = publish_apk(s3, BUCKET, apk(tmp_path), "1.0.0", prefix="android/")
    assert result.key == "android/1.0.0/app-release.apk"
    assert result.pointer_key == "android/LATEST"
    assert set(keys(s3)) == {"android/1.0.0/app-release.apk", "android/LATEST"}


def test_an_upload_failure_is_a_failed_step(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=re.escape("upload of s3://no-such-bucket/apk/1.0.0/app-release.apk failed")):
        publish_apk(s3, "no-such-bucket", apk(tmp_path), "1.0.0")


def test_an_unreachable_store_is_a_failed_step(s3: Any, tmp_path: Path, monkeypatch: Any) -> None:
    fail_on(monkeypatch, s3, "GetObject", EndpointConnectionError(endpoint_url="https://s3.example"), key=None)
    with pytest.raises(StepFailed, match="writing the pointer"):
        publish_apk(s3, BUCKET, apk(tmp_path), "1.0.0")


def test_a_denied_pointer_read_is_a_failed_step(s3: Any, tmp_path: Path, monkeypatch: Any) -> None:
    fail_on(
        monkeypatch, s3, "GetObject", ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")
    )
    with pytest.raises(StepFailed, match="AccessDenied"):
        publish_apk(s3, BUCKET, apk(tmp_path), "1.0.0")
    assert "apk/LATEST" not in keys(s3)


def test_a_denied_pointer_write_is_a_failed_step(s3: Any, tmp_path: Path, monkeypatch: Any) -> None:
    fail_on(
        monkeypatch, s3, "PutObject", ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
    )
    with pytest.raises(StepFailed, match="AccessDenied"):
        publish_apk(s3, BUCKET, apk(tmp_path), "1.0.0")


def test_an_upload_that_does_not_verify_fails_before_the_pointer(s3: Any, tmp_path: Path, monkeypatch: Any) -> None:
    original = s3._make_api_call

    def make_api_call(operation: str, params: Any) -> Any:
        response = original(operation, params)
        if operation == "HeadObject":
            response["ContentLength"] -= 1  # a truncated upload
        return response

    monkeypatch.setattr(s3, "_make_api_call", make_api_call)
    with pytest.raises(StepFailed, match="did not verify"):
        publish_apk(s3, BUCKET, apk(tmp_path), "1.0.0")
    assert "apk/LATEST" not in keys(s3)


# --- publish_directory ---------------------------------------------------------------------------------------


WEB_FILES = {
    "index.html": "text/html; charset=utf-8",
    "main.dart.js": "text/javascript; charset=utf-8",
    "flutter_bootstrap.js": "text/javascript; charset=utf-8",
    "flutter_service_worker.js": "text/javascript; charset=utf-8",
    "manifest.json": "application/json",
    "version.json": "application/json",
    "favicon.png": "image/png",
    "icons/Icon-192.png": "image/png",
    "canvaskit/canvaskit.wasm": "application/wasm",
    "canvaskit/canvaskit.js.symbols": "application/octet-stream",
    "assets/fonts/MaterialIcons-Regular.otf": "font/otf",
    "assets/AssetManifest.bin": "application/octet-stream",
    "assets/shaders/ink_sparkle.frag": "application/octet-stream",
    "assets/NOTICES": "application/octet-stream",
    "assets/images/logo.svg": "image/svg+xml",
    "assets/data/manual.pdf": "application/pdf",
    "sub/index.html": "text/html; charset=utf-8",
}


@pytest.fixture
def web_build(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    for relative in WEB_FILES:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(relative.encode() * 3)
    return root


def test_publish_directory_uploads_the_tree_with_content_types(s3: Any, web_build: Path) -> None:
    tree = publish_directory(s3, BUCKET, web_build)
    assert isinstance(tree, PublishedTree)
    assert {f.key: f.content_type for f in tree.files} == WEB_FILES
    assert tree.total_bytes == sum(len(relative) * 3 for relative in WEB_FILES)
    for relative, kind in WEB_FILES.items():
        head = s3.head_object(Bucket=BUCKET, Key=relative)
        assert head["ContentType"] == kind, relative
        assert head["CacheControl"] == "no-cache"
    assert s3.get_object(Bucket=BUCKET, Key="icons/Icon-192.png")["Body"].read() == b"icons/Icon-192.png" * 3


def test_entry_points_are_uploaded_last(s3: Any, web_build: Path) -> None:
    order = [f.key for f in publish_directory(s3, BUCKET, web_build).files]
    assert order[-3:] == ["flutter_service_worker.js", "flutter_bootstrap.js", "index.html"]
    assert "sub/index.html" in order[:-3], "only the top-level entry points wait"


def test_publish_directory_under_a_prefix(s3: Any, web_build: Path) -> None:
    tree = publish_directory(s3, BUCKET, web_build, prefix="web/dev/")
    assert tree.prefix == "web/dev/"
    assert set(keys(s3)) == {f"web/dev/{relative}" for relative in WEB_FILES}


def test_publish_directory_usage_errors(s3: Any, tmp_path: Path, web_build: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        publish_directory(s3, BUCKET, tmp_path / "absent")
    (tmp_path / "empty" / "nested").mkdir(parents=True)
    with pytest.raises(UsageError, match="empty"):
        publish_directory(s3, BUCKET, tmp_path / "empty")
    with pytest.raises(UsageError, match="prefix"):
        publish_directory(s3, BUCKET, web_build, prefix="web")
    assert keys(s3) == []


def test_publish_directory_upload_failure_is_a_failed_step(s3: Any, web_build: Path) -> None:
    with pytest.raises(StepFailed, match="upload of s3://no-such-bucket/"):
        publish_directory(s3, "no-such-bucket", web_build)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("A.HTML", "text/html; charset=utf-8"), ("x.woff2", "font/woff2"), ("x.unknownext", "application/octet-stream")],
)
def test_content_type(name: str, expected: str) -> None:
    assert content_type(Path(name)) == expected
