"""The embedded local AWS (a real moto server) and the pinned CDK CLI."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cicd import cdk_cli, command, local_api, local_aws
from cicd.errors import CicdError, ConfigError, MissingToolError, UsageError

ROOT = Path(__file__).resolve().parents[2]
HEALTH_TIMEOUT_S = local_aws.HEALTH_TIMEOUT_S


@pytest.fixture(autouse=True)
def _no_port_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(local_aws.PORT_ENV, raising=False)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    local_aws.down(tmp_path)


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while local_aws.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _get(url: str) -> tuple[int, bytes]:
    answer = local_aws.http_get(url)
    assert answer is not None, f"nothing answered at {url}"
    return answer


# --- server lifecycle -------------------------------------------------------------------------------------------


@pytest.mark.component  # a real moto server
def test_up_status_down_lifecycle(root: Path) -> None:
    port = local_aws.free_port()
    server = local_aws.up(root, port=port, warm=False)

    assert server.port == port
    assert server.endpoint == f"http://localhost:{port}"
    assert server.account_id == "123456789012"
    assert local_aws.pid_alive(server.pid)
    state = json.loads((root / ".cicd" / "local" / "server.json").read_text())
    assert state["pid"] == server.pid
    assert state["port"] == port
    assert state["endpoint"] == f"http://localhost:{port}"
    assert state["bootstrapped"] == []
    assert state["started_at"]
    # It is really moto, and it answers on the localhost name the endpoint uses.
    status, body = _get(f"http://localhost:{port}/moto-api/config")
    assert status < 300 and "lambda" in json.loads(body)

    assert local_aws.up(root, port=port, warm=False).pid == server.pid  # already running: reused, not restarted
    st = local_aws.status(root)
    assert st.running and st.server is not None and st.server.pid == server.pid
    assert local_aws.current(root) == server

    assert local_aws.down(root) is True
    _wait_gone(server.pid)
    assert not local_aws.pid_alive(server.pid)
    assert not (root / ".cicd" / "local" / "server.json").exists()
    assert local_aws.status(root).running is False
    assert local_aws.down(root) is False


def test_port_setting_precedence() -> None:
    assert local_aws.configured_port(None, {}) == 4566
    assert local_aws.configured_port(5000, {}) == 5000
    assert local_aws.configured_port(5000, {"CICD_LOCAL_PORT": "6000"}) == 6000  # the variable wins
    assert local_aws.configured_port(5000, {"CICD_LOCAL_PORT": "0"}) == 0  # 0: any free port


def _dead_pid(cwd: Path) -> int:
    """The pid of a process that has ended (started outside the checkout: test selection counts a process that
    can see the checkout as reading all of it)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"], cwd=cwd)
    proc.wait()
    return proc.pid


@pytest.mark.component  # a real moto server
def test_stale_state_is_detected_and_cleaned(root: Path) -> None:
    pid = _dead_pid(root)
    port = local_aws.free_port()
    stale = local_aws.LocalAws(pid=pid, port=port, endpoint=f"http://localhost:{port}", started_at="earlier")
    local_aws.write_json_atomic(local_aws.state_path(root), stale.to_json())
    local_aws.record_deployment(root, "dev", {"digest": "abc"})

    st = local_aws.status(root)
    assert st.running is False
    assert st.server is None
    assert st.note == (f"local AWS (moto) on port {port} (pid {pid}) is no longer running; stale state removed")
    assert not local_aws.state_path(root).exists()
    assert local_aws.read_deployment(root, "dev") is None
    assert local_aws.status(root).note == "local AWS is not running"


@pytest.mark.component  # a real moto server
def test_a_live_process_that_is_not_moto_is_not_taken_for_the_server(root: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=root)
    try:
        port = local_aws.free_port()
        reused = local_aws.LocalAws(pid=other.pid, port=port, endpoint=f"http://localhost:{port}", started_at="x")
        local_aws.write_json_atomic(local_aws.state_path(root), reused.to_json())
        assert local_aws.status(root).running is False
        assert other.poll() is None  # a process we did not start is never stopped
    finally:
        other.kill()
        other.wait()


