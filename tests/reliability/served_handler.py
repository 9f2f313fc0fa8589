"""Serve a copy of the service's function on 127.0.0.1 the way a deployed environment serves it locally.

A moto server holds the APK bucket (one build published with the pipeline's own publish code); the local API
runtime (:class:`cicd.local_api.LocalApiServer`, in a thread) routes the contract's three GET resources like API
Gateway to a warm worker running the handler from ``code_dir``. Tests change that copy to break the service on
purpose and check that ``dast`` notices.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from cicd import local_api
from cicd.publish import publish_apk

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
BUCKET = "latestapk-dev-apk-dast"
REGION = "us-east-1"
PUBLISHED = "1.2.3"


def handler_copy(dest: Path, edits: Mapping[str, Callable[[str], str]] | None = None) -> Path:
    """``functions/`` copied into ``dest``; each edit rewrites one module of ``latest_apk`` (and must change it)."""
    shutil.copytree(FUNCTIONS, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for module, edit in (edits or {}).items():
        path = dest / "latest_apk" / module
        before = path.read_text(encoding="utf-8")
        after = edit(before)
        assert after != before, f"the edit did not change {module}"
        path.write_text(after, encoding="utf-8")
    return dest


def _spec(code_dir: Path, endpoint: str) -> local_api.ApiSpec:
    function = local_api.FunctionSpec(
        name="latest-apk-dev",
        arn=f"arn:aws:lambda:{REGION}:123456789012:function:latest-apk-dev",
        handler="latest_apk.handler.handler",
        runtime="python3.11",
        timeout=10,
        memory=256,
        environment={
            "APK_BUCKET": BUCKET,
            "ENVIRONMENT": "dev",
            "BUILD_VERSION": "0.1.0",
            "BUILD_COMMIT": "0123456789ab",
        },
        code_sha256="dGVzdA==",
        code_dir=str(code_dir),
    )
    routes = tuple(
        local_api.Route(path=path, method="GET", resource_id=f"r{i}", kind="AWS_PROXY", function=function.name)
        for i, path in enumerate(("/health", "/apk/latest", "/apk/{version}"))
    )
    return local_api.ApiSpec(
        env="dev",
        rest_api_id="dasttest",
        stage="api",
        endpoint=endpoint,
        region=REGION,
        account_id="123456789012",
        routes=routes,
        functions={function.name: function},
    )


@contextmanager
def served(code_dir: Path, work: Path) -> Iterator[str]:
    """The base URL of the API answering from ``code_dir`` (a folder holding ``latest_apk``)."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    httpd: local_api.LocalApiServer | None = None
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3: Any = boto3.client(
            "s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test"
        )
        s3.create_bucket(Bucket=BUCKET)
        work.mkdir(parents=True, exist_ok=True)
        apk = work / "app-release.apk"
        apk.write_bytes(b"PK\x03\x04 a test build")
        publish_apk(s3, BUCKET, apk, PUBLISHED)
        (work / "logs").mkdir(exist_ok=True)
        httpd = local_api.LocalApiServer(("127.0.0.1", 0), _spec(code_dir, endpoint), work / "logs")
        httpd.server_bind()
        httpd.warm_all()
        httpd.server_activate()
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        yield f"http://127.0.0.1:{httpd.server_port}/"
    finally:
        if httpd is not None:
            httpd.shutdown()
            httpd.stop_workers()
            httpd.server_close()
        moto.stop()
