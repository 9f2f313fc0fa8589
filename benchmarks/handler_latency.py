"""Warm in-process latency of the latest-APK Lambda, and the size of its deployment package.

    uv run python benchmarks/handler_latency.py [--calls 1000]

Publishes one build into an in-process S3 (moto's ``mock_aws``), calls the handler once (cold start: config and
client), then ``--calls`` times ``GET /apk/latest`` (pointer GET + HEAD + presign) and prints p50/p99/max. moto's
request handling is part of every figure, so real S3 latency replaces most of it in AWS. Then zips the
``latest_apk`` package as the CDK asset holds it (its ``.py`` files, no ``__pycache__``) and prints the bytes.
Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import zipfile
from contextlib import redirect_stdout
from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "functions" / "latest_apk"
PACKAGE_LIMIT = 10_240
BUCKET = "apk-benchmark"
REGION: Final = "eu-west-1"


def package_size() -> tuple[int, int]:
    """(zipped bytes, number of files) of the deployment package."""
    buffer = io.BytesIO()
    files = sorted(PACKAGE.glob("*.py"))
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, f"latest_apk/{path.name}")
    return len(buffer.getvalue()), len(files)


def measure(calls: int) -> tuple[float, list[float]]:
    """Cold-call milliseconds, and ``calls`` warm-call milliseconds."""
    sys.path[:0] = [str(ROOT), str(ROOT / "functions")]
    import boto3
    from latest_apk.handler import handler
    from moto import mock_aws

    from cicd.publish import publish_apk

    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.update(dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "testing"))  # moto's dummies
    os.environ.update(
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        APK_BUCKET=BUCKET,
        ENVIRONMENT="dev",
        BUILD_VERSION="0.0.0",
    )
    event = {"httpMethod": "GET", "path": "/apk/latest", "resource": "/{proxy+}", "requestContext": {"stage": "dev"}}
    with mock_aws(), tempfile.TemporaryDirectory() as scratch:
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        apk = Path(scratch) / "app-release.apk"
        apk.write_bytes(os.urandom(1 << 20))
        publish_apk(client, BUCKET, apk, "1.0.0")

        timings: list[float] = []
        with redirect_stdout(io.StringIO()):  # the handler's one log line per call
            for _ in range(calls + 1):
                started = time.perf_counter()
                response = handler(event, None)
                timings.append((time.perf_counter() - started) * 1000)
                if response["statusCode"] != 200:
                    raise SystemExit(f"GET /apk/latest answered {response['statusCode']}: {response['body']}")
    return timings[0], timings[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="warm calls to time (default 1000)")
    args = parser.parse_args()
    if args.calls < 2:
        parser.error("--calls must be at least 2")
    cold, warm = measure(args.calls)
    cuts = statistics.quantiles(warm, n=100, method="inclusive")
    size, files = package_size()
    print(f"handler GET /apk/latest against moto (in-process), {len(warm)} warm calls:")
    print(f"  first call (config + S3 client): {cold:8.2f} ms")
    print(f"  p50                            : {cuts[49]:8.2f} ms")
    print(f"  p99                            : {cuts[98]:8.2f} ms")
    print(f"  max                            : {max(warm):8.2f} ms")
    print(f"deployment package (latest_apk/*.py, {files} files, deflate): {size} bytes (limit {PACKAGE_LIMIT})")


if __name__ == "__main__":
    main()
