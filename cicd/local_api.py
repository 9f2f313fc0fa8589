"""Serve the *deployed* REST API of an environment on ``127.0.0.1``, running the deployed Lambda code.

Like ``sam local start-api`` without containers, except that it serves what was deployed to the local AWS (moto),
not the source tree: the integration test exercises the artifact that will be promoted.

1. :func:`describe_api` reads the REST API back from moto (resources, methods, their ``AWS_PROXY`` integrations),
   resolves each integration URI to its Lambda function, reads the function's configuration (handler, runtime,
   timeout, environment) and fetches its code zip (moto keeps it in S3: the key from ``Code.Location`` is looked up
   in the buckets and checked against ``CodeSha256``; inline ``ZipFile`` code comes from the stack's template). The
   zip is unpacked once per code hash into ``.cicd/local/functions/<env>/<sha>/``.
2. :func:`serve_environment` starts ``python -m cicd.local_api serve`` in the background (its own session, so it
   outlives the invoking process), with the description in ``.cicd/local/api-<env>.spec.json`` and its state
   (pid, port, url, spec digest, code hashes) in ``.cicd/local/api-<env>.json``. A redeploy that changes code or
   configuration changes the digest and replaces the process (same port); an unchanged one keeps it warm.
3. The server is a stdlib ``ThreadingHTTPServer``. It routes a request like API Gateway (literal segments before
   ``{param}`` before ``{proxy+}``; a method, else ``ANY``), builds a REST API (v1) proxy event, and hands it to a
   warm worker: one long-lived Python process per function, started with the deployed environment plus
   ``AWS_ENDPOINT_URL`` of moto, dummy credentials and the ``AWS_LAMBDA_*`` variables. The worker imports the
   handler once and answers events as JSON lines over stdin/stdout (the handler's own prints go to its log).

Answers, chosen to match API Gateway so a test passes the same way locally and on AWS:

* no resource matches the path, or the resource has no such method: ``403 {"message": "Missing Authentication
  Token"}`` (what a REST API answers for both);
* the handler raised, timed out (the function's timeout), crashed the worker or returned a malformed proxy
  response: ``502 {"message": "Internal server error"}``; a crashed or timed-out worker is restarted on the next
  request; a function timeout above API Gateway's 29 s limit answers ``504 {"message": "Endpoint request timed out"}``;
* ``MOCK`` integrations answer their default integration response (static header values and template only).

One request at a time per function (a single warm worker). ``GET /__local-api__/health`` is reserved for the
runtime's own readiness probe.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import importlib
import importlib.util
import io
import json
import os
import queue
import re
import shutil
import signal
import socketserver
import subprocess
import sys
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from cicd import bytecode, local_aws
from cicd.errors import CicdError, StepFailed, UsageError
from cicd.pytest_plugins.cicd_select_audit import passed_on, start_in_child

if TYPE_CHECKING:
    from mypy_boto3_apigateway import APIGatewayClient
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_s3 import S3Client

HOST: Final = "127.0.0.1"
HEALTH_PATH: Final = "/__local-api__/health"
API_GATEWAY_TIMEOUT_S: Final = 29.0
INIT_TIMEOUT_S: Final = 30.0
START_TIMEOUT_S: Final = 60.0
PACKAGE_PARENT: Final = Path(__file__).resolve().parent.parent
MISSING_TOKEN: Final = {"message": "Missing Authentication Token"}
INTERNAL_ERROR: Final = {"message": "Internal server error"}
TIMED_OUT: Final = {"message": "Endpoint request timed out"}
LAMBDA_RUNTIME_PACKAGES: Final = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
"""Importable in the Lambda Python runtime without being in the deployment package (the AWS SDK and its deps)."""
_FUNCTION_ARN: Final = re.compile(r"functions/(arn:[^/]+?)/invocations")
_WORKER_BOOT: Final = (
    "import sys; sys.path.insert(0, sys.argv[1]); import cicd.local_api as m; del sys.path[0]; "
    "sys.exit(m.worker_main(sys.argv[2:]))"
)


# --- the description of a deployed API ------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionSpec:
    """A deployed Lambda function as the local runtime runs it."""

    name: str
    arn: str
    handler: str
    runtime: str
    timeout: int
    memory: int
    environment: dict[str, str]
    code_sha256: str
    code_dir: str
    version: str = "$LATEST"

    @property
    def code_hex(self) -> str:
        return code_hex(self.code_sha256)


@dataclass(frozen=True)
class Route:
    """One method of one resource (``method`` may be ``ANY``)."""

    path: str
    method: str
    resource_id: str
    kind: str
    function: str | None = None
    mock: dict[str, Any] | None = None


@dataclass(frozen=True)
class ApiSpec:
    env: str
    rest_api_id: str
    stage: str
    endpoint: str
    region: str
    account_id: str
    routes: tuple[Route, ...]
    functions: dict[str, FunctionSpec]
    stack: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["routes"] = [asdict(r) for r in self.routes]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiSpec:
        return cls(
            env=str(data["env"]),
            rest_api_id=str(data["rest_api_id"]),
            stage=str(data["stage"]),
            endpoint=str(data["endpoint"]),
            region=str(data["region"]),
            account_id=str(data["account_id"]),
            routes=tuple(Route(**r) for r in data["routes"]),
            functions={k: FunctionSpec(**v) for k, v in data["functions"].items()},
            stack=data.get("stack"),
        )

    def digest(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def code_hex(code_sha256: str) -> str:
    """Lambda's ``CodeSha256`` (base64) as hex, for folder names."""
    try:
        return base64.b64decode(code_sha256, validate=True).hex()
    except (binascii.Error, ValueError):
        return hashlib.sha256(code_sha256.encode()).hexdigest()


