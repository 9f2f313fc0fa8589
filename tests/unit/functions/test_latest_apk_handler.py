"""The latest-APK Lambda end to end through its handler, against an in-process S3 (moto)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from latest_apk import handler as lambda_handler
from latest_apk import logic
from latest_apk.models import ServiceError

from cicd.publish import publish_apk
from tests.unit.apk_store import BUCKET, REGION, put_apk, put_pointer
from tests.unit.functions.apk_helpers import FakeContext, api_event, invoke, log_lines, reset_config

ALLOW = "GET, HEAD, OPTIONS"


def publish(client: Any, tmp_path: Path, version: str, data: bytes | None = None) -> bytes:
    """Publish through the pipeline's own publisher (upload, verify, move the pointer)."""
    data = data if data is not None else f"android build {version}".encode() * 50
    apk = tmp_path / version / "app-release.apk"
    apk.parent.mkdir(parents=True, exist_ok=True)
    apk.write_bytes(data)
    publish_apk(client, BUCKET, apk, version)
    return data


@pytest.fixture
def published(s3: Any) -> dict[str, bytes]:
    """Three builds written straight into the layout (cheaper than publishing; the publisher has its own tests
    and the first test below goes through it), the pointer naming the highest by semantic version, 1.10.0."""
    builds = {version: f"android build {version}".encode() * 50 for version in ("1.2.0", "1.10.0", "1.9.9")}
    for version, data in builds.items():
        put_apk(s3, version, data=data)
    put_pointer(s3, {"version": "1.10.0", "key": "apk/1.10.0/app-release.apk"})
    return builds


def assert_error(answer: Any, status: int, code: str) -> None:
    assert answer.status == status, answer.raw_body
    assert set(answer.body) == {"error", "message"}
    assert answer.body["error"] == code
    assert answer.body["message"]


# --- 200 -----------------------------------------------------------------------------------------------------


