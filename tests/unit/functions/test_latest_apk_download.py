"""The presigned URL really downloads the published APK.

moto's in-process mock intercepts botocore only, so a plain HTTP fetch needs a real endpoint: a moto server on
127.0.0.1 (a free port), which the function reaches the way it would reach a local target, via
``AWS_ENDPOINT_URL``. (moto does not check presigned signatures, so only the download itself is tested
here; the signature's parameters are asserted in test_latest_apk_handler.py.)
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from cicd.publish import publish_apk
from tests.unit.apk_store import BUCKET, REGION, create_bucket
from tests.unit.functions.apk_helpers import api_event, invoke, reset_cold_start


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    reset_cold_start()
    try:
        yield endpoint
    finally:
        reset_cold_start()
        server.stop()


def fetch(url: str) -> bytes:
    assert url.startswith("http://127.0.0.1:"), url  # only ever the local server
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http on 127.0.0.1, checked above
        return bytes(response.read())


def test_the_presigned_url_downloads_the_published_apk(moto_endpoint: str, tmp_path: Path) -> None:
    client: Any = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint)
    create_bucket(client)
    data = os.urandom(200_000)
    apk = tmp_path / "app-release.apk"
    apk.write_bytes(data)
    published = publish_apk(client, BUCKET, apk, "2.3.4")

    answer = invoke(api_event("GET", "/apk/latest", {"expires": "60"}))
    assert answer.status == 200, answer.raw_body
    assert answer.body["url"].startswith(f"{moto_endpoint}/{BUCKET}/apk/2.3.4/app-release.apk?")
    downloaded = fetch(answer.body["url"])
    assert hashlib.sha256(downloaded).hexdigest() == answer.body["sha256"] == published.sha256
    assert len(downloaded) == answer.body["size"] == len(data)