def _function_ref(uri: str) -> tuple[str, str | None]:
    """``(function name, qualifier)`` of a Lambda proxy integration URI."""
    match = _FUNCTION_ARN.search(uri)
    if not match:
        raise StepFailed(f"cannot tell which Lambda function the integration URI {uri!r} invokes")
    parts = match.group(1).split(":")
    if len(parts) < 7 or parts[5] != "function":
        raise StepFailed(f"the integration URI {uri!r} does not name a Lambda function")
    return parts[6], (parts[7] if len(parts) > 7 else None)


def describe_api(
    root: Path,
    env: str,
    server: local_aws.LocalAws,
    *,
    stack_name: str | None = None,
    rest_api_id: str | None = None,
) -> ApiSpec:
    """Read the deployed REST API of ``stack_name`` (or ``rest_api_id``) and its functions back from moto."""
    import botocore.exceptions

    try:
        return _describe(root, env, server, stack_name=stack_name, rest_api_id=rest_api_id)
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError):
        local_aws.check_alive(root, server)
        raise
    except botocore.exceptions.ClientError as err:
        local_aws.check_alive(root, server)
        raise StepFailed(
            f"could not read the deployed API of {stack_name or rest_api_id} from local AWS: {err}",
            hint=f"deploy it first: inv deploy --env {env}",
        ) from None


def _describe(
    root: Path,
    env: str,
    server: local_aws.LocalAws,
    *,
    stack_name: str | None,
    rest_api_id: str | None,
) -> ApiSpec:
    import botocore.config
    import botocore.exceptions

    config = botocore.config.Config(
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        s3={"addressing_style": "path"},
    )
    session = server.session()
    cfn = session.client("cloudformation", endpoint_url=server.endpoint, config=config)
    apigw = session.client("apigateway", endpoint_url=server.endpoint, config=config)
    lam = session.client("lambda", endpoint_url=server.endpoint, config=config)
    s3 = session.client("s3", endpoint_url=server.endpoint, config=config)

    template: dict[str, Any] = {}
    physical: dict[str, str] = {}
    if not stack_name and rest_api_id:
        stack_name = _stack_of_api(cfn, rest_api_id)  # its template holds any inline code
    if stack_name:
        try:
            stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
        except botocore.exceptions.ClientError:
            stacks = []
        if not stacks:
            raise StepFailed(
                f"stack {stack_name} is not deployed on local AWS ({server.endpoint})",
                hint=f"deploy it first: inv deploy --env {env}",
            )
        outputs = {o.get("OutputKey", ""): o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}
        resources = cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
        physical = {
            r["PhysicalResourceId"]: r.get("LogicalResourceId", "") for r in resources if r.get("PhysicalResourceId")
        }
        apis = [
            r["PhysicalResourceId"]
            for r in resources
            if r.get("ResourceType") == "AWS::ApiGateway::RestApi" and r.get("PhysicalResourceId")
        ]
        if not rest_api_id:
            rest_api_id = outputs.get("RestApiId") or (apis[0] if len(apis) == 1 else None)
        if not rest_api_id:
            raise StepFailed(
                f"stack {stack_name} has {len(apis)} REST APIs and no RestApiId output",
                hint="add a RestApiId output to the stack, or pass the API id",
            )
        body = cfn.get_template(StackName=stack_name).get("TemplateBody")
        if isinstance(body, str):
            with contextlib.suppress(ValueError):
                body = json.loads(body)
        template = dict(body) if isinstance(body, Mapping) else {}
    if not rest_api_id:
        raise UsageError("name the stack or the REST API id to serve")

    routes, refs = _read_routes(apigw, rest_api_id)
    stage = _stage_name(apigw, rest_api_id, template)
    functions: dict[str, FunctionSpec] = {}
    for name, qualifier in sorted(refs, key=lambda ref: (ref[0], ref[1] or "")):
        got = lam.get_function(FunctionName=name, **({"Qualifier": qualifier} if qualifier else {}))
        conf = got["Configuration"]
        sha = conf.get("CodeSha256", "")
        inline = _inline_code(template, physical.get(conf["FunctionName"]))
        code_dir = _ensure_code(
            root,
            env,
            s3,
            sha=sha,
            size=conf.get("CodeSize", 0),
            location=got.get("Code", {}).get("Location", ""),
            inline=inline,
            function=name,
        )
        key = name if qualifier is None else f"{name}:{qualifier}"
        functions[key] = FunctionSpec(
            name=conf["FunctionName"],
            arn=conf.get("FunctionArn", ""),
            handler=conf.get("Handler", ""),
            runtime=conf.get("Runtime", ""),
            timeout=int(conf.get("Timeout", 3)),
            memory=int(conf.get("MemorySize", 128)),
            environment=dict(conf.get("Environment", {}).get("Variables", {})),
            code_sha256=sha,
            code_dir=str(code_dir),
            version=conf.get("Version", "$LATEST"),
        )
    return ApiSpec(
        env=env,
        rest_api_id=rest_api_id,
        stage=stage,
        endpoint=server.endpoint,
        region=server.region,
        account_id=server.account_id,
        routes=tuple(routes),
        functions=functions,
        stack=stack_name,
    )


