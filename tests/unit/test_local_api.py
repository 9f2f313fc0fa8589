"""The local API runtime: serves a REST API deployed to moto by running the deployed Lambda code."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import io
import json
import os
import shutil
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cicd import bytecode, local_api, local_aws
from cicd.errors import CicdError, StepFailed, UsageError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation.type_defs import ParameterTypeDef

HANDLER_V1 = textwrap.dedent(
    """
    import base64, importlib, json, os, sys, time
    import boto3

    VERSION = "v1"
    print("cold start of", os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))

    ENV_KEYS = ["GREETING", "BUCKET", "AWS_ENDPOINT_URL", "AWS_LAMBDA_FUNCTION_NAME", "AWS_ACCESS_KEY_ID",
                "AWS_REGION", "LAMBDA_TASK_ROOT", "CICD_TEST_SHELL_ONLY"]

    def handler(event, context):
        print("handling", event["path"])  # must not break the worker protocol
        q = event.get("queryStringParameters") or {}
        if "crash" in q:
            os._exit(3)
        if "import" in q:
            importlib.import_module(q["import"])
        if "raise" in q:
            raise RuntimeError("boom")
        if "sleep" in q:
            time.sleep(float(q["sleep"]))
        if "malformed" in q:
            return "not a proxy response"
        if "binary" in q:
            return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                    "body": base64.b64encode(b"\\x00\\x01\\xff").decode(), "isBase64Encoded": True}
        body = {"version": VERSION, "pid": os.getpid(), "event": event,
                "env": {k: os.environ.get(k) for k in ENV_KEYS},
                "remaining_ms": context.get_remaining_time_in_millis(),
                "request_id": context.aws_request_id, "function_name": context.function_name,
                "cwd": os.getcwd()}
        if "buckets" in q:
            body["buckets"] = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
        return {"statusCode": int(q.get("status", 200)),
                "headers": {"Content-Type": "application/json", "X-Echo": "1"},
                "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
                "body": json.dumps(body)}
    """
)

INLINE_HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'inline ' + event['path']}\n"


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buf.getvalue()


def _method(resource: str, method: str, function: str) -> dict[str, Any]:
    uri = {
        "Fn::Join": [
            "",
            [
                "arn:aws:apigateway:",
                {"Ref": "AWS::Region"},
                ":lambda:path/2015-03-31/functions/",
                {"Fn::GetAtt": [function, "Arn"]},
                "/invocations",
            ],
        ]
    }
    return {
        "Type": "AWS::ApiGateway::Method",
        "Properties": {
            "RestApiId": {"Ref": "Api"},
            "ResourceId": {"Ref": resource},
            "HttpMethod": method,
            "AuthorizationType": "NONE",
            "Integration": {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": uri},
        },
    }


def _resource(parent: str | None, part: str) -> dict[str, Any]:
    parent_id = {"Fn::GetAtt": ["Api", "RootResourceId"]} if parent is None else {"Ref": parent}
    return {
        "Type": "AWS::ApiGateway::Resource",
        "Properties": {"RestApiId": {"Ref": "Api"}, "ParentId": parent_id, "PathPart": part},
    }


def _template() -> dict[str, Any]:
    """A small hand-written stack: bucket, role, functions (S3 code, inline, broken), REST API, deployment."""
    role_arn = {"Fn::GetAtt": ["Role", "Arn"]}
    return {
        "Parameters": {"CodeBucket": {"Type": "String"}, "CodeKey": {"Type": "String"}, "Greeting": {"Type": "String"}},
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
            "Echo": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Runtime": "python3.11",
                    "Handler": "echo.handler.handler",
                    "Role": role_arn,
                    "Timeout": 3,
                    "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
                    "Environment": {"Variables": {"BUCKET": {"Ref": "Data"}, "GREETING": {"Ref": "Greeting"}}},
                },
            },
            "Inline": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Runtime": "python3.11",
                    "Handler": "index.handler",
                    "Role": role_arn,
                    "Code": {"ZipFile": INLINE_HANDLER},
                },
            },
            "Broken": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Runtime": "python3.11",
                    "Handler": "nowhere.handler",
                    "Role": role_arn,
                    "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
                },
            },
            "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "echo"}},
            "Health": _resource(None, "health"),
            "HealthGet": _method("Health", "GET", "Echo"),
            "Apk": _resource(None, "apk"),
            "Version": _resource("Apk", "{version}"),
            "VersionGet": _method("Version", "GET", "Echo"),
            "Latest": _resource("Apk", "latest"),
            "LatestGet": _method("Latest", "GET", "Echo"),
            "Files": _resource(None, "files"),
            "FilesProxy": _resource("Files", "{proxy+}"),
            "FilesAny": _method("FilesProxy", "ANY", "Echo"),
            "InlineRes": _resource(None, "inline"),
            "InlineGet": _method("InlineRes", "GET", "Inline"),
            "BrokenRes": _resource(None, "broken"),
            "BrokenGet": _method("BrokenRes", "GET", "Broken"),
            "Deployment": {
                "Type": "AWS::ApiGateway::Deployment",
                "DependsOn": ["HealthGet", "VersionGet", "LatestGet", "FilesAny", "InlineGet", "BrokenGet"],
                "Properties": {"RestApiId": {"Ref": "Api"}, "StageName": "prod"},
            },
        },
        "Outputs": {
            "RestApiId": {"Value": {"Ref": "Api"}},
            "FunctionName": {"Value": {"Ref": "Echo"}},
            "DataBucket": {"Value": {"Ref": "Data"}},
        },
    }


def _deploy(server: local_aws.LocalAws, stack: str, key: str, greeting: str, *, update: bool = False) -> dict[str, str]:
    cfn = server.session().client("cloudformation", endpoint_url=server.endpoint)
    params: list[ParameterTypeDef] = [
        {"ParameterKey": "CodeBucket", "ParameterValue": "code-assets"},
        {"ParameterKey": "CodeKey", "ParameterValue": key},
        {"ParameterKey": "Greeting", "ParameterValue": greeting},
    ]
    call = cfn.update_stack if update else cfn.create_stack
    call(StackName=stack, TemplateBody=json.dumps(_template()), Parameters=params, Capabilities=["CAPABILITY_IAM"])
    outputs = cfn.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}


@dataclass
class Served:
    root: Path
    server: local_aws.LocalAws
    url: str
    outputs: dict[str, str]

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.msg, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, _, body = self.request(method, path, **kwargs)
        return status, json.loads(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("local-api")
    saved = os.environ.pop(local_aws.PORT_ENV, None)
    os.environ["CICD_TEST_SHELL_ONLY"] = "leaked"  # a variable of the caller's shell, not of the function
    try:
        server = local_aws.up(root, port=0)
        s3 = server.session().client("s3", endpoint_url=server.endpoint)
        s3.create_bucket(Bucket="code-assets")
        s3.put_object(
            Bucket="code-assets", Key="echo-v1.zip", Body=_zip({"echo/__init__.py": "", "echo/handler.py": HANDLER_V1})
        )
        outputs = _deploy(server, "Echo", "echo-v1.zip", "hello")
        _add_mock_options(server, outputs["RestApiId"])
        url = local_api.serve_environment(root, "dev", "Echo")
        yield Served(root, server, url, outputs)
    finally:
        os.environ.pop("CICD_TEST_SHELL_ONLY", None)
        local_aws.down(root)
        if saved is not None:
            os.environ[local_aws.PORT_ENV] = saved


def _add_mock_options(server: local_aws.LocalAws, api_id: str) -> None:
    """A CORS preflight the way API Gateway does it: a MOCK integration with a static integration response."""
    apigw = server.session().client("apigateway", endpoint_url=server.endpoint)
    resource = next(r["id"] for r in apigw.get_resources(restApiId=api_id)["items"] if r["path"] == "/health")
    apigw.put_method(restApiId=api_id, resourceId=resource, httpMethod="OPTIONS", authorizationType="NONE")
    apigw.put_integration(
        restApiId=api_id,
        resourceId=resource,
        httpMethod="OPTIONS",
        type="MOCK",
        requestTemplates={"application/json": '{"statusCode": 200}'},
    )
    apigw.put_integration_response(
        restApiId=api_id,
        resourceId=resource,
        httpMethod="OPTIONS",
        statusCode="204",
        responseParameters={
            "method.response.header.Access-Control-Allow-Origin": "'*'",
            "method.response.header.Access-Control-Allow-Methods": "'GET,OPTIONS'",
        },
    )


# --- routing and the proxy event ----------------------------------------------------------------------------------


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_path_parameters_query_strings_and_headers_reach_the_handler(served: Served) -> None:
    status, headers, raw = served.request("GET", "/apk/1.2.3?x=1&x=2&y=z%20z&empty=", headers={"X-Custom": "c1"})
    assert status == 200
    body = json.loads(raw)
    event = body["event"]
    assert event["resource"] == "/apk/{version}"
    assert event["path"] == "/apk/1.2.3"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"version": "1.2.3"}
    assert event["queryStringParameters"] == {"x": "2", "y": "z z", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": ["z z"], "empty": [""]}
    assert event["headers"]["X-Custom"] == "c1"
    assert event["multiValueHeaders"]["X-Custom"] == ["c1"]
    assert event["body"] is None and event["isBase64Encoded"] is False
    assert event["stageVariables"] is None
    ctx = event["requestContext"]
    assert ctx["stage"] == "prod"
    assert ctx["resourcePath"] == "/apk/{version}"
    assert ctx["path"] == "/prod/apk/1.2.3"
    assert ctx["apiId"] == served.outputs["RestApiId"]
    assert ctx["accountId"] == "123456789012"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    # The response: status, single and multi-value headers, the request id API Gateway returns.
    assert headers["X-Echo"] == "1"
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert headers["x-amzn-RequestId"] == ctx["requestId"] == body["request_id"]
    assert body["function_name"] == served.outputs["FunctionName"]
    assert 0 < body["remaining_ms"] <= 3000


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_literal_resources_win_over_parameters(served: Served) -> None:
    status, body = served.json("GET", "/apk/latest")
    assert status == 200
    assert body["event"]["resource"] == "/apk/latest"
    assert body["event"]["pathParameters"] is None


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_greedy_proxy_and_any_method_with_a_body(served: Served) -> None:
    status, body = served.json("POST", "/files/a/b/c.txt", body=b'{"k": "v"}')
    assert status == 200
    event = body["event"]
    assert event["resource"] == "/files/{proxy+}"
    assert event["pathParameters"] == {"proxy": "a/b/c.txt"}
    assert event["httpMethod"] == "POST"
    assert event["body"] == '{"k": "v"}' and event["isBase64Encoded"] is False

    status, body = served.json("DELETE", "/files/one")
    assert status == 200 and body["event"]["httpMethod"] == "DELETE"

    status, body = served.json("PUT", "/files/bin", body=b"\xff\x00\xfe")
    assert body["event"]["isBase64Encoded"] is True
    assert base64.b64decode(body["event"]["body"]) == b"\xff\x00\xfe"


@pytest.mark.component  # the deployed API served by worker processes from a moto server
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),  # no such resource
        ("GET", "/"),  # the root has no method
        ("GET", "/apk"),  # a resource without methods
        ("GET", "/files"),  # {proxy+} needs at least one segment
        ("POST", "/health"),  # a resource without that method
        ("GET", "/apk/1.2.3/extra"),
    ],
)
def test_missing_routes_answer_like_api_gateway(served: Served, method: str, path: str) -> None:
    status, headers, raw = served.request(method, path)
    assert status == 403
    assert json.loads(raw) == {"message": "Missing Authentication Token"}
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_mock_integration_answers_its_integration_response(served: Served) -> None:
    status, headers, raw = served.request("OPTIONS", "/health")
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "GET,OPTIONS"
    assert raw == b""


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_binary_responses_are_decoded(served: Served) -> None:
    status, headers, raw = served.request("GET", "/health?binary=1")
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert raw == b"\x00\x01\xff"


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_inline_code_from_the_template_is_served(served: Served) -> None:
    status, _, raw = served.request("GET", "/inline")
    assert (status, raw) == (200, b"inline /inline")


# --- the worker: deployed configuration, errors, crashes ----------------------------------------------------------


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_worker_sees_the_deployed_environment_and_the_local_endpoint(served: Served) -> None:
    status, body = served.json("GET", "/health?buckets=1")
    assert status == 200
    env = body["env"]
    assert env["GREETING"] == "hello"
    assert env["BUCKET"] == served.outputs["DataBucket"]
    assert env["AWS_ENDPOINT_URL"] == served.server.endpoint
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == served.outputs["FunctionName"]
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["CICD_TEST_SHELL_ONLY"] is None  # the caller's shell does not leak into the function
    # It runs the deployed artifact, unpacked by code hash, not a source tree.
    assert body["cwd"] == env["LAMBDA_TASK_ROOT"]
    assert Path(body["cwd"]).parent == served.root / ".cicd" / "local" / "functions" / "dev"
    # boto3 inside the handler talks to moto.
    assert served.outputs["DataBucket"] in body["buckets"] and "code-assets" in body["buckets"]


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_worker_stays_warm_between_requests(served: Served) -> None:
    pids = {served.json("GET", "/health")[1]["pid"] for _ in range(3)}
    assert len(pids) == 1


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_a_handler_exception_is_502_and_the_worker_survives(served: Served) -> None:
    pid = served.json("GET", "/health")[1]["pid"]
    status, headers, raw = served.request("GET", "/health?raise=1")
    assert status == 502
    assert json.loads(raw) == {"message": "Internal server error"}
    assert served.json("GET", "/health")[1]["pid"] == pid
    log = served.root / ".cicd" / "local" / "logs" / f"dev-{served.outputs['FunctionName']}.log"
    text = log.read_text()
    assert "RuntimeError: boom" in text and "handling /health" in text and "cold start of" in text


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_a_crashed_worker_is_502_then_replaced(served: Served) -> None:
    pid = served.json("GET", "/health")[1]["pid"]
    status, _, raw = served.request("GET", "/health?crash=1")
    assert status == 502
    assert json.loads(raw) == {"message": "Internal server error"}
    status, body = served.json("GET", "/health")
    assert status == 200 and body["pid"] != pid


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_a_malformed_proxy_response_is_502(served: Served) -> None:
    status, _, raw = served.request("GET", "/health?malformed=1")
    assert status == 502 and json.loads(raw) == {"message": "Internal server error"}


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_a_function_timeout_is_502_and_the_next_request_works(served: Served) -> None:
    pid = served.json("GET", "/health")[1]["pid"]
    status, _, raw = served.request("GET", "/health?sleep=10")  # the function's Timeout is 3 s
    assert status == 502 and json.loads(raw) == {"message": "Internal server error"}
    status, body = served.json("GET", "/health")
    assert status == 200 and body["pid"] != pid


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_only_the_lambda_runtime_packages_are_importable(served: Served) -> None:
    assert served.request("GET", "/health?import=boto3")[0] == 200  # provided by the Lambda runtime
    assert served.request("GET", "/health?import=dateutil")[0] == 200
    for module in ("yaml", "rich", "cicd"):  # in this project's environment, not in Lambda's
        status, _, raw = served.request("GET", f"/health?import={module}")
        assert status == 502, module
        assert json.loads(raw) == {"message": "Internal server error"}


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_a_handler_that_cannot_be_imported_is_502(served: Served) -> None:
    status, _, raw = served.request("GET", "/broken")
    assert status == 502 and json.loads(raw) == {"message": "Internal server error"}


# --- lifecycle: state, reuse, redeploy, other ways in -------------------------------------------------------------


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_state_file_and_listing(served: Served) -> None:
    state = json.loads((served.root / ".cicd" / "local" / "api-dev.json").read_text())
    assert state["url"] == served.url == f"http://127.0.0.1:{state['port']}/"
    assert state["rest_api_id"] == served.outputs["RestApiId"]
    assert state["stack"] == "Echo"
    lam = served.server.session().client("lambda", endpoint_url=served.server.endpoint)
    deployed = lam.get_function(FunctionName=served.outputs["FunctionName"])["Configuration"]["CodeSha256"]
    assert state["code_sha256"][served.outputs["FunctionName"]] == deployed
    assert local_aws.pid_alive(state["pid"])
    [listed] = [s for s in local_api.list_apis(served.root) if s.env == "dev"]
    assert listed.alive and listed.pid == state["pid"] and listed.url == served.url
    status = local_aws.status(served.root)
    assert status.running and "dev" in [a.env for a in status.apis]


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_serving_an_unchanged_deployment_keeps_the_warm_process(served: Served) -> None:
    before = json.loads((served.root / ".cicd" / "local" / "api-dev.json").read_text())["pid"]
    assert local_api.serve_environment(served.root, "dev", "Echo") == served.url
    after = json.loads((served.root / ".cicd" / "local" / "api-dev.json").read_text())["pid"]
    assert after == before


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_a_redeploy_with_new_code_replaces_the_worker(served: Served) -> None:
    root, server = served.root, served.server
    s3 = server.session().client("s3", endpoint_url=server.endpoint)
    s3.put_object(
        Bucket="code-assets", Key="echo-r1.zip", Body=_zip({"echo/__init__.py": "", "echo/handler.py": HANDLER_V1})
    )
    _deploy(server, "Redeploy", "echo-r1.zip", "first")
    url = local_api.serve_environment(root, "preprod", "Redeploy")
    conn_port = int(url.rstrip("/").rsplit(":", 1)[1])
    first = Served(root, server, url, {}).json("GET", "/health")[1]
    assert (first["version"], first["env"]["GREETING"]) == ("v1", "first")
    old_state = json.loads(local_api.api_state_path(root, "preprod").read_text())

    v2 = HANDLER_V1.replace('VERSION = "v1"', 'VERSION = "v2"')
    s3.put_object(Bucket="code-assets", Key="echo-r2.zip", Body=_zip({"echo/__init__.py": "", "echo/handler.py": v2}))
    _deploy(server, "Redeploy", "echo-r2.zip", "second", update=True)
    again = local_api.serve_environment(root, "preprod", "Redeploy")
    assert again == url  # same port, same URL
    second = Served(root, server, again, {}).json("GET", "/health")[1]
    assert (second["version"], second["env"]["GREETING"]) == ("v2", "second")
    assert second["pid"] != first["pid"]
    new_state = json.loads(local_api.api_state_path(root, "preprod").read_text())
    assert new_state["pid"] != old_state["pid"] and new_state["port"] == conn_port
    assert new_state["code_sha256"] != old_state["code_sha256"]
    assert not local_aws.pid_alive(old_state["pid"])
    unpacked = {p.name for p in (root / ".cicd" / "local" / "functions" / "preprod").iterdir()}
    assert unpacked == {local_api.code_hex(sha) for sha in new_state["code_sha256"].values()}  # old code pruned

    assert local_api.stop(root, "preprod") is True
    assert not local_aws.pid_alive(new_state["pid"])
    assert not local_api.api_state_path(root, "preprod").exists()


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_serve_by_rest_api_id(served: Served) -> None:
    url = local_api.serve_environment(served.root, "prod", rest_api_id=served.outputs["RestApiId"])
    try:
        status, body = Served(served.root, served.server, url, {}).json("GET", "/apk/9.9.9")
        assert status == 200 and body["event"]["pathParameters"] == {"version": "9.9.9"}
    finally:
        local_api.stop(served.root, "prod")


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_a_stack_that_is_not_deployed_is_a_step_failure(served: Served) -> None:
    with pytest.raises(StepFailed) as err:
        local_api.serve_environment(served.root, "dev", "NoSuchStack")
    assert err.value.return_code == 1
    assert "NoSuchStack is not deployed" in str(err.value) and "inv deploy --env dev" in str(err.value)


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_bad_environment_name_is_a_usage_error(served: Served) -> None:
    with pytest.raises(UsageError):
        local_api.serve_environment(served.root, "../x", "Echo")


def test_serving_without_a_server_is_exit_3(tmp_path: Path) -> None:
    with pytest.raises(CicdError) as err:
        local_api.serve_environment(tmp_path, "dev", "Echo")
    assert err.value.return_code == 3


@pytest.mark.component  # the deployed API served by worker processes from a moto server
def test_zz_local_down_stops_the_apis_too(served: Served) -> None:
    """Runs last in this module (file order): stops the shared server."""
    pid = json.loads(local_api.api_state_path(served.root, "dev").read_text())["pid"]
    assert local_aws.down(served.root) is True
    assert not local_aws.pid_alive(pid)
    assert not local_api.api_state_path(served.root, "dev").exists()
    assert local_api.list_apis(served.root) == []


# --- pure parts: routing table, events, proxy responses -----------------------------------------------------------


def _route(path: str, method: str = "GET") -> local_api.Route:
    return local_api.Route(path=path, method=method, resource_id=path, kind="AWS_PROXY", function="f")


def test_router_prefers_literals_then_parameters_then_greedy() -> None:
    router = local_api.Router(
        [_route("/a/b"), _route("/a/{x}"), _route("/a/{proxy+}", "ANY"), _route("/{proxy+}", "ANY"), _route("/")]
    )

    def resolve(method: str, path: str) -> tuple[str, dict[str, str]] | None:
        found = router.match(method, path)
        return None if found is None or found.route is None else (found.resource_path, found.params)

    assert resolve("GET", "/a/b") == ("/a/b", {})
    assert resolve("GET", "/a/c") == ("/a/{x}", {"x": "c"})
    assert resolve("GET", "/a/c/d") == ("/a/{proxy+}", {"proxy": "c/d"})
    assert resolve("GET", "/z/y") == ("/{proxy+}", {"proxy": "z/y"})
    assert resolve("GET", "/") == ("/", {})
    assert resolve("GET", "/a/b/") == ("/a/b", {})  # a trailing slash names the same resource
    assert resolve("GET", "/a/hello%20world") == ("/a/{x}", {"x": "hello world"})
    # The most specific resource decides; a method it lacks is a miss even if a greedy sibling has ANY.
    found = router.match("POST", "/a/b")
    assert found is not None and found.resource_path == "/a/b" and found.route is None


def test_router_prefers_the_exact_method_over_any() -> None:
    router = local_api.Router([_route("/x", "ANY"), _route("/x", "GET")])
    found = router.match("get", "/x")
    assert found is not None and found.route is not None and found.route.method == "GET"
    found = router.match("PATCH", "/x")
    assert found is not None and found.route is not None and found.route.method == "ANY"
    assert router.match("GET", "/y") is None


def test_build_event_without_query_or_params_uses_nulls() -> None:
    spec = local_api.ApiSpec(
        env="dev",
        rest_api_id="abc",
        stage="prod",
        endpoint="http://localhost:1",
        region="us-east-1",
        account_id="123456789012",
        routes=(),
        functions={},
    )
    match = local_api.Match("/health", {}, _route("/health"))
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    event = local_api.build_event(
        method="GET",
        raw_path="/health",
        headers=[("Host", "h"), ("Accept", "a"), ("Accept", "b")],
        body=None,
        match=match,
        spec=spec,
        request_id="rid",
        source_ip="127.0.0.1",
        now=when,
    )
    assert event["queryStringParameters"] is None and event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["headers"] == {"Host": "h", "Accept": "b"}
    assert event["multiValueHeaders"] == {"Host": ["h"], "Accept": ["a", "b"]}
    assert event["requestContext"]["requestTime"] == "02/Jan/2026:03:04:05 +0000"
    assert event["requestContext"]["requestTimeEpoch"] == int(when.timestamp() * 1000)
    assert event["requestContext"]["domainName"] == "h"


def test_proxy_response_validation() -> None:
    status, headers, body = local_api.proxy_response({"statusCode": "201", "body": "x"})
    assert (status, body) == (201, b"x") and ("Content-Type", "application/json") in headers
    status, headers, body = local_api.proxy_response(
        {"statusCode": 200, "headers": {"A": "1", "B": "2"}, "multiValueHeaders": {"A": ["m1", "m2"]}}
    )
    assert headers == [("A", "m1"), ("A", "m2"), ("B", "2"), ("Content-Type", "application/json")] and body == b""
    for bad in (
        "text",
        {"statusCode": 99},
        {"statusCode": True},
        {"body": {"not": "a string"}},
        {"body": "!!", "isBase64Encoded": True},
        {"statusCode": 200, "unexpected": 1},
        {"multiValueHeaders": {"A": "not-a-list"}},
    ):
        with pytest.raises(ValueError):
            local_api.proxy_response(bad)


def test_function_reference_of_an_integration_uri() -> None:
    base = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:1:function:"
    assert local_api._function_ref(base + "Fn-1/invocations") == ("Fn-1", None)
    assert local_api._function_ref(base + "Fn-1:live/invocations") == ("Fn-1", "live")
    with pytest.raises(StepFailed):
        local_api._function_ref("arn:aws:apigateway:us-east-1:s3:path/bucket")


def test_code_zip_with_an_escaping_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="unsafe path"):
        local_api._unpack(_zip({"../evil.py": "x"}), tmp_path / "code")
    assert not (tmp_path / "evil.py").exists()


def test_code_hex_of_a_lambda_code_sha() -> None:
    digest = hashlib.sha256(b"zip").digest()
    assert local_api.code_hex(base64.b64encode(digest).decode()) == digest.hex()


def test_spec_round_trips_and_digest_tracks_changes() -> None:
    fn = local_api.FunctionSpec(
        name="f",
        arn="arn",
        handler="m.h",
        runtime="python3.11",
        timeout=3,
        memory=128,
        environment={"A": "1"},
        code_sha256="c2hh",
        code_dir="/tmp/x",
    )
    spec = local_api.ApiSpec(
        env="dev",
        rest_api_id="abc",
        stage="prod",
        endpoint="http://localhost:1",
        region="us-east-1",
        account_id="1",
        routes=(_route("/x"),),
        functions={"f": fn},
    )
    assert local_api.ApiSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    changed = local_api.ApiSpec(
        **{**spec.__dict__, "functions": {"f": local_api.FunctionSpec(**{**fn.__dict__, "environment": {"A": "2"}})}}
    )
    assert changed.digest() != spec.digest()


def test_lambda_context_remaining_time() -> None:
    ctx = local_api.LambdaContext(
        function_name="f",
        function_version="$LATEST",
        invoked_function_arn="arn",
        memory_limit_in_mb=128,
        aws_request_id="r",
        log_group_name="g",
        log_stream_name="s",
        deadline_ms=10_500,
        _clock=lambda: 10.0,
    )
    assert ctx.get_remaining_time_in_millis() == 500
    late = local_api.LambdaContext(**{**ctx.__dict__, "_clock": lambda: 11.0})
    assert late.get_remaining_time_in_millis() == 0


def test_a_lambda_runtime_folder_that_lost_its_links_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder whose links are gone (copied without them, or the environment was made again) is made again."""
    monkeypatch.setattr(bytecode, "DIR", tmp_path / "pycache")
    made = local_api.runtime_dir()
    assert (made / "boto3" / "__init__.py").is_file()
    shutil.rmtree(made)
    made.mkdir()
    (made / "six.py").write_text("# a copy the cache kept\n")
    (made / ".complete").write_text(", ".join(local_api.LAMBDA_RUNTIME_PACKAGES) + "\n")
    again = local_api.runtime_dir()
    assert again == made and (again / "boto3" / "__init__.py").is_file() and (again / "botocore").is_dir()
