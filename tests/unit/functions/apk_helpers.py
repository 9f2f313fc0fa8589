"""Helpers for the latest-APK Lambda's tests: a fake Lambda context, API Gateway REST (payload v1) proxy events,
many objects at once in the store (its layout: :mod:`tests.unit.apk_store`), the deployment zip."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latest_apk import handler as lambda_handler

from tests.unit.apk_store import BUCKET, REGION

FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"
LAMBDA_ENV = {
    "APK_BUCKET": BUCKET,
    "ENVIRONMENT": "dev",
    "BUILD_VERSION": "0.1.42",
    "BUILD_COMMIT": "0123456789abcdef0123456789abcdef01234567",
}
OPTIONAL_VARS = ("APK_PREFIX", "URL_TTL_DEFAULT", "URL_TTL_MAX", "SERVICE_NAME")


@dataclass
class FakeContext:
    """The attributes of the Lambda context object the function (and its log line) may read."""

    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    function_name: str = "latest-apk-dev"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:latest-apk-dev"
    log_group_name: str = "/aws/lambda/latest-apk-dev"
    log_stream_name: str = "2026/11/26/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    raw_body: str
    body: Any = field(default=None)


def api_event(
    method: str = "GET",
    path: str = "/apk/latest",
    query: dict[str, str] | None = None,
    multi: dict[str, list[str]] | None = None,
    *,
    stage: str = "dev",
) -> dict[str, Any]:
    """A REST API proxy event as API Gateway sends it for a ``/{proxy+}`` resource."""
    if multi is None and query is not None:
        multi = {name: [value] for name, value in query.items()}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"Accept": "application/json", "Host": "abc123.execute-api.eu-west-1.amazonaws.com"},
        "multiValueHeaders": {"Accept": ["application/json"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": "api-req-1",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def invoke(event: Any, context: FakeContext | None = None) -> Answer:
    """Call the handler and decode its proxy response (asserting the shape every answer must have)."""
    response = lambda_handler.handler(event, context or FakeContext())
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert response["isBase64Encoded"] is False
    headers = response["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    raw = response["body"]
    return Answer(response["statusCode"], headers, raw, json.loads(raw) if raw else None)


def log_lines(text: str) -> list[dict[str, Any]]:
    """Every stdout line is one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def reset_config() -> None:
    """Forget the validated configuration (as a new container would); keep the S3 client."""
    lambda_handler.load_config.cache_clear()


def reset_cold_start() -> None:
    """Forget the configuration and the S3 client (a new container)."""
    lambda_handler.load_config.cache_clear()
    lambda_handler.s3_client.cache_clear()


def seed_objects(keys: list[str], body: bytes = b"x") -> None:
    """Write many objects into the active in-process moto S3 without a request each (1,100 puts through the
    client take ~5-10 s; straight into moto's backend they take ~0.1 s)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key in keys:
        backend.put_object(BUCKET, key, body)


def package_zip() -> bytes:
    """The deployment package as the CDK asset holds it: ``latest_apk/*.py`` at the zip root."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((FUNCTIONS / "latest_apk").glob("*.py")):
            archive.write(path, f"latest_apk/{path.name}")
    return buffer.getvalue()