def _stack_of_api(cfn: CloudFormationClient, rest_api_id: str) -> str | None:
    for page in cfn.get_paginator("describe_stacks").paginate():
        for stack in page.get("Stacks", []):
            if stack.get("StackStatus") == "DELETE_COMPLETE":
                continue
            resources = cfn.describe_stack_resources(StackName=stack["StackName"])["StackResources"]
            if any(r.get("PhysicalResourceId") == rest_api_id for r in resources):
                return stack["StackName"]
    return None


def _read_routes(apigw: APIGatewayClient, rest_api_id: str) -> tuple[list[Route], set[tuple[str, str | None]]]:
    routes: list[Route] = []
    refs: set[tuple[str, str | None]] = set()
    position: str | None = None
    while True:
        page = apigw.get_resources(
            restApiId=rest_api_id, embed=["methods"], limit=500, **({"position": position} if position else {})
        )
        for item in page.get("items", []):
            for method, data in sorted(item.get("resourceMethods", {}).items()):
                integration: Mapping[str, Any] = data.get("methodIntegration") or {}
                kind = str(integration.get("type", "NONE"))
                route = Route(path=item.get("path", "/"), method=method.upper(), resource_id=item["id"], kind=kind)
                if kind == "AWS_PROXY":
                    name, qualifier = _function_ref(str(integration.get("uri", "")))
                    refs.add((name, qualifier))
                    route = Route(**{**asdict(route), "function": name if qualifier is None else f"{name}:{qualifier}"})
                elif kind == "MOCK":
                    route = Route(**{**asdict(route), "mock": _mock_response(integration)})
                routes.append(route)
        position = page.get("position")
        if not position:
            return routes, refs


def _mock_response(integration: Mapping[str, Any]) -> dict[str, Any]:
    """The default integration response of a MOCK integration (static values only)."""
    responses: Mapping[str, Any] = integration.get("integrationResponses") or {}
    chosen: Mapping[str, Any] | None = None
    for code in sorted(responses):
        candidate = responses[code]
        if not candidate.get("selectionPattern"):
            chosen = candidate
            break
    if chosen is None and responses:
        chosen = responses[sorted(responses)[0]]
    if chosen is None:
        return {}
    headers = {}
    for key, value in (chosen.get("responseParameters") or {}).items():
        if key.startswith("method.response.header.") and len(value) >= 2 and value[0] == value[-1] == "'":
            headers[key.removeprefix("method.response.header.")] = value[1:-1]
    templates: Mapping[str, str] = chosen.get("responseTemplates") or {}
    return {
        "statusCode": int(chosen.get("statusCode", 200)),
        "headers": headers,
        "body": templates.get("application/json", "") or "",
    }


def _stage_name(apigw: APIGatewayClient, rest_api_id: str, template: Mapping[str, Any]) -> str:
    """The deployed stage: moto's stages, else the template's ``AWS::ApiGateway::Stage`` (moto skips those)."""
    stages = apigw.get_stages(restApiId=rest_api_id).get("item", [])
    if stages:
        return str(stages[0].get("stageName", "prod"))
    for resource in (template.get("Resources") or {}).values():
        if isinstance(resource, Mapping) and resource.get("Type") == "AWS::ApiGateway::Stage":
            name = (resource.get("Properties") or {}).get("StageName")
            if isinstance(name, str):
                return name
    return "prod"


def _inline_code(template: Mapping[str, Any], logical_id: str | None) -> str | None:
    if logical_id is None:
        return None
    resource = (template.get("Resources") or {}).get(logical_id) or {}
    code = (resource.get("Properties") or {}).get("Code") or {}
    inline = code.get("ZipFile") if isinstance(code, Mapping) else None
    return inline if isinstance(inline, str) else None


def _ensure_code(
    root: Path,
    env: str,
    s3: S3Client,
    *,
    sha: str,
    size: int,
    location: str,
    inline: str | None,
    function: str,
) -> Path:
    """Unpack the function's deployed code once per hash; return the folder."""
    dest = local_aws.local_dir(root) / "functions" / env / code_hex(sha)
    if (dest / ".complete").exists():
        return dest
    blob = _fetch_zip(s3, sha=sha, size=size, location=location)
    if blob is None and inline is not None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            archive.writestr("index.py", inline)
        blob = buf.getvalue()
    if blob is None:
        raise StepFailed(
            f"could not read the deployed code of function {function} back from local AWS",
            hint="deploy the stack again (inv deploy) so its code asset is in the local S3",
        )
    _unpack(blob, dest)
    return dest


def _fetch_zip(s3: S3Client, *, sha: str, size: int, location: str) -> bytes | None:
    """moto keeps a function's S3 code where it was deployed from: find the key in a bucket, check the hash."""
    import botocore.exceptions

    key = unquote(urlsplit(location).path.lstrip("/"))
    if not key:
        return None
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket.get("Name", "")
        try:
            head = s3.head_object(Bucket=name, Key=key)
        except botocore.exceptions.ClientError:
            continue
        if size and head.get("ContentLength") != size:
            continue
        body = s3.get_object(Bucket=name, Key=key)["Body"].read()
        if base64.b64encode(hashlib.sha256(body).digest()).decode() == sha:
            return body
    return None


