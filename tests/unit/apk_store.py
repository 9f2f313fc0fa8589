"""The APK store as the tests see it: an in-process S3 (moto) with the store's bucket, and direct writes into its
layout. Shared by the Lambda's tests (tests/unit/functions) and the publish tests (tests/unit/publish); it imports
neither the function nor the publish code, so each folder's tests depend only on the code they test."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws

BUCKET = "apk-builds-test"
REGION = "eu-west-1"


def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials and the region; no endpoint or profile of the machine's leaks in."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@functools.cache
def shared_client() -> Any:
    """One S3 client for the whole session: creating one costs ~0.1 s."""
    return boto3.client("s3", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


@contextmanager
def empty_bucket() -> Iterator[Any]:
    """The shared client, talking to a fresh in-process moto S3 that holds only the store's empty bucket."""
    with mock_aws():
        client = shared_client()
        create_bucket(client)
        yield client


def create_bucket(client: Any, bucket: str = BUCKET) -> None:
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})


def put_apk(
    client: Any,
    version: str,
    *,
    name: str = "app-release.apk",
    data: bytes | None = None,
    prefix: str = "apk/",
    with_sha: bool = True,
) -> str:
    """Put an APK straight into the layout (no pointer), as an out-of-band upload would. Returns the key."""
    data = data if data is not None else f"apk {version}".encode()
    key = f"{prefix}{version}/{name}"
    metadata = {"version": version}
    if with_sha:
        metadata["sha256"] = hashlib.sha256(data).hexdigest()
    client.put_object(Bucket=BUCKET, Key=key, Body=data, Metadata=metadata)
    return key


def put_pointer(client: Any, pointer: Any, *, prefix: str = "apk/") -> None:
    body = pointer if isinstance(pointer, bytes) else json.dumps(pointer).encode()
    client.put_object(Bucket=BUCKET, Key=f"{prefix}LATEST", Body=body)
