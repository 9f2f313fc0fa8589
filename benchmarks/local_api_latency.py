"""Latency of the local API runtime: p50/p99 of warm requests to an API deployed to the local AWS.

Starts a throw-away moto server, deploys a small CloudFormation stack (S3 bucket, role, Lambda function whose code
is a zip in S3, REST API ``/apk/{version}`` with an AWS_PROXY integration), serves it with
:func:`cicd.local_api.serve_environment` and times requests over one keep-alive connection, the way a test
client would. Target: warm p50 < 50 ms. Run: ``uv run python benchmarks/local_api_latency.py [--requests 200]``.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cicd import local_api, local_aws

HANDLER = """
import json, os
import boto3

BUCKET = os.environ["BUCKET"]

def handler(event, context):
    version = event["pathParameters"]["version"]
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"version": version, "bucket": BUCKET})}
"""


def _template() -> dict[str, Any]:
    uri = {
        "Fn::Join": [
            "",
            [
                "arn:aws:apigateway:",
                {"Ref": "AWS::Region"},
                ":lambda:path/2015-03-31/functions/",
                {"Fn::GetAtt": ["Fn", "Arn"]},
                "/invocations",
            ],
        ]
    }
    return {
        "Resources": {
            "Data": {"Type": "AWS::S3::Bucket"},
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "lambda.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    }
                },
            },
            "Fn": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Runtime": "python3.11",
                    "Handler": "bench.handler",
                    "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                    "Code": {"S3Bucket": "bench-code", "S3Key": "bench.zip"},
                    "Environment": {"Variables": {"BUCKET": {"Ref": "Data"}}},
                },
            },
            "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "bench"}},
            "Apk": {
                "Type": "AWS::ApiGateway::Resource",
                "Properties": {
                    "RestApiId": {"Ref": "Api"},
                    "ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
                    "PathPart": "apk",
                },
            },
            "Version": {
                "Type": "AWS::ApiGateway::Resource",
                "Properties": {"RestApiId": {"Ref": "Api"}, "ParentId": {"Ref": "Apk"}, "PathPart": "{version}"},
            },
            "Get": {
                "Type": "AWS::ApiGateway::Method",
                "Properties": {
                    "RestApiId": {"Ref": "Api"},
                    "ResourceId": {"Ref": "Version"},
                    "HttpMethod": "GET",
                    "AuthorizationType": "NONE",
                    "Integration": {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": uri},
                },
            },
            "Deployment": {
                "Type": "AWS::ApiGateway::Deployment",
                "DependsOn": ["Get"],
                "Properties": {"RestApiId": {"Ref": "Api"}, "StageName": "prod"},
            },
        },
        "Outputs": {"RestApiId": {"Value": {"Ref": "Api"}}},
    }


def _percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="local-api-bench-"))
    try:
        started = time.perf_counter()
        server = local_aws.up(root, port=0)
        up_s = time.perf_counter() - started
        session = server.session()
        s3 = session.client("s3", endpoint_url=server.endpoint)
        s3.create_bucket(Bucket="bench-code")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            archive.writestr("bench.py", HANDLER)
        s3.put_object(Bucket="bench-code", Key="bench.zip", Body=buf.getvalue())
        cfn = session.client("cloudformation", endpoint_url=server.endpoint)
        cfn.create_stack(StackName="Bench", TemplateBody=json.dumps(_template()), Capabilities=["CAPABILITY_IAM"])

        started = time.perf_counter()
        url = local_api.serve_environment(root, "dev", "Bench")
        serve_s = time.perf_counter() - started
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/apk/0.0.0")  # the first request after start (workers are warmed at start)
        first = conn.getresponse()
        first.read()
        assert first.status == 200, first.status
        samples: list[float] = []
        for i in range(args.requests):
            t0 = time.perf_counter()
            conn.request("GET", f"/apk/1.0.{i}")
            resp = conn.getresponse()
            body = resp.read()
            samples.append((time.perf_counter() - t0) * 1000)
            assert resp.status == 200 and json.loads(body)["version"] == f"1.0.{i}"
        conn.close()
        p50, p99 = _percentile(samples, 50), _percentile(samples, 99)
        print(f"local AWS up (incl. CloudFormation warm-up): {up_s:.2f} s")
        print(f"serve_environment (describe + fetch code + start + warm): {serve_s:.2f} s")
        print(
            f"{args.requests} warm requests: p50 {p50:.2f} ms, p99 {p99:.2f} ms, mean {statistics.mean(samples):.2f} ms"
        )
        print(f"target p50 < 50 ms: {'met' if p50 < 50 else 'NOT met'}")
        return 0 if p50 < 50 else 1
    finally:
        local_aws.down(root)


if __name__ == "__main__":
    sys.exit(main())
