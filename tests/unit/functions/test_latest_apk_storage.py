"""How the function finds builds in S3: pointer, stale pointer, paginated fallback, version ordering, config."""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta
from typing import Any, cast

import pytest
from latest_apk import handler as lambda_handler
from latest_apk.logic import ApkStore
from latest_apk.models import Config, ConfigError
from latest_apk.versions import Version, parse_version

from tests.unit.apk_store import BUCKET, put_apk, put_pointer
from tests.unit.functions.apk_helpers import api_event, invoke, reset_cold_start, reset_config, seed_objects


def count_calls(monkeypatch: Any, client: Any) -> dict[str, int]:
    """Count the S3 operations ``client`` makes."""
    calls: dict[str, int] = {}
    original = client._make_api_call

    def make_api_call(operation: str, params: Any) -> Any:
        calls[operation] = calls.get(operation, 0) + 1
        return original(operation, params)

    monkeypatch.setattr(client, "_make_api_call", make_api_call)
    return calls


def latest(client: Any) -> Any:
    return ApkStore(client, BUCKET, "apk/").latest()


# --- semantic versions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0", Version(0, 0, 0)),
        ("1.2.3", Version(1, 2, 3)),
        ("10.20.30", Version(10, 20, 30)),
        ("1.2.99999999999999999999", Version(1, 2, 99999999999999999999)),
    ],
)
def test_versions_that_parse(text: str, expected: Version) -> None:
    assert parse_version(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        *("", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03", "v1.2.3", "1.2.3-rc1", "1.2.3\n", " 1.2.3"),
        *("1..3", "\u0661.\u0662.\u0663", "1.2." + "9" * 70, "LATEST", "1.2.x"),
    ],
)
def test_versions_that_do_not_parse(text: str) -> None:
    assert parse_version(text) is None


def test_versions_order_numerically_not_as_text() -> None:
    texts = ["1.9.0", "1.10.0", "1.2.10", "1.2.9", "0.99.99", "2.0.0", "1.10.1"]
    ordered = sorted((v for v in map(parse_version, texts) if v is not None), reverse=True)
    assert [str(v) for v in ordered] == ["2.0.0", "1.10.1", "1.10.0", "1.9.0", "1.2.10", "1.2.9", "0.99.99"]


# --- pointer and fallback ------------------------------------------------------------------------------------


def test_a_valid_pointer_costs_two_requests(s3: Any, monkeypatch: Any) -> None:
    key = put_apk(s3, "3.1.4", data=b"pi")
    put_pointer(s3, {"version": "3.1.4", "key": key})
    calls = count_calls(monkeypatch, s3)
    found = latest(s3)
    assert (found.version, found.key, found.size) == ("3.1.4", key, 2)
    assert found.sha256 == hashlib.sha256(b"pi").hexdigest()
    assert calls == {"GetObject": 1, "HeadObject": 1}


def test_more_than_1000_versions_without_a_pointer(s3: Any, monkeypatch: Any) -> None:
    versions = [f"1.{minor}.{patch}" for minor in range(110) for patch in range(10)]  # 1,100 folders
    random.Random(7).shuffle(versions)
    seed_objects([f"apk/{version}/app-release.apk" for version in versions])
    seed_objects(["apk/notes/readme.txt", "apk/1.2/app.apk", "apk/v9.9.9/app.apk", "apk/99.0/app.apk"])
    calls = count_calls(monkeypatch, s3)
    store = ApkStore(s3, BUCKET, "apk/")
    listed = store.versions_descending()
    assert len(listed) == 1100
    assert str(listed[0]) == "1.109.9"
    assert calls["ListObjectsV2"] >= 2, "1,100 version folders cannot come back in one page"
    assert store.latest().version == "1.109.9"

    answer = invoke(api_event("GET", "/apk/latest"))
    assert answer.status == 200
    assert answer.body["version"] == "1.109.9"
    assert invoke(api_event("GET", "/apk/1.0.0")).body["key"] == "apk/1.0.0/app-release.apk"


def test_a_stale_pointer_is_never_served(s3: Any) -> None:
    put_apk(s3, "2.0.0")
    put_apk(s3, "1.0.0")
    put_pointer(s3, {"version": "2.1.0", "key": "apk/2.1.0/app-release.apk"})  # its object was deleted
    assert latest(s3).version == "2.0.0"
    answer = invoke(api_event("GET", "/apk/latest"))
    assert answer.status == 200
    assert answer.body["key"] == "apk/2.0.0/app-release.apk"


def test_a_stale_pointer_on_an_emptied_bucket_is_404(s3: Any) -> None:
    put_pointer(s3, {"version": "2.1.0", "key": "apk/2.1.0/app-release.apk"})
    answer = invoke(api_event("GET", "/apk/latest"))
    assert answer.status == 404
    assert answer.body["error"] == "no_build_published"


@pytest.mark.parametrize(
    "pointer",
    [
        b"not json",
        b"",
        b"[1, 2]",
        b'"1.0.0"',
        {"version": "1.0.0"},
        {"key": "apk/1.0.0/app-release.apk"},
        {"version": "1.0", "key": "apk/1.0/app-release.apk"},
        {"version": 1, "key": "apk/1.0.0/app-release.apk"},
        {"version": "1.0.0", "key": "apk/2.0.0/app-release.apk"},  # names another version's object
        {"version": "1.0.0", "key": "elsewhere/app-release.apk"},
        {"version": "1.0.0", "key": "apk/1.0.0/sub/app-release.apk"},
        {"version": "1.0.0", "key": "apk/1.0.0/app-release.txt"},
        b'{"version": "1.0.0", "key": "apk/1.0.0/app-release.apk", "pad": "' + b"x" * 20_000 + b'"}',
    ],
)
def test_an_unusable_pointer_falls_back_to_listing(s3: Any, pointer: Any) -> None:
    put_apk(s3, "1.0.0")
    put_apk(s3, "2.0.0")
    put_pointer(s3, pointer)
    assert latest(s3).version == "2.0.0"