def test_latest_is_the_highest_published_semantic_version(s3: Any, tmp_path: Path) -> None:
    published = {version: publish(s3, tmp_path, version) for version in ("1.2.0", "1.10.0", "1.9.9")}
    answer = invoke(api_event("GET", "/apk/latest"))
    assert answer.status == 200
    body = answer.body
    assert set(body) == {"version", "key", "size", "sha256", "uploaded_at", "url", "expires_in"}
    assert body["version"] == "1.10.0"
    assert body["key"] == "apk/1.10.0/app-release.apk"
    assert body["size"] == len(published["1.10.0"])
    assert body["sha256"] == hashlib.sha256(published["1.10.0"]).hexdigest()
    uploaded = datetime.strptime(body["uploaded_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - uploaded) < timedelta(minutes=5)
    assert body["expires_in"] == 300
    url = urlsplit(body["url"])
    params = parse_qs(url.query)
    assert url.path.endswith("/apk/1.10.0/app-release.apk")
    assert params["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert params["X-Amz-Expires"] == ["300"]
    assert f"/{REGION}/s3/aws4_request" in params["X-Amz-Credential"][0]


def test_one_version_by_path(published: dict[str, bytes]) -> None:
    answer = invoke(api_event("GET", "/apk/1.9.9"))
    assert answer.status == 200
    assert answer.body["version"] == "1.9.9"
    assert answer.body["key"] == "apk/1.9.9/app-release.apk"
    assert answer.body["sha256"] == hashlib.sha256(published["1.9.9"]).hexdigest()


@pytest.mark.parametrize("expires", ["1", "60", "3600", "0300"])
def test_expires_sets_the_url_lifetime(published: dict[str, bytes], expires: str) -> None:
    answer = invoke(api_event("GET", "/apk/latest", {"expires": expires}))
    assert answer.status == 200
    assert answer.body["expires_in"] == int(expires)
    assert parse_qs(urlsplit(answer.body["url"]).query)["X-Amz-Expires"] == [str(int(expires))]


def test_ttl_settings_come_from_the_environment(published: dict[str, bytes], monkeypatch: Any) -> None:
    monkeypatch.setenv("URL_TTL_DEFAULT", "120")
    monkeypatch.setenv("URL_TTL_MAX", "600")
    reset_config()
    assert invoke(api_event()).body["expires_in"] == 120
    assert invoke(api_event("GET", "/apk/latest", {"expires": "600"})).body["expires_in"] == 600
    assert_error(invoke(api_event("GET", "/apk/latest", {"expires": "601"})), 400, "invalid_expires")


def test_repeated_equal_expires_is_accepted(published: dict[str, bytes]) -> None:
    answer = invoke(api_event("GET", "/apk/latest", {"expires": "90"}, {"expires": ["90", "90"]}))
    assert answer.status == 200
    assert answer.body["expires_in"] == 90


def test_null_optional_event_members(published: dict[str, bytes]) -> None:
    event = api_event("GET", "/apk/latest")
    event.update(queryStringParameters=None, multiValueQueryStringParameters=None, pathParameters=None, headers=None)
    del event["requestContext"]
    assert invoke(event).status == 200


def test_stage_prefix_is_stripped_only_for_the_own_stage(published: dict[str, bytes]) -> None:
    assert invoke(api_event("GET", "/dev/apk/latest", stage="dev")).body["version"] == "1.10.0"
    assert invoke(api_event("GET", "/dev/health", stage="dev")).status == 200
    assert_error(invoke(api_event("GET", "/prod/apk/latest", stage="dev")), 404, "not_found")


def test_trailing_slash_is_tolerated(published: dict[str, bytes]) -> None:
    assert invoke(api_event("GET", "/apk/latest/")).body["version"] == "1.10.0"


def test_head_answers_like_get_without_a_body(published: dict[str, bytes]) -> None:
    answer = invoke(api_event("HEAD", "/apk/latest"))
    assert answer.status == 200
    assert answer.raw_body == ""
    missing = invoke(api_event("HEAD", "/apk/7.7.7"))
    assert missing.status == 404
    assert missing.raw_body == ""


def test_options_is_a_preflight_answer(s3: Any) -> None:
    answer = invoke(api_event("OPTIONS", "/apk/latest"))
    assert answer.status == 204
    assert answer.raw_body == ""
    assert answer.headers["Allow"] == ALLOW
    assert answer.headers["Access-Control-Allow-Methods"] == ALLOW
    assert answer.headers["Access-Control-Allow-Origin"] == "*"


def test_health_reports_the_build(monkeypatch: Any) -> None:
    answer = invoke(api_event("GET", "/health"))
    assert answer.status == 200
    assert answer.body == {
        "service": "latest-apk",
        "environment": "dev",
        "version": "0.1.42",
        "commit": "0123456789abcdef0123456789abcdef01234567",
    }
    monkeypatch.delenv("BUILD_COMMIT")
    monkeypatch.setenv("SERVICE_NAME", "apk-api")
    monkeypatch.setenv("ENVIRONMENT", "prod")
    reset_config()
    assert invoke(api_event("GET", "/health")).body == {
        "service": "apk-api",
        "environment": "prod",
        "version": "0.1.42",
        "commit": None,
    }


# --- 4xx -----------------------------------------------------------------------------------------------------


def test_unknown_version_is_404(published: dict[str, bytes]) -> None:
    answer = invoke(api_event("GET", "/apk/7.7.7"))
    assert_error(answer, 404, "version_not_found")
    assert "7.7.7" in answer.body["message"]


def test_empty_bucket_is_404_no_build_published(s3: Any) -> None:
    answer = invoke(api_event("GET", "/apk/latest"))
    assert_error(answer, 404, "no_build_published")
    assert "no build published yet" in answer.body["message"].lower()


@pytest.mark.parametrize("version", ["1.2", "v1.2.3", "01.2.3", "1.2.3-rc.1", "1.2.3.4", "latest2", "%31.2.3"])
def test_malformed_version_is_400(published: dict[str, bytes], version: str) -> None:
    assert_error(invoke(api_event("GET", f"/apk/{version}")), 400, "invalid_version")


@pytest.mark.parametrize(
    "path",
    ["/", "", "/apk", "/apk/", "/apk//", "/APK/latest", "/apk/1.2.3/extra", "/health/x", "/healthz", "//apk/latest"],
)
def test_unknown_path_is_404(published: dict[str, bytes], path: str) -> None:
    assert_error(invoke(api_event("GET", path)), 404, "not_found")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT"])
@pytest.mark.parametrize("path", ["/apk/latest", "/apk/1.2.0", "/health"])
def test_wrong_method_on_a_known_path_is_405(published: dict[str, bytes], method: str, path: str) -> None:
    answer = invoke(api_event(method, path))
    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["Allow"] == ALLOW


def test_wrong_method_on_an_unknown_path_is_404(s3: Any) -> None:
    assert_error(invoke(api_event("POST", "/upload")), 404, "not_found")


@pytest.mark.parametrize(
    "expires",
    [
        "",
        "0",
        "-1",
        "3601",
        "86400",
        "abc",
        " 60",
        "60 ",
        "60s",
        "1e3",
        "1_000",
        "+60",
        "0x10",
        "60.0",
        "\u0663\u0660",  # Arabic-Indic digits: int() would accept them
        "9" * 5000,  # beyond int()'s default digit limit
        "null",
    ],
)
def test_bad_expires_is_400(published: dict[str, bytes], expires: str) -> None:
    answer = invoke(api_event("GET", "/apk/latest", {"expires": expires}))
    assert_error(answer, 400, "invalid_expires")
    assert "3600" in answer.body["message"]


def test_conflicting_expires_values_are_400(published: dict[str, bytes]) -> None:
    event = api_event("GET", "/apk/latest", {"expires": "120"}, {"expires": ["60", "120"]})
    assert_error(invoke(event), 400, "invalid_expires")


def test_bad_expires_on_a_version_is_400_before_any_lookup(s3: Any) -> None:
    assert_error(invoke(api_event("GET", "/apk/1.0.0", {"expires": "0"})), 400, "invalid_expires")


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"httpMethod": "GET"},
        {"path": "/health"},
        {"httpMethod": "", "path": "/health"},
        {"httpMethod": 7, "path": "/health"},
        [],
        None,
        "GET /health",
    ],
)
def test_an_unusable_event_is_400(s3: Any, event: Any) -> None:
    assert_error(invoke(event), 400, "bad_request")