@pytest.mark.component  # a real moto server
def test_a_hung_server_is_reported_then_replaced_by_up(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_aws, "HEALTH_TIMEOUT_S", 0.5)
    port = local_aws.free_port()
    # Looks like our moto server (command line) but never answers HTTP.
    hung = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "moto.server", "-p", str(port)], cwd=root
    )
    try:
        state = local_aws.LocalAws(pid=hung.pid, port=port, endpoint=f"http://localhost:{port}", started_at="x")
        local_aws.write_json_atomic(local_aws.state_path(root), state.to_json())
        st = local_aws.status(root)
        assert st.running is False and st.server == state
        assert "does not answer" in st.note and hung.poll() is None  # reported, not killed
        with pytest.raises(CicdError, match="does not answer") as err:
            local_aws.current(root)
        assert err.value.return_code == 3

        fresh = local_aws.up(root, port=0, warm=False)  # an explicit up replaces it
        assert hung.wait(timeout=10) is not None
        # The short timeout was for the hung server: a fresh one on a loaded machine may need more than 0.5 s.
        monkeypatch.setattr(local_aws, "HEALTH_TIMEOUT_S", HEALTH_TIMEOUT_S)
        assert fresh.pid != hung.pid and local_aws.status(root).running
    finally:
        if hung.poll() is None:
            hung.kill()
            hung.wait()


@pytest.mark.component  # a real moto server
def test_a_server_killed_during_a_run_is_a_clear_exit_3(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cdk_cli, "bootstrap", lambda *_a, **_k: None)
    server = local_aws.ensure_bootstrapped(root, local_aws.up(root, port=0, warm=False))
    assert server.is_bootstrapped()
    local_aws.record_deployment(root, "dev", {"digest": "abc"})
    os.kill(server.pid, signal.SIGKILL)
    _wait_gone(server.pid)

    with pytest.raises(CicdError) as err:
        local_aws.current(root)
    assert err.value.return_code == 3
    assert str(err.value) == (
        f"local AWS (moto) on port {server.port} is not running (it stopped during the run): "
        "run `inv local.up` or rerun; state was reset"
    )
    assert not local_aws.state_path(root).exists()
    assert local_aws.read_deployment(root, "dev") is None

    fresh = local_aws.up(root, port=0, warm=False)  # a new server is a new, empty AWS
    assert fresh.pid != server.pid and local_aws.pid_alive(fresh.pid)
    assert not fresh.is_bootstrapped()


def test_current_without_a_server_says_how_to_start_one(root: Path) -> None:
    with pytest.raises(MissingToolError, match=r"not running.*inv local\.up"):
        local_aws.current(root)


def test_configured_port_taken_by_another_program_is_a_usage_error(root: Path) -> None:
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        with pytest.raises(UsageError) as err:
            local_aws.up(root, port=port, warm=False)
    assert err.value.return_code == 2
    assert err.value.message == f"port {port} is in use by another program: set CICD_LOCAL_PORT or stop it"
    assert not local_aws.state_path(root).exists()


