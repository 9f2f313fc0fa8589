"""Fixtures: the function's environment (its configuration re-read per test, like a cold start), and an
in-process S3 (moto) with an empty bucket per test.

Creating a boto3 client costs ~0.1 s, so the tests share one client and the function keeps its cached client
across tests (same region, same in-process endpoint); tests that change either call ``reset_cold_start()``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from latest_apk import handler as lambda_handler

from tests.unit import apk_store
from tests.unit.functions.apk_helpers import LAMBDA_ENV, OPTIONAL_VARS


@pytest.fixture(autouse=True)
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Dummy AWS credentials, the function's environment, and a fresh container (cold start) per test."""
    apk_store.fake_credentials(monkeypatch)
    for name in OPTIONAL_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in LAMBDA_ENV.items():
        monkeypatch.setenv(name, value)
    lambda_handler.load_config.cache_clear()
    yield dict(LAMBDA_ENV)
    lambda_handler.load_config.cache_clear()


@pytest.fixture
def s3() -> Iterator[Any]:
    """An empty bucket in a fresh in-process moto S3."""
    with apk_store.empty_bucket() as client:
        yield client