# --- 500: configuration --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("APK_BUCKET", None),
        ("APK_BUCKET", "Not_A_Bucket"),
        ("ENVIRONMENT", None),
        ("ENVIRONMENT", "staging"),
        ("BUILD_VERSION", None),
        ("BUILD_VERSION", "1.0.0; rm -rf /"),
        ("BUILD_COMMIT", "not a commit"),
        ("URL_TTL_MAX", "abc"),
        ("URL_TTL_MAX", "0"),
        ("URL_TTL_MAX", "604801"),
        ("URL_TTL_DEFAULT", "7200"),
        ("URL_TTL_DEFAULT", "-5"),
        ("APK_PREFIX", "/apk/"),
        ("APK_PREFIX", "apk"),
        ("SERVICE_NAME", "latest apk"),
    ],
)
def test_bad_configuration_is_a_generic_500_and_one_log_line(
    published: dict[str, bytes], monkeypatch: Any, capsys: Any, variable: str, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)
    reset_config()
    capsys.readouterr()
    answers = [invoke(api_event("GET", path)) for path in ("/apk/latest", "/health", "/apk/1.2.0", "/nope")]
    for answer in answers:
        assert_error(answer, 500, "internal_error")
        assert variable not in answer.raw_body
        assert BUCKET not in answer.raw_body
        if value:
            assert value not in answer.raw_body
    lines = log_lines(capsys.readouterr().out)
    config_errors = [line for line in lines if line["message"].startswith("invalid configuration")]
    assert len(config_errors) == 1, "the configuration is validated once per container"
    assert config_errors[0]["variable"] == variable
    assert variable in config_errors[0]["message"]
    assert [line["status"] for line in lines if line["message"] == "request"] == [500] * 4


def test_configuration_is_read_once_per_container(published: dict[str, bytes], monkeypatch: Any) -> None:
    assert invoke(api_event("GET", "/health")).body["environment"] == "dev"
    monkeypatch.setenv("ENVIRONMENT", "prod")
    assert invoke(api_event("GET", "/health")).body["environment"] == "dev"
    monkeypatch.delenv("APK_BUCKET")
    assert invoke(api_event("GET", "/apk/latest")).status == 200


def test_the_s3_client_is_created_once(published: dict[str, bytes]) -> None:
    invoke(api_event())
    first = lambda_handler.s3_client()
    invoke(api_event())
    assert lambda_handler.s3_client() is first
    assert first.meta.region_name == REGION


# --- 5xx: S3 faults and bugs ---------------------------------------------------------------------------------


def fail_operations(monkeypatch: Any, error: Exception, operations: set[str] | None = None) -> None:
    """Make the function's S3 client raise ``error`` for ``operations`` (all when None)."""
    client = lambda_handler.s3_client()
    original = client._make_api_call  # type: ignore[attr-defined]  # botocore's private dispatch, patched on purpose

    def make_api_call(operation: str, params: Any) -> Any:
        if operations is None or operation in operations:
            raise error
        return original(operation, params)

    monkeypatch.setattr(client, "_make_api_call", make_api_call)


