"""Fixtures: dummy AWS credentials, and an in-process S3 (moto) with the store's empty bucket per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit import apk_store


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    apk_store.fake_credentials(monkeypatch)


@pytest.fixture
def s3() -> Iterator[Any]:
    """An empty bucket in a fresh in-process moto S3."""
    with apk_store.empty_bucket() as client:
        yield client