def _unpack(blob: bytes, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    base = tmp.resolve()
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            for info in archive.infolist():
                target = (base / info.filename).resolve()
                if base not in target.parents and target != base:
                    raise StepFailed(f"the deployed code zip has an unsafe path: {info.filename!r}")
                archive.extract(info, base)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    target.chmod(mode | 0o444)
    except zipfile.BadZipFile as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StepFailed(f"the deployed code is not a valid zip: {err}") from None
    (tmp / ".complete").write_text("ok\n")
    try:
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process unpacked the same hash first
        if not (dest / ".complete").exists():
            raise


# --- lifecycle of the per-environment API processes -----------------------------------------------------------


@dataclass(frozen=True)
class ApiState:
    """A served environment, as recorded in ``.cicd/local/api-<env>.json``."""

    env: str
    pid: int
    port: int
    url: str
    spec_digest: str
    rest_api_id: str
    stack: str | None
    code_sha256: dict[str, str]
    started_at: str
    log: str
    alive: bool = True

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiState:
        return cls(
            env=str(data["env"]),
            pid=int(data["pid"]),
            port=int(data["port"]),
            url=str(data["url"]),
            spec_digest=str(data["spec_digest"]),
            rest_api_id=str(data.get("rest_api_id", "")),
            stack=data.get("stack"),
            code_sha256=dict(data.get("code_sha256", {})),
            started_at=str(data.get("started_at", "")),
            log=str(data.get("log", "")),
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("alive")
        return data


def _check_env(env: str) -> None:
    if not local_aws.ENV_NAME.match(env):
        raise UsageError(f"'{env}' is not a valid environment name", hint="use dev, preprod or prod")


def api_state_path(root: Path, env: str) -> Path:
    return local_aws.local_dir(root) / f"api-{env}.json"


def spec_path(root: Path, env: str) -> Path:
    return local_aws.local_dir(root) / f"api-{env}.spec.json"


def _read_api_state(root: Path, env: str) -> ApiState | None:
    data = local_aws.read_json(api_state_path(root, env))
    if data is None:
        return None
    try:
        return ApiState.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


def _health(port: int, *, timeout: float = 2.0) -> dict[str, Any] | None:
    answer = local_aws.http_get(f"http://{HOST}:{port}{HEALTH_PATH}", timeout=timeout)
    if answer is None or answer[0] != 200:
        return None
    try:
        data = json.loads(answer[1])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _api_alive(state: ApiState) -> bool:
    if not local_aws.pid_alive(state.pid):
        return False
    health = _health(state.port)
    return health is not None and health.get("pid") == state.pid


def serve_environment(
    root: Path,
    env: str,
    stack_name: str | None = None,
    *,
    rest_api_id: str | None = None,
    port: int | None = None,
    server: local_aws.LocalAws | None = None,
) -> str:
    """Serve the deployed API of ``env`` (start it, or replace it after a redeploy); return its base URL."""
    _check_env(env)
    srv = server or local_aws.current(root)
    spec = describe_api(root, env, srv, stack_name=stack_name, rest_api_id=rest_api_id)
    digest = spec.digest()
    with local_aws.locked(root, f"api-{env}"):
        state = _read_api_state(root, env)
        if state is not None and state.spec_digest == digest and _api_alive(state):
            return state.url
        wanted = port if port is not None else (state.port if state is not None else None)
        if state is not None:
            _stop_api_process(state)
            api_state_path(root, env).unlink(missing_ok=True)
        if wanted is not None and local_aws.port_in_use(wanted):
            if port is not None:
                raise UsageError(f"port {port} is in use by another program", hint="choose another port")
            wanted = None
        chosen = wanted if wanted is not None else local_aws.free_port()
        local_aws.write_json_atomic(spec_path(root, env), spec.to_json())
        log = local_aws.local_dir(root) / "logs" / f"api-{env}.log"
        environ = bytecode.python_env(os.environ)
        environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_PARENT), environ.get("PYTHONPATH")) if p)
        cmd = [
            sys.executable,
            "-m",
            "cicd.local_api",
            "serve",
            "--spec",
            str(spec_path(root, env)),
            "--port",
            str(chosen),
        ]
        proc = local_aws.spawn_detached(cmd, log=log, cwd=root, env=environ)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            health = _health(chosen, timeout=1.0)
            if health is not None and health.get("pid") == proc.pid and health.get("spec_digest") == digest:
                break
            if proc.poll() is not None:
                raise StepFailed(
                    f"the local API of {env} exited while starting: {local_aws.last_line(log)}",
                    hint=f"see {log}",
                )
            if time.monotonic() > deadline:
                local_aws.stop_process(proc.pid)
                raise StepFailed(
                    f"the local API of {env} did not answer within {START_TIMEOUT_S:.0f} s", hint=f"see {log}"
                )
            time.sleep(0.05)
        url = f"http://{HOST}:{chosen}/"
        new_state = ApiState(
            env=env,
            pid=proc.pid,
            port=chosen,
            url=url,
            spec_digest=digest,
            rest_api_id=spec.rest_api_id,
            stack=spec.stack,
            code_sha256={name: fn.code_sha256 for name, fn in spec.functions.items()},
            started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            log=str(log),
        )
        local_aws.write_json_atomic(api_state_path(root, env), new_state.to_json())
        _prune_code(root, env, {Path(fn.code_dir).name for fn in spec.functions.values()})
        return url