def client_error(code: str, status: int = 500) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "secret internal detail"},
            "ResponseMetadata": {
                "RequestId": "request-1",
                "HostId": "host-1",
                "HTTPStatusCode": status,
                "HTTPHeaders": {},
                "RetryAttempts": 0,
            },
        },
        "GetObject",
    )


@pytest.mark.parametrize(
    ("error", "operations"),
    [
        (client_error("InternalError"), None),
        (client_error("AccessDenied", 403), {"GetObject"}),
        (client_error("SlowDown", 503), {"HeadObject"}),
        (client_error("NoSuchBucket", 404), {"ListObjectsV2"}),
        (EndpointConnectionError(endpoint_url="https://s3.secret-internal.example"), None),
        (ReadTimeoutError(endpoint_url="https://s3.secret-internal.example"), {"HeadObject"}),
    ],
)
def test_s3_faults_are_502_without_details(
    s3: Any, monkeypatch: Any, capsys: Any, error: Exception, operations: set[str] | None
) -> None:
    put_apk(s3, "2.0.0")  # no pointer: the latest route reads the pointer, lists, then HEADs
    fail_operations(monkeypatch, error, operations)
    capsys.readouterr()
    for path in ("/apk/latest", "/apk/2.0.0"):
        answer = invoke(api_event("GET", path))
        if operations == {"GetObject"} and path == "/apk/2.0.0":
            assert answer.status == 200  # the version route never reads the pointer
            continue
        assert_error(answer, 502, "storage_unavailable")
        assert "secret" not in answer.raw_body
    line = log_lines(capsys.readouterr().out)[0]
    assert line["status"] == 502
    assert line["level"] == "ERROR"
    assert type(error).__name__ in line["cause"]


def test_health_does_not_touch_s3(s3: Any, monkeypatch: Any) -> None:
    fail_operations(monkeypatch, EndpointConnectionError(endpoint_url="https://s3.example"))
    assert invoke(api_event("GET", "/health")).status == 200


def test_an_unexpected_bug_is_a_generic_500_logged_with_its_traceback(s3: Any, monkeypatch: Any, capsys: Any) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(logic, "handle", broken)
    capsys.readouterr()
    answer = invoke(api_event("GET", "/apk/latest"))
    assert_error(answer, 500, "internal_error")
    assert "secret" not in answer.raw_body
    assert "Traceback" not in answer.raw_body
    (line,) = log_lines(capsys.readouterr().out)
    assert line["cause"] == "RuntimeError: secret internal detail"
    assert "Traceback" in line["traceback"]


def test_every_domain_error_has_a_status_in_the_one_table() -> None:
    def subclasses(cls: type[ServiceError]) -> list[type[ServiceError]]:
        return [cls, *(sub for child in cls.__subclasses__() for sub in subclasses(child))]

    table = lambda_handler.STATUS_BY_ERROR
    for cls in subclasses(ServiceError)[1:]:
        assert any(ancestor in table for ancestor in cls.__mro__), f"{cls.__name__} has no HTTP status"
    assert lambda_handler.status_of(ServiceError("unmapped")) == 500


# --- logging -------------------------------------------------------------------------------------------------


def test_one_structured_log_line_per_request(published: dict[str, bytes], capsys: Any) -> None:
    capsys.readouterr()
    invoke(api_event("GET", "/apk/latest"), FakeContext(aws_request_id="req-42"))
    invoke(api_event("GET", "/apk/0.0.1"), FakeContext(aws_request_id="req-43"))
    first, second = log_lines(capsys.readouterr().out)
    assert first["message"] == "request"
    assert first["level"] == "INFO"
    assert first["method"] == "GET"
    assert first["path"] == "/apk/latest"
    assert first["status"] == 200
    assert first["request_id"] == "req-42"
    assert first["api_request_id"] == "api-req-1"
    assert isinstance(first["latency_ms"], float)
    assert first["latency_ms"] >= 0
    assert second["status"] == 404
    assert second["error"] == "version_not_found"
    assert second["request_id"] == "req-43"


def test_the_logged_path_is_bounded(s3: Any, capsys: Any) -> None:
    capsys.readouterr()
    invoke(api_event("GET", "/" + "x" * 100_000))
    (line,) = log_lines(capsys.readouterr().out)
    assert line["status"] == 404
    assert len(json.dumps(line)) < 2_000