def test_foreign_listener_on_the_env_port_is_a_usage_error(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        monkeypatch.setenv(local_aws.PORT_ENV, str(port))
        with pytest.raises(UsageError, match=f"port {port} is in use by another program"):
            local_aws.up(root)


@pytest.mark.parametrize("value", ["abc", "-1", "70000"])
def test_bad_port_setting_is_a_usage_error(root: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(local_aws.PORT_ENV, value)
    with pytest.raises(UsageError, match="CICD_LOCAL_PORT"):
        local_aws.up(root)


def test_state_writes_are_atomic_and_corrupt_state_is_ignored(root: Path) -> None:
    path = local_aws.state_path(root)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert local_aws.status(root).running is False
    local_aws.write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


# --- one shared server: clients, deployment records, bootstrap bookkeeping, reset -------------------------------


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("shared-local-aws")
    saved = os.environ.pop(local_aws.PORT_ENV, None)
    local_aws.up(path, port=0, warm=False)
    yield path
    local_aws.down(path)
    if saved is not None:
        os.environ[local_aws.PORT_ENV] = saved


@pytest.mark.component  # a real moto server
def test_sdk_clients_reach_the_server_through_the_endpoint(shared_root: Path) -> None:
    server = local_aws.current(shared_root)
    s3 = server.session().client("s3", endpoint_url=server.endpoint)
    s3.create_bucket(Bucket="lifecycle-check")
    s3.put_object(Bucket="lifecycle-check", Key="k", Body=b"v")
    assert s3.get_object(Bucket="lifecycle-check", Key="k")["Body"].read() == b"v"
    sts = server.session().client("sts", endpoint_url=server.endpoint)
    assert sts.get_caller_identity()["Account"] == server.account_id
    env = server.environ()
    assert env["AWS_ENDPOINT_URL"] == server.endpoint
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_REGION"] == server.region


@pytest.mark.component  # a real moto server
def test_deployment_records_round_trip(shared_root: Path) -> None:
    root = shared_root
    assert local_aws.read_deployment(root, "preprod") is None
    path = local_aws.record_deployment(
        root, "preprod", {"digest": "d1", "version": "1.2.3", "commit": "abc", "outputs": {"RestApiId": "x"}}
    )
    assert path == root / ".cicd" / "local" / "deployments" / "preprod.json"
    record = local_aws.read_deployment(root, "preprod")
    assert record is not None
    assert record["digest"] == "d1" and record["outputs"] == {"RestApiId": "x"} and record["env"] == "preprod"
    assert record["deployed_at"]
    assert local_aws.read_deployment(root, "prod") is None


@pytest.mark.parametrize("env", ["../etc", "Dev", "", "a/b"])
def test_deployment_record_rejects_bad_environment_names(tmp_path: Path, env: str) -> None:
    with pytest.raises(UsageError):
        local_aws.record_deployment(tmp_path, env, {})


@pytest.mark.component  # a real moto server
def test_bootstrap_runs_once_per_server_then_reset_forgets_it(
    shared_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str | None, str, str]] = []

    def fake_bootstrap(_log: object, *, endpoint: str | None, account: str, region: str) -> None:
        calls.append((endpoint, account, region))

    monkeypatch.setattr(cdk_cli, "bootstrap", fake_bootstrap)
    server = local_aws.current(shared_root)
    first = local_aws.ensure_bootstrapped(shared_root, server)
    again = local_aws.ensure_bootstrapped(shared_root, first)
    assert calls == [(server.endpoint, "123456789012", "us-east-1")]
    assert first.is_bootstrapped() and again.is_bootstrapped()
    assert json.loads(local_aws.state_path(shared_root).read_text())["bootstrapped"] == ["us-east-1"]

    s3 = server.session().client("s3", endpoint_url=server.endpoint)
    s3.create_bucket(Bucket="to-be-reset")
    local_aws.record_deployment(shared_root, "dev", {"digest": "x"})
    fresh = local_aws.reset(shared_root)
    assert fresh.pid == server.pid and not fresh.is_bootstrapped()
    assert s3.list_buckets()["Buckets"] == []
    assert local_aws.read_deployment(shared_root, "dev") is None
    local_aws.ensure_bootstrapped(shared_root, fresh)
    assert len(calls) == 2


# --- the pinned CDK CLI -------------------------------------------------------------------------------------------


@pytest.mark.component  # the project's own package.json and lock
def test_cdk_cli_is_pinned_exactly_and_the_lock_has_no_registry_urls() -> None:
    manifest = json.loads((ROOT / "package.json").read_text())
    assert manifest["private"] is True
    version = manifest["devDependencies"]["aws-cdk"]
    assert re.fullmatch(r"2\.11\d\d\.\d+", version), version
    assert cdk_cli.pinned_version(ROOT) == version
    lock_text = (ROOT / "package-lock.json").read_text()
    lock = json.loads(lock_text)
    assert lock["packages"][""]["devDependencies"]["aws-cdk"] == version
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == version
    assert lock["packages"]["node_modules/aws-cdk"]["integrity"].startswith("sha512-")
    assert '"resolved"' not in lock_text
    assert "://" not in lock_text


def test_a_version_range_in_package_json_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"devDependencies": {"aws-cdk": "^2.1148.0"}}))
    with pytest.raises(ConfigError, match="exact version"):
        cdk_cli.pinned_version(tmp_path)