def _stop_api_process(state: ApiState) -> bool:
    """Stop the recorded process (and its workers) unless the pid now belongs to another program."""
    cmdline = local_aws.process_cmdline(state.pid)
    if cmdline is not None and "cicd.local_api" not in cmdline:
        return False
    return local_aws.stop_process(state.pid)


def _prune_code(root: Path, env: str, keep: set[str]) -> None:
    """Remove unpacked code of earlier deployments of ``env`` (the process serving them was replaced)."""
    folder = local_aws.local_dir(root) / "functions" / env
    if folder.is_dir():
        for child in folder.iterdir():
            if child.is_dir() and child.name not in keep and not child.name.startswith("."):
                shutil.rmtree(child, ignore_errors=True)


def _envs_with_state(root: Path) -> list[str]:
    folder = local_aws.local_dir(root)
    if not folder.is_dir():
        return []
    names = (p.name for p in folder.glob("api-*.json") if not p.name.endswith(".spec.json"))
    return sorted(n.removeprefix("api-").removesuffix(".json") for n in names)


def stop(root: Path, env: str) -> bool:
    """Stop the local API of ``env``; True when one was running."""
    _check_env(env)
    with local_aws.locked(root, f"api-{env}"):
        state = _read_api_state(root, env)
        stopped = False
        if state is not None:
            stopped = _stop_api_process(state)
        api_state_path(root, env).unlink(missing_ok=True)
        spec_path(root, env).unlink(missing_ok=True)
        return stopped


def stop_all(root: Path) -> list[str]:
    """Stop every local API of this checkout; the environments that were running."""
    return [env for env in _envs_with_state(root) if local_aws.ENV_NAME.match(env) and stop(root, env)]


def list_apis(root: Path) -> list[ApiState]:
    """The served environments; a dead one is reported once with ``alive=False`` and its state removed."""
    states: list[ApiState] = []
    for env in _envs_with_state(root):
        if not local_aws.ENV_NAME.match(env):
            continue
        state = _read_api_state(root, env)
        if state is None:
            continue
        if _api_alive(state):
            states.append(state)
        else:
            api_state_path(root, env).unlink(missing_ok=True)
            states.append(ApiState(**{**asdict(state), "alive": False}))
    return states