def test_folders_without_an_apk_are_skipped(s3: Any) -> None:
    put_apk(s3, "1.0.0")
    s3.put_object(Bucket=BUCKET, Key="apk/3.0.0/notes.txt", Body=b"no apk here")
    s3.put_object(Bucket=BUCKET, Key="apk/2.0.0/nested/app.apk", Body=b"too deep")
    s3.put_object(Bucket=BUCKET, Key="apk/2.5.0/.apk", Body=b"no name")
    assert latest(s3).version == "1.0.0"
    assert invoke(api_event("GET", "/apk/3.0.0")).status == 404


def test_the_newest_upload_wins_inside_a_version_folder(s3: Any, monkeypatch: Any) -> None:
    put_apk(s3, "1.0.0", name="app-release.apk", data=b"older")
    put_apk(s3, "1.0.0", name="app-release-fixed.apk", data=b"newer!")
    original = s3._make_api_call

    def listing_with_distinct_times(operation: str, params: Any) -> Any:
        """Both uploads land in the same second here; make the listing say which came first."""
        response = original(operation, params)
        if operation == "ListObjectsV2":
            for item in response.get("Contents", []):
                if item["Key"].endswith("/app-release.apk"):
                    item["LastModified"] -= timedelta(minutes=1)
        return response

    monkeypatch.setattr(s3, "_make_api_call", listing_with_distinct_times)
    store = ApkStore(s3, BUCKET, "apk/")
    found = store.get(Version(1, 0, 0))
    assert (found.key, found.size) == ("apk/1.0.0/app-release-fixed.apk", 6)
    assert store.latest().key == found.key


def test_missing_sha256_metadata_is_null_not_invented(s3: Any) -> None:
    put_apk(s3, "1.0.0", with_sha=False)
    s3.put_object(Bucket=BUCKET, Key="apk/1.0.1/app-release.apk", Body=b"x", Metadata={"sha256": "not-a-digest"})
    assert invoke(api_event("GET", "/apk/1.0.0")).body["sha256"] is None
    assert invoke(api_event("GET", "/apk/1.0.1")).body["sha256"] is None


def test_another_prefix(s3: Any, monkeypatch: Any) -> None:
    put_apk(s3, "5.0.0")  # under apk/: not ours with this prefix
    put_apk(s3, "1.0.0", prefix="builds/android/")
    monkeypatch.setenv("APK_PREFIX", "builds/android/")
    reset_config()
    answer = invoke(api_event("GET", "/apk/latest"))
    assert answer.body["key"] == "builds/android/1.0.0/app-release.apk"


def test_an_empty_prefix(s3: Any, monkeypatch: Any) -> None:
    put_apk(s3, "1.0.0", prefix="")
    put_pointer(s3, {"version": "1.0.0", "key": "1.0.0/app-release.apk"}, prefix="")
    monkeypatch.setenv("APK_PREFIX", "")
    reset_config()
    assert invoke(api_event("GET", "/apk/latest")).body["key"] == "1.0.0/app-release.apk"


# --- configuration -------------------------------------------------------------------------------------------


def test_configuration_defaults() -> None:
    config = Config.from_env({"APK_BUCKET": "my-bucket", "ENVIRONMENT": "prod", "BUILD_VERSION": "1.2.3"})
    assert config == Config(
        bucket="my-bucket",
        prefix="apk/",
        ttl_default=300,
        ttl_max=3600,
        environment="prod",
        build_version="1.2.3",
        build_commit=None,
        service_name="latest-apk",
    )


def test_a_small_maximum_lowers_the_default() -> None:
    config = Config.from_env(
        {"APK_BUCKET": "my-bucket", "ENVIRONMENT": "dev", "BUILD_VERSION": "1", "URL_TTL_MAX": "60"}
    )
    assert (config.ttl_default, config.ttl_max) == (60, 60)


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"APK_BUCKET": "  "}, "APK_BUCKET"),
        ({"APK_BUCKET": "ab"}, "APK_BUCKET"),
        ({"APK_BUCKET": "a..b"}, "APK_BUCKET"),
        ({"ENVIRONMENT": "PROD"}, "ENVIRONMENT"),
        ({"URL_TTL_DEFAULT": "0"}, "URL_TTL_DEFAULT"),
        ({"URL_TTL_MAX": "1" * 300}, "URL_TTL_MAX"),
        ({"APK_PREFIX": "apk/" * 100}, "APK_PREFIX"),
    ],
)
def test_configuration_errors_name_the_variable(changes: dict[str, str], variable: str) -> None:
    env = {"APK_BUCKET": "my-bucket", "ENVIRONMENT": "dev", "BUILD_VERSION": "1.0.0", **changes}
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable)
    assert len(str(caught.value)) < 200
    assert "\n" not in str(caught.value)


def test_the_client_uses_the_function_region_and_sigv4(monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    reset_cold_start()
    client = lambda_handler.s3_client()
    assert client.meta.region_name == "ap-southeast-2"
    # botocore-stubs declare ``signature_version`` only as a ``Config()`` argument; botocore sets the attribute.
    assert cast(Any, client.meta.config).signature_version == "s3v4"
    reset_cold_start()


def test_the_client_honours_aws_endpoint_url(monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:4999")
    reset_cold_start()
    assert lambda_handler.s3_client().meta.endpoint_url == "http://localhost:4999"
    reset_cold_start()