def test_cdk_env_points_at_the_endpoint_quietly() -> None:
    env = cdk_cli.cdk_env("http://localhost:4566", region="eu-west-1")
    assert env["AWS_ENDPOINT_URL"] == "http://localhost:4566"
    assert env["AWS_ACCESS_KEY_ID"] == "testing" and env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["CDK_DISABLE_VERSION_CHECK"] == "true"
    assert env["CDK_DISABLE_CLI_TELEMETRY"] == "true"
    assert env["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] == "1"
    assert "localhost" in env["NO_PROXY"]
    real = cdk_cli.cdk_env(None)
    assert "AWS_ENDPOINT_URL" not in real and "AWS_ACCESS_KEY_ID" not in real


def test_missing_node_is_exit_3_with_a_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setattr(command, "venv_bin", lambda: empty)
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(MissingToolError) as err:
        cdk_cli.find_node()
    assert err.value.return_code == 3
    assert "Node.js >= 20" in str(err.value) and "uv sync" in str(err.value)


@pytest.mark.component  # runs node or a stand-in CDK CLI
def test_an_old_system_node_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("node", "npm"):
        script = fake / name
        script.write_text("#!/bin/sh\necho v18.19.0\n")
        script.chmod(0o755)
    monkeypatch.setattr(command, "venv_bin", lambda: tmp_path / "no-venv")
    monkeypatch.setenv("PATH", str(fake))
    monkeypatch.chdir(tmp_path)  # the stand-in runs outside the checkout: the test depends on what it runs only
    with pytest.raises(MissingToolError, match="Node 18"):
        cdk_cli.find_node()


_FAKE_NODE = """#!/bin/sh
# Stands in for node running the CDK CLI: records its arguments and environment, writes an outputs file.
printf '%s\\n' "$@" > "$FAKE_CDK_RECORD.args"
env > "$FAKE_CDK_RECORD.env"
pwd > "$FAKE_CDK_RECORD.cwd"
prev=""
for arg in "$@"; do
  if [ "$prev" = "--outputs-file" ]; then echo '{"Tiny": {"RestApiId": "abc123"}}' > "$arg"; fi
  prev="$arg"
done
echo "fake cdk done"
"""


@pytest.fixture
def fake_cdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    node = tmp_path / "fake-bin" / "node"
    node.parent.mkdir()
    node.write_text(_FAKE_NODE)
    node.chmod(0o755)
    record = tmp_path / "record"
    monkeypatch.setenv("FAKE_CDK_RECORD", str(record))
    monkeypatch.setattr(cdk_cli, "find_node", lambda: (node, node))
    monkeypatch.setattr(cdk_cli, "ensure_cdk", lambda *_a, **_k: tmp_path / "cdk")
    return record


@pytest.mark.component  # runs node or a stand-in CDK CLI
def test_deploy_runs_the_pinned_cli_with_the_local_flags(tmp_path: Path, fake_cdk: Path, make_ctx: Any) -> None:
    assembly = tmp_path / "cdk.out"
    assembly.mkdir()
    (assembly / "manifest.json").write_text("{}")
    ctx = make_ctx(root=tmp_path, step="deploy", env="dev")  # a checkout of its own: the stand-in runs in it
    outputs = cdk_cli.deploy(
        ctx,
        assembly,
        "Tiny",
        endpoint="http://localhost:4999",
        outputs_file=tmp_path / "out" / "outputs.json",
        root=tmp_path,
    )
    assert outputs == {"RestApiId": "abc123"}
    args = fake_cdk.with_suffix(".args").read_text().splitlines()
    assert args[0] == str(cdk_cli.cdk_script(tmp_path))
    assert fake_cdk.with_suffix(".cwd").read_text().strip() == str(tmp_path)
    assert args[1:5] == ["deploy", "--app", str(assembly.resolve()), "Tiny"]
    joined = " ".join(args)
    for flag in ("--require-approval never", "--no-notices", "--ci", "--progress events", "--method=direct"):
        assert flag in joined
    assert f"--outputs-file {(tmp_path / 'out' / 'outputs.json').resolve()}" in joined
    env = dict(line.split("=", 1) for line in fake_cdk.with_suffix(".env").read_text().splitlines() if "=" in line)
    assert env["AWS_ENDPOINT_URL"] == "http://localhost:4999"
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["CDK_DISABLE_CLI_TELEMETRY"] == "true"
    assert "fake cdk done" in ctx.log_path.read_text()  # the output went to the step log


@pytest.mark.component  # runs node or a stand-in CDK CLI
def test_deploy_to_real_aws_uses_change_sets(tmp_path: Path, fake_cdk: Path) -> None:
    assembly = tmp_path / "cdk.out"
    assembly.mkdir()
    (assembly / "manifest.json").write_text("{}")
    cdk_cli.deploy(io.StringIO(), assembly, "Tiny", endpoint=None, outputs_file=tmp_path / "o.json", root=tmp_path)
    args = fake_cdk.with_suffix(".args").read_text().splitlines()
    assert "--method=direct" not in args


@pytest.mark.component  # runs node or a stand-in CDK CLI
def test_bootstrap_targets_the_moto_account_outside_the_project(tmp_path: Path, fake_cdk: Path) -> None:
    log = io.StringIO()
    cdk_cli.bootstrap(log, endpoint="http://localhost:4999", account="123456789012", region="us-east-1", root=tmp_path)
    args = fake_cdk.with_suffix(".args").read_text().splitlines()
    assert args[1:3] == ["bootstrap", "aws://123456789012/us-east-1"]
    assert fake_cdk.with_suffix(".cwd").read_text().strip() == str(tmp_path / ".cicd" / "local")
    assert "fake cdk done" in log.getvalue()


@pytest.mark.slow
def test_ensure_cdk_installs_the_locked_cli_into_a_fresh_checkout(tmp_path: Path) -> None:
    for name in ("package.json", "package-lock.json"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    log = io.StringIO()
    binary = cdk_cli.ensure_cdk(tmp_path, log=log)
    assert binary == tmp_path / "node_modules" / ".bin" / "cdk" and binary.exists()
    assert "npm ci" in log.getvalue() or "ci --no-audit" in log.getvalue()
    installed = json.loads((tmp_path / "node_modules" / "aws-cdk" / "package.json").read_text())
    assert installed["version"] == cdk_cli.pinned_version(ROOT)
    second = io.StringIO()
    assert cdk_cli.ensure_cdk(tmp_path, log=second) == binary
    assert second.getvalue() == ""  # already installed: no npm run


def test_deploy_refuses_a_folder_that_is_not_an_assembly(tmp_path: Path) -> None:
    with pytest.raises(CicdError, match="not a synthesized cloud assembly"):
        cdk_cli.deploy(None, tmp_path, "S", endpoint="http://localhost:1", outputs_file=tmp_path / "o.json")


# --- end to end: the real CDK CLI against the server, then the served API ------------------------------------------

_TINY_APP = textwrap.dedent(
    """
    import sys
    import aws_cdk as cdk
    from aws_cdk import aws_apigateway as apigw, aws_lambda as lambda_, aws_s3 as s3

    app = cdk.App(outdir=sys.argv[1])
    stack = cdk.Stack(app, "Tiny", synthesizer=cdk.CliCredentialsStackSynthesizer())
    bucket = s3.Bucket(stack, "Data")
    fn = lambda_.Function(
        stack, "Fn", runtime=lambda_.Runtime.PYTHON_3_11, handler="tiny.app.handler",
        code=lambda_.Code.from_asset(sys.argv[2]), environment={"BUCKET": bucket.bucket_name},
    )
    api = apigw.LambdaRestApi(stack, "Api", handler=fn, proxy=False, cloud_watch_role=False)
    api.root.add_resource("health").add_method("GET")
    api.root.add_resource("apk").add_resource("{version}").add_method("GET")
    cdk.CfnOutput(stack, "RestApiId", value=api.rest_api_id)
    cdk.CfnOutput(stack, "FunctionName", value=fn.function_name)
    app.synth()
    """
)

_TINY_HANDLER = textwrap.dedent(
    """
    import json, os
    import boto3

    def handler(event, context):
        names = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
        body = {"resource": event["resource"], "params": event["pathParameters"],
                "bucket": os.environ["BUCKET"], "bucket_exists": os.environ["BUCKET"] in names}
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
    """
)


@pytest.mark.slow
def test_cdk_deploy_of_a_synthesized_assembly_to_moto_then_serve_it(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "tiny").mkdir(parents=True)
    (code / "tiny" / "__init__.py").write_text("")
    (code / "tiny" / "app.py").write_text(_TINY_HANDLER)
    assembly = tmp_path / "cdk.out"
    env = {**os.environ, "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1", "CDK_DISABLE_VERSION_CHECK": "1"}
    env["PATH"] = os.pathsep.join([str(command.venv_bin()), env.get("PATH", "")])
    synth = subprocess.run(
        [sys.executable, "-c", _TINY_APP, str(assembly), str(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert synth.returncode == 0, synth.stderr[-2000:]
    assert (assembly / "manifest.json").is_file()

    binary = cdk_cli.ensure_cdk(ROOT)
    assert binary == ROOT / "node_modules" / ".bin" / "cdk"
    version = subprocess.run(
        [str(cdk_cli.find_node()[0]), str(cdk_cli.cdk_script(ROOT)), "--version"],
        capture_output=True,
        text=True,
        env={**env, **cdk_cli.cdk_env(None)},
        check=True,
    ).stdout
    assert version.startswith(cdk_cli.pinned_version(ROOT))

    root = tmp_path / "project"
    root.mkdir()
    try:
        server = local_aws.up(root, port=0, warm=False)
        log = io.StringIO()
        server = local_aws.ensure_bootstrapped(root, server, log=log)
        assert server.is_bootstrapped()
        assert "bootstrapped" in log.getvalue()
        outputs = cdk_cli.deploy(
            log, assembly, "Tiny", endpoint=server.endpoint, outputs_file=tmp_path / "outputs.json"
        )
        assert "--method=direct" in log.getvalue()
        assert "Unknown option" not in log.getvalue()
        assert set(outputs) >= {"RestApiId", "FunctionName"}

        url = local_api.serve_environment(root, "dev", "Tiny")
        with urllib.request.urlopen(url + "apk/1.0.7") as resp:  # noqa: S310 - local server
            body = json.loads(resp.read())
        assert body == {
            "resource": "/apk/{version}",
            "params": {"version": "1.0.7"},
            "bucket": body["bucket"],
            "bucket_exists": True,
        }
        assert body["bucket"].startswith("tiny-data")
        states = local_api.list_apis(root)
        assert [(s.env, s.rest_api_id, s.alive) for s in states] == [("dev", outputs["RestApiId"], True)]
    finally:
        local_aws.down(root)