# --- routing and events -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    resource_path: str
    params: dict[str, str]
    route: Route | None


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def _match_segments(template: Sequence[str], parts: Sequence[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for i, seg in enumerate(template):
        if seg.startswith("{") and seg.endswith("+}"):
            rest = parts[i:]
            if not rest:
                return None
            params[seg[1:-2]] = "/".join(rest)
            return params
        if i >= len(parts):
            return None
        if seg.startswith("{") and seg.endswith("}"):
            params[seg[1:-1]] = parts[i]
        elif seg != parts[i]:
            return None
    return params if len(template) == len(parts) else None


def _rank(template: Sequence[str]) -> tuple[int, ...]:
    return tuple(2 if s.endswith("+}") else 1 if s.startswith("{") else 0 for s in template)


class Router:
    """API Gateway's resource matching: the most specific resource path wins, then its method or ``ANY``."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._resources: dict[str, tuple[list[str], dict[str, Route]]] = {}
        for route in routes:
            _, methods = self._resources.setdefault(route.path, (_segments(route.path), {}))
            methods[route.method] = route

    def match(self, method: str, path: str) -> Match | None:
        parts = [unquote(p) for p in _segments(path)]
        best: tuple[tuple[int, ...], str, dict[str, str], dict[str, Route]] | None = None
        for template, (segments, methods) in self._resources.items():
            params = _match_segments(segments, parts)
            if params is None:
                continue
            rank = _rank(segments)
            if best is None or rank < best[0]:
                best = (rank, template, params, methods)
        if best is None:
            return None
        _, template, params, methods = best
        return Match(template, params, methods.get(method.upper()) or methods.get("ANY"))


def build_event(
    *,
    method: str,
    raw_path: str,
    headers: Sequence[tuple[str, str]],
    body: bytes | None,
    match: Match,
    spec: ApiSpec,
    request_id: str,
    source_ip: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API (v1) Lambda proxy event."""
    split = urlsplit(raw_path)
    path = unquote(split.path) or "/"
    pairs = parse_qsl(split.query, keep_blank_values=True)
    multi_query: dict[str, list[str]] = {}
    for key, value in pairs:
        multi_query.setdefault(key, []).append(value)
    multi_headers: dict[str, list[str]] = {}
    for key, value in headers:
        multi_headers.setdefault(key, []).append(value)
    single_headers = {key: values[-1] for key, values in multi_headers.items()}
    lower = {k.lower(): v for k, v in single_headers.items()}
    when = now or dt.datetime.now(dt.UTC)
    text: str | None = None
    encoded = False
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
    return {
        "resource": match.resource_path,
        "path": path,
        "httpMethod": method,
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": match.params or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": match.route.resource_id if match.route else "",
            "resourcePath": match.resource_path,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": when.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{spec.stage}{path}",
            "accountId": spec.account_id,
            "protocol": "HTTP/1.1",
            "stage": spec.stage,
            "domainPrefix": spec.rest_api_id,
            "requestTimeEpoch": int(when.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": lower.get("user-agent"),
                "user": None,
            },
            "domainName": lower.get("host", ""),
            "apiId": spec.rest_api_id,
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def proxy_response(result: object) -> tuple[int, list[tuple[str, str]], bytes]:
    """Turn a Lambda proxy result into ``(status, headers, body)``; :class:`ValueError` when it is malformed."""
    if not isinstance(result, dict):
        raise ValueError(f"the handler returned {type(result).__name__}, not a proxy response object")
    allowed = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded", "cookies"}
    unknown = set(result) - allowed
    if unknown:
        raise ValueError(f"the proxy response has unexpected keys {sorted(unknown)}")
    status = result.get("statusCode", 200)
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"statusCode {status!r} is not an HTTP status")
    headers = _proxy_headers(result)
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return status, headers, _proxy_body(result)


def _proxy_headers(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise ValueError("headers and multiValueHeaders must be objects")
    for key, values in multi.items():
        if not isinstance(values, list):
            raise ValueError(f"multiValueHeaders[{key!r}] must be a list")
        headers.extend((str(key), str(v)) for v in values)
    named = {k.lower() for k, _ in headers}
    headers.extend((str(k), str(v)) for k, v in single.items() if str(k).lower() not in named)
    return headers


def _proxy_body(result: Mapping[str, Any]) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise ValueError(f"body must be a string, got {type(body).__name__}")
    if not result.get("isBase64Encoded"):
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("isBase64Encoded is true but the body is not base64") from None


# --- workers ----------------------------------------------------------------------------------------------------


class InvocationError(Exception):
    """The function did not return a result (error, crash, timeout); ``timed_out`` tells which."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def runtime_dir() -> Path:
    """A folder exposing only what the Lambda Python runtime provides besides the standard library.

    Workers run without this environment's site-packages (``python -S``), so a deployed zip that forgot a
    dependency fails locally the way it would fail on Lambda. The folder, ``.cicd/lambda-runtime-*`` (outside the
    step cache that CI tools carry between runs), links to this environment's copies and lists them in
    ``.complete``; a folder whose links do not all resolve (the environment moved or was made again) is made again.
    """
    digest = hashlib.sha256(sys.prefix.encode()).hexdigest()[:10]
    dest = bytecode.DIR.parent / f"lambda-runtime-{digest}"
    if _runtime_complete(dest):
        return dest
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    linked = []
    for name in LAMBDA_RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        if spec.submodule_search_locations:
            (tmp / name).symlink_to(next(iter(spec.submodule_search_locations)), target_is_directory=True)
            linked.append(name)
        else:
            (tmp / Path(spec.origin).name).symlink_to(spec.origin)
            linked.append(Path(spec.origin).name)
    (tmp / ".complete").write_text(", ".join(linked) + "\n")
    shutil.rmtree(dest, ignore_errors=True)  # an incomplete one
    try:
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another worker made it first
    return dest


def _runtime_complete(dest: Path) -> bool:
    try:
        names = [n.strip() for n in (dest / ".complete").read_text(encoding="utf-8").split(",") if n.strip()]
    except OSError:
        return False
    return bool(names) and all((dest / name).exists() for name in names)


def worker_environ(fn: FunctionSpec, spec: ApiSpec) -> dict[str, str]:
    """A Lambda-like environment: the deployed variables, then the runtime's reserved ones pointing at moto."""
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT") if k in os.environ}
    env.update(fn.environment)
    env.update(local_aws.client_environ(spec.endpoint, spec.region))
    env.update(
        {
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_VERSION": fn.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{spec.env}/{fn.code_hex[:12]}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.runtime}",
            "LAMBDA_TASK_ROOT": fn.code_dir,
            "_HANDLER": fn.handler,
            "TZ": ":UTC",
        }
    )
    env.update(passed_on(os.environ))  # under a recorded test run only (affected-only tests follow the worker)
    return env


class Worker:
    """One warm process running one function's handler; events go in and results come out as JSON lines."""

    def __init__(self, fn: FunctionSpec, spec: ApiSpec, log: Path) -> None:
        self.fn = fn
        self.spec = spec
        self.log = log
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._init_error: str | None = None
        self._counter = 0
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def state(self) -> str:
        if self._proc is None or self._proc.poll() is not None:
            return "cold"
        return "init-error" if self._init_error else "warm"

    def warm(self) -> None:
        with self._lock:
            self._ensure_started()

    def _ensure_started(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._init_error = None
        if not self.fn.runtime.startswith("python"):
            self._proc = None
            self._init_error = f"runtime {self.fn.runtime!r} is not supported by the local API (Python only)"
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-I",
            "-S",
            "-u",
            "-X",
            f"pycache_prefix={bytecode.DIR}",
            "-c",
            _WORKER_BOOT,
            str(PACKAGE_PARENT),
            self.fn.handler,
            self.fn.code_dir,
            str(runtime_dir()),
        ]
        with self.log.open("a", encoding="utf-8") as err:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=worker_environ(self.fn, self.spec),
                cwd=self.fn.code_dir,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
        self.starts += 1
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
        self._proc, self._lines = proc, lines
        try:
            first = lines.get(timeout=INIT_TIMEOUT_S)
        except queue.Empty:
            first = None
        ready: dict[str, Any] = {}
        if first is not None:
            with contextlib.suppress(ValueError):
                ready = json.loads(first)
        if not ready.get("ready"):
            self._init_error = (
                f"{ready.get('errorType', 'Runtime.InitError')}: {ready.get('errorMessage', 'worker did not start')}"
            )

    def invoke(self, event: Mapping[str, Any], request_id: str) -> object:
        with self._lock:
            self._ensure_started()
            if self._init_error:
                raise InvocationError(self._init_error)
            proc = self._proc
            if proc is None or proc.stdin is None:  # _ensure_started sets both
                raise InvocationError("the worker process did not start")
            self._counter += 1
            timeout = min(float(self.fn.timeout), API_GATEWAY_TIMEOUT_S)
            request = {
                "id": self._counter,
                "event": event,
                "request_id": request_id,
                "deadline_ms": int((time.time() + self.fn.timeout) * 1000),
                "function_name": self.fn.name,
                "function_arn": self.fn.arn,
                "function_version": self.fn.version,
                "memory": self.fn.memory,
            }
            try:
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._kill()
                raise InvocationError("the worker process is gone") from None
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                self._kill()
                raise InvocationError(
                    f"Task timed out after {timeout:.2f} seconds", timed_out=self.fn.timeout > API_GATEWAY_TIMEOUT_S
                ) from None
            if line is None:
                self._kill()
                raise InvocationError(f"the worker process exited (code {proc.poll()})")
            try:
                answer = json.loads(line)
            except ValueError:
                self._kill()
                raise InvocationError("the worker answered something that is not JSON") from None
            if not answer.get("ok"):
                raise InvocationError(f"{answer.get('errorType')}: {answer.get('errorMessage')}")
            return answer.get("result")

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.terminate()  # no SIGTERM handler in the runtime: it ends at once (a recorded one writes its record)
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def stop(self) -> None:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # the worker's loop ends on EOF
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
            self._kill()


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    with contextlib.suppress(OSError, ValueError):
        for line in proc.stdout or ():
            lines.put(line)
    lines.put(None)


# --- the HTTP server --------------------------------------------------------------------------------------------


class LocalApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], spec: ApiSpec, log_dir: Path) -> None:
        # Bound now (the port is ours), listening only after the workers are warm (see serve()).
        super().__init__(address, _Handler, bind_and_activate=False)
        self.spec = spec
        self.digest = spec.digest()
        self.router = Router(spec.routes)
        self.workers = {
            name: Worker(fn, spec, log_dir / f"{spec.env}-{fn.name}.log") for name, fn in spec.functions.items()
        }

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can wait on DNS; the address is enough.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client went away (a readiness probe that gave up, a closed keep-alive)
        super().handle_error(request, client_address)

    def warm_all(self) -> None:
        threads = [threading.Thread(target=w.warm, daemon=True) for w in self.workers.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(INIT_TIMEOUT_S + 5)

    def stop_workers(self) -> None:
        for worker in self.workers.values():
            worker.stop()


def _json_answer(status: int, data: object, error_type: str | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("Content-Type", "application/json")]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    return status, headers, json.dumps(data).encode()


class _Handler(BaseHTTPRequestHandler):
    server: LocalApiServer
    protocol_version = "HTTP/1.1"
    server_version = "cicd-local-api"
    disable_nagle_algorithm = True
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch()

    def __getattr__(self, name: str) -> Callable[[], None]:
        """Every method goes to the router, as in API Gateway (the standard library answers 501 HTML for a method
        without a ``do_`` function: ``TRACE``, ``QUERY``, any token)."""
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks) or None
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else None

    def _send(self, status: int, headers: Sequence[tuple[str, str]], body: bytes, request_id: str) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in {"content-length", "connection", "transfer-encoding"}:
                self.send_header(key, value)
        self.send_header("x-amzn-RequestId", request_id)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        request_id = str(uuid.uuid4())
        try:
            body = self._read_body()
        except ValueError:
            status, headers, payload = _json_answer(400, {"message": "Bad request"})
        else:
            status, headers, payload = self._answer(body, request_id)
        self._send(status, headers, payload, request_id)

    def _answer(  # noqa: PLR0911 - one return per kind of API Gateway answer
        self, body: bytes | None, request_id: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        method = self.command.upper()
        path = urlsplit(self.path).path
        if path == HEALTH_PATH and method == "GET":
            return _json_answer(200, self._health())
        match = self.server.router.match(method, path)
        if match is None or match.route is None:
            return _json_answer(403, MISSING_TOKEN, "MissingAuthenticationTokenException")
        route = match.route
        if route.kind == "MOCK" and route.mock:
            mock = route.mock
            return int(mock["statusCode"]), list(mock["headers"].items()), str(mock["body"]).encode()
        worker = self.server.workers.get(route.function or "")
        if route.kind != "AWS_PROXY" or worker is None:
            self.log_message("integration type %s of %s %s is not supported locally", route.kind, method, path)
            return _json_answer(500, INTERNAL_ERROR, "InternalServerErrorException")
        event = build_event(
            method=method,
            raw_path=self.path,
            headers=list(self.headers.items()),
            body=body,
            match=match,
            spec=self.server.spec,
            request_id=request_id,
            source_ip=self.client_address[0],
        )
        try:
            return proxy_response(worker.invoke(event, request_id))
        except InvocationError as err:
            self.log_message("%s %s: %s", method, path, err)
            if err.timed_out:
                return _json_answer(504, TIMED_OUT, "InternalServerErrorException")
            return _json_answer(502, INTERNAL_ERROR, "InternalServerErrorException")
        except ValueError as err:
            self.log_message("%s %s: malformed Lambda proxy response: %s", method, path, err)
            return _json_answer(502, INTERNAL_ERROR, "InternalServerErrorException")

    def _health(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "env": self.server.spec.env,
            "spec_digest": self.server.digest,
            "workers": {
                name: {"state": w.state(), "pid": w.pid, "starts": w.starts} for name, w in self.server.workers.items()
            },
        }


def serve(spec_file: Path, port: int, *, host: str = HOST) -> int:
    """Run the server of one environment until SIGTERM/SIGINT (what ``python -m cicd.local_api serve`` does)."""
    spec = ApiSpec.from_json(json.loads(spec_file.read_text(encoding="utf-8")))
    httpd = LocalApiServer((host, port), spec, spec_file.parent / "logs")
    try:
        httpd.server_bind()
    except OSError:
        httpd.server_close()
        raise

    def _shutdown(_signum: int, _frame: object) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    httpd.warm_all()
    httpd.server_activate()
    sys.stderr.write(f"serving {spec.env} ({spec.rest_api_id}) on http://{host}:{port}/ digest {httpd.digest}\n")
    sys.stderr.flush()
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.stop_workers()
        httpd.server_close()
    return 0


# --- inside a worker process ------------------------------------------------------------------------------------


@dataclass
class LambdaContext:
    """The parts of the Lambda context object handlers use."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int
    identity: object = None
    client_context: object = None
    tenant_id: object = None
    _clock: Callable[[], float] = field(default=time.time, repr=False)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(self._clock() * 1000))


def _load_handler(name: str) -> Callable[[Any, Any], Any]:
    module_name, _, attr = name.replace("/", ".").rpartition(".")
    if not module_name:
        raise ValueError(f"bad handler {name!r}: expected module.function")
    module = importlib.import_module(module_name)
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise AttributeError(f"handler {attr!r} missing on module {module_name!r}")
    return handler  # type: ignore[no-any-return]


def worker_main(argv: Sequence[str]) -> int:
    """Import the handler once, then answer one JSON-line event per JSON-line request until stdin closes."""
    start_in_child()  # under a recorded test run only: affected-only tests follow this isolated process too
    handler_name, code_dir = argv[0], argv[1]
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # the handler's prints go to the function log, never into the protocol
    sys.path[:0] = [code_dir, *argv[2:3]]  # the task root first, then the runtime's packages
    for name in [m for m in sys.modules if m == "cicd" or m.startswith("cicd.")]:
        del sys.modules[name]  # this runtime is not part of the function's world
    os.chdir(code_dir)
    handler: Callable[[Any, Any], Any] | None = None
    try:
        handler = _load_handler(handler_name)
        ready: dict[str, Any] = {"ready": True}
    except Exception as err:  # report an init error the way Lambda does, then keep answering with it
        traceback.print_exc()
        kind = "Runtime.HandlerNotFound" if isinstance(err, AttributeError) else "Runtime.ImportModuleError"
        ready = {"ready": False, "errorType": kind, "errorMessage": f"{type(err).__name__}: {err}"}
    protocol.write(json.dumps(ready) + "\n")
    if handler is None:
        return 1
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(
            function_name=request["function_name"],
            function_version=request["function_version"],
            invoked_function_arn=request["function_arn"],
            memory_limit_in_mb=int(request["memory"]),
            aws_request_id=request["request_id"],
            log_group_name=os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""),
            log_stream_name=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
            deadline_ms=int(request["deadline_ms"]),
        )
        try:
            result = handler(request["event"], context)
            answer = json.dumps({"id": request["id"], "ok": True, "result": result})
        except Exception as err:  # the handler's error becomes the invocation's error, like in Lambda
            traceback.print_exc()
            marshal = isinstance(err, TypeError) and "serializable" in str(err)
            error_type = "Runtime.MarshalError" if marshal else type(err).__name__
            answer = json.dumps({"id": request["id"], "ok": False, "errorType": error_type, "errorMessage": str(err)})
        sys.stderr.flush()
        protocol.write(answer + "\n")
    return 0


# --- command line -------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cicd.local_api", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve a described API (started by serve_environment)")
    run.add_argument("--spec", type=Path, required=True)
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--host", default=HOST)
    up = sub.add_parser("up", help="describe and serve the deployed API of an environment in the background")
    up.add_argument("--env", required=True)
    up.add_argument("--stack")
    up.add_argument("--rest-api-id")
    up.add_argument("--port", type=int)
    up.add_argument("--root", type=Path, default=Path.cwd())
    down = sub.add_parser("down", help="stop the local API of an environment")
    down.add_argument("--env", required=True)
    down.add_argument("--root", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args.spec, args.port, host=args.host)
        if args.command == "up":
            print(serve_environment(args.root, args.env, args.stack, rest_api_id=args.rest_api_id, port=args.port))
            return 0
        print("stopped" if stop(args.root, args.env) else "not running")
        return 0
    except CicdError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.return_code


if __name__ == "__main__":
    sys.exit(main())
