"""Target-agnostic integration tests: everything comes from one environment's recorded deploy outputs.

``inv integration-test --env dev`` (and ``smoke-test``) run this suite with ``CICD_IT_OUTPUTS`` pointing at the
outputs the deploy recorded (API URL, bucket, build version, and for the local target the AWS endpoint). Run
directly without them, every test here is skipped with that reason.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class Deployed:
    env: str
    target: str
    api_url: str
    version: str
    commit: str | None
    digest: str
    apk_bucket: str
    region: str
    aws_endpoint: str | None

    def url(self, path: str) -> str:
        return self.api_url.rstrip("/") + path


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def call(url: str, method: str = "GET") -> Answer:
    request = urllib.request.Request(url, method=method)  # noqa: S310 - URLs from our own deploy outputs
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as resp:
            raw, status, headers = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, headers = err.read(), err.code, dict(err.headers)
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {"raw": raw.decode(errors="replace")}
    return Answer(status, body if isinstance(body, dict) else {"value": body}, headers)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CICD_IT_OUTPUTS"):
        return
    skip = pytest.mark.skip(reason="no deployed environment: run through `inv integration-test --env ENV`")
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def deployed() -> Deployed:
    data = json.loads(Path(os.environ["CICD_IT_OUTPUTS"]).read_text(encoding="utf-8"))
    return Deployed(
        env=data["env"],
        target=data["target"],
        api_url=data["api_url"],
        version=data["version"],
        commit=data.get("commit"),
        digest=data["digest"],
        apk_bucket=data["outputs"]["ApkBucketName"],
        region=data.get("region") or "us-east-1",
        aws_endpoint=data.get("aws_endpoint"),
    )


@pytest.fixture(scope="session")
def s3(deployed: Deployed) -> Any:
    import boto3

    if deployed.aws_endpoint:
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=deployed.region
        )
        return session.client("s3", endpoint_url=deployed.aws_endpoint)
    return boto3.client("s3", region_name=deployed.region)
