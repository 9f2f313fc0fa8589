"""The handler and the contract (openapi.yaml) agree: every answer the handler gives, for every documented status,
conforms to the contract's status, headers and body schema; every error code it has is in the contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from latest_apk import handler as lambda_handler
from latest_apk import models

from cicd import contract
from tests.unit.apk_store import BUCKET, put_apk
from tests.unit.functions.apk_helpers import Answer, api_event, invoke, reset_config

pytestmark = pytest.mark.component  # the handler against the project's own contract

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return contract.load(ROOT)


def conforms(spec: dict[str, Any], path: str, answer: Answer) -> list[str]:
    return contract.answer_problems(spec, "GET", path, answer.status, answer.headers, answer.body)


def subclasses(cls: type[models.ServiceError]) -> Iterator[type[models.ServiceError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


def test_every_error_code_of_the_handler_is_in_the_contract_and_no_other(spec: dict[str, Any]) -> None:
    codes = {models.ServiceError.code, *(c.code for c in subclasses(models.ServiceError))}
    assert set(spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"]) == codes


def test_the_contract_s_maximum_is_the_handler_s_default(spec: dict[str, Any]) -> None:
    config = models.Config.from_env({"APK_BUCKET": BUCKET, "ENVIRONMENT": "dev", "BUILD_VERSION": "1.0.0"})
    assert contract.ttl_maximum(spec) == config.ttl_max
    assert spec["components"]["schemas"]["Apk"]["properties"]["expires_in"]["maximum"] == config.ttl_max


@pytest.mark.usefixtures("s3")
def test_health_conforms(spec: dict[str, Any]) -> None:
    answer = invoke(api_event("GET", "/health"))
    assert answer.status == 200 and conforms(spec, "/health", answer) == []


def test_every_answer_of_the_apk_operations_conforms(spec: dict[str, Any], s3: Any) -> None:
    seen: set[tuple[str, int]] = set()

    def check(path: str, template: str, query: dict[str, str] | None = None) -> None:
        answer = invoke(api_event("GET", path, query))
        assert conforms(spec, template, answer) == [], (path, query, answer.raw_body)
        seen.add((template, answer.status))

    check("/apk/latest", "/apk/latest")  # 404 nothing published
    put_apk(s3, "1.2.3")
    put_apk(s3, "1.2.4", with_sha=False)  # sha256 null
    check("/apk/latest", "/apk/latest")
    check("/apk/latest", "/apk/latest", {"expires": "3600"})
    check("/apk/latest", "/apk/latest", {"expires": "0"})
    check("/apk/1.2.3", "/apk/{version}", {"expires": "60"})
    check("/apk/9.9.9", "/apk/{version}")
    check("/apk/1.02.3", "/apk/{version}")
    s3.delete_object(Bucket=BUCKET, Key="apk/1.2.3/app-release.apk")
    s3.delete_object(Bucket=BUCKET, Key="apk/1.2.4/app-release.apk")
    s3.delete_bucket(Bucket=BUCKET)
    check("/apk/latest", "/apk/latest")  # 502 storage unavailable
    assert seen == {
        ("/apk/latest", 404),
        ("/apk/latest", 200),
        ("/apk/latest", 400),
        ("/apk/{version}", 200),
        ("/apk/{version}", 404),
        ("/apk/{version}", 400),
        ("/apk/latest", 502),
    }


@pytest.mark.usefixtures("s3")
def test_a_misconfigured_function_answers_the_contract_s_500(
    spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APK_BUCKET")
    reset_config()
    answer = invoke(api_event("GET", "/health"))
    assert answer.status == 500 and conforms(spec, "/health", answer) == []


@pytest.mark.usefixtures("s3")
def test_a_drifted_answer_breaks_the_contract(spec: dict[str, Any]) -> None:
    """The checker is not a rubber stamp: an extra field, a missing header, a wrong type each fail it."""
    good = invoke(api_event("GET", "/health"))
    extra = Answer(good.status, good.headers, good.raw_body, {**good.body, "region": "us-east-1"})
    assert any("region" in p for p in conforms(spec, "/health", extra))
    headers = {k: v for k, v in good.headers.items() if k != "X-Content-Type-Options"}
    assert conforms(spec, "/health", Answer(200, headers, good.raw_body, good.body)) == [
        "header X-Content-Type-Options is missing"
    ]
    typed = Answer(200, good.headers, good.raw_body, {**good.body, "environment": "staging"})
    assert any(p.startswith("environment:") for p in conforms(spec, "/health", typed))
    assert conforms(spec, "/health", Answer(418, good.headers, "", None))[0].startswith("GET /health: status 418")


def test_the_handler_module_is_the_one_the_contract_describes() -> None:
    """The contract documents the status of every error the handler maps."""
    spec = contract.load(ROOT)
    documented = {int(s) for op in contract.operations(spec) for s in op.responses}
    assert set(lambda_handler.STATUS_BY_ERROR.values()) - {405} <= documented
