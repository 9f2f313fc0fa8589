"""Fixtures: the function's environment (its configuration re-read per test, like a cold start), and an
in-process S3 (moto) with an empty bucket per test.

Creating a boto3 client costs ~0.1 s, so the tests share one client and the function keeps its cached client
across tests (same region, same in-process endpoint); tests that change either call ``reset_cold_start()``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from latest_apk import handler as lambda_handler
from moto import mock_aws

from tests.unit.functions.apk_helpers import LAMBDA_ENV, OPTIONAL_VARS, REGION, create_bucket


@pytest.fixture(autouse=True)
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Dummy AWS credentials, the function's environment, and a fresh container (cold start) per test."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", *OPTIONAL_VARS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name, value in LAMBDA_ENV.items():
        monkeypatch.setenv(name, value)
    lambda_handler.load_config.cache_clear()
    yield dict(LAMBDA_ENV)
    lambda_handler.load_config.cache_clear()


@pytest.fixture(scope="session")
def shared_client() -> Any:
    return boto3.client("s3", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def s3(shared_client: Any) -> Iterator[Any]:
    """An empty bucket in a fresh in-process moto S3."""
    with mock_aws():
        create_bucket(shared_client)
        yield shared_client
