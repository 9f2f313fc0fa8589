"""Bad input: each case runs the real command and gets one line naming the problem and the fix, the contract's exit
code, no traceback, and no environment changed.

Most cases run in one copy where the pipeline ran once (dev, preprod and prod deployed on a local AWS) and compare
what the environments run before and after (:meth:`Project.snapshot`: the local AWS, each stack's status and
artifact digest, each environment's ``/health`` and its deploy history). Cases that need no deployment, or need
the absence of one, use a fresh copy. The cases that change environments on purpose (two deploys at once, Ctrl-C,
a killed local AWS) run last and assert what must hold instead.

Missing programs: ``cicd.command.which`` always searches the interpreter's own ``bin`` folder (where ``uv sync``
puts node, npm and gitleaks), so those cases run ``python -m invoke`` from a *shadow* virtual environment that
lacks the program, with a PATH holding only git (:func:`harness.shadow_venv`); the CDK CLI is hidden by moving
``node_modules`` away with npm forced offline onto an empty cache; Flutter is absent from the machine and from the
PATH the case sets.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests import harness
from tests.harness import ENVIRONMENTS, Project, assert_one_line_error, tail

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployed(deployed_project: Project) -> Project:
    return deployed_project


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    from cicd.sandbox import copy_project

    project = Project(copy_project(tmp_path_factory.mktemp("fresh") / "project", share_node_modules=True))
    try:
        yield project
    finally:
        project.down()


@contextlib.contextmanager
def unchanged(project: Project) -> Iterator[dict[str, Any]]:
    """Assert that what every environment runs is the same after the block as before it."""
    before = project.snapshot()
    yield before
    assert project.snapshot() == before


@contextlib.contextmanager
def edited(path: Path, text: str) -> Iterator[None]:
    original = path.read_bytes()
    path.write_text(text, encoding="utf-8")
    try:
        yield
    finally:
        path.write_bytes(original)


def run_count(project: Project) -> int:
    runs = project.runs()
    return len([p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]) if runs.is_dir() else 0


def assert_step_failed(
    proc: subprocess.CompletedProcess[str], project: Project, node: str, code: int, *needles: str
) -> str:
    """The contract for a step that fails: exit code, its reason names problem and fix, on one line of the
    terminal exactly as in report.json, what needs it did not run, no traceback."""
    assert proc.returncode == code, tail(proc)
    harness.no_traceback(proc)
    rows = project.rows()
    reason = str(rows[node]["reason"])
    assert rows[node]["status"] == "failed", rows[node]
    for needle in needles:
        assert needle in reason, (needle, reason)
    assert f"✗ {node} failed: {reason}" in proc.stdout.splitlines(), tail(proc)
    for later in harness.downstream(node, rows):
        assert rows[later]["status"] == "not-run", rows[later]
    return reason


# ---------------------------------------------------------------------------------------------------- usage
@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (("deploy", "--env", "qa"), 2, ("unknown environment 'qa'", "choose one of: dev, preprod, prod")),
        (("integration-test",), 2, ("this task needs --env", "choose one of: dev, preprod, prod")),
        (("pipeline", "--from", "nope"), 2, ("unknown step 'nope'", "choose one of:")),
        (("pipeline", "--from", "deploy:qa"), 2, ("does not run in environment 'qa'", "it runs in: dev")),
        (("pipeline", "--jobs", "0"), 2, ("--jobs must be at least 1", "omit it")),
        (("pipeline", "--jobs", "many"), 2, ("--jobs must be a whole number", "e.g. --jobs 2")),
        (("pipeline", "--target", "gcp"), 2, ("unknown target 'gcp'", "choose one of: local, aws")),
        (("deploy", "--env", "dev", "--target", "aws"), 2, ("'dev' has no account for the aws target", 'account = "')),
        (("rollback", "--env", "prod", "--bogus"), 2, ("--bogus", "inv --help")),
    ],
    ids=[
        "unknown-environment",
        "missing-env",
        "unknown-step",
        "unknown-step-environment",
        "jobs-zero",
        "jobs-not-a-number",
        "unknown-target",
        "aws-without-account",
        "unknown-option",
    ],
)
def test_bad_usage(deployed: Project, args: tuple[str, ...], code: int, needles: tuple[str, ...]) -> None:
    runs = run_count(deployed)
    with unchanged(deployed):
        assert_one_line_error(deployed.inv(*args), code, *needles)
    assert run_count(deployed) == runs  # refused before anything ran


# ---------------------------------------------------------------------------------------------------- configuration
AWS_ACCOUNTS = "".join(
    f'\n[tool.cicd.environments.{env}]\naccount = "123456789012"\nregion = "eu-west-1"\n' for env in ENVIRONMENTS
)


@pytest.mark.parametrize(
    ("append", "needles"),
    [
        ("\n[tool.cicd\n", ("is not valid TOML", "fix the syntax at that line")),
        ("\n[tool.cicd.x]\n", ("unknown key [tool.cicd] x", "valid keys:")),
        ('\n[tool.cicd.environments]\nstaging = {region = "eu-west-1"}\n', ("staging", "exactly dev, preprod, prod")),
        (
            '\n[tool.cicd.environments.prod]\nregion = ""\n',
            ("[tool.cicd.environments.prod] region is not an AWS region name", 'e.g. region = "eu-west-1"'),
        ),
        (
            "\n[tool.cicd.environments.dev]\nurl_ttl_max = 999999\n",
            ("url_ttl_max must be at most 604800", "presigned URLs cannot live longer"),
        ),
    ],
    ids=["toml-syntax", "unknown-key", "unknown-environment", "empty-region", "url-lifetime-above-7-days"],
)
def test_malformed_tool_cicd_is_refused_before_any_step(
    deployed: Project, append: str, needles: tuple[str, ...]
) -> None:
    pyproject = deployed.root / "pyproject.toml"
    runs = run_count(deployed)
    with (
        unchanged(deployed),
        edited(pyproject, pyproject.read_text(encoding="utf-8").replace("[tool.cicd]\n", "", 1) + append),
    ):
        assert_one_line_error(deployed.pipeline(), 2, *needles)
    assert run_count(deployed) == runs


def test_wrong_type_in_tool_cicd(deployed: Project) -> None:
    pyproject = deployed.root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8").replace("[tool.cicd]\n", '[tool.cicd]\nlocal_port = "4566"\n', 1)
    with unchanged(deployed), edited(pyproject, text):
        assert_one_line_error(deployed.inv("local.up"), 2, "local_port must be an integer", "fix the value's type")


def test_aws_target_without_credentials(deployed: Project, tmp_path: Path) -> None:
    pyproject = deployed.root / "pyproject.toml"
    no_credentials = dict.fromkeys(("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ROLE_ARN"), "")
    runs = run_count(deployed)
    with unchanged(deployed), edited(pyproject, pyproject.read_text(encoding="utf-8") + AWS_ACCOUNTS):
        proc = deployed.inv(*harness.PIPELINE, "--target", "aws", env={**no_credentials, "HOME": str(tmp_path)})
        assert_one_line_error(proc, 3, "no AWS credentials for the aws target", "aws sso login")
    assert run_count(deployed) == runs


# ---------------------------------------------------------------------------------------------------- rerun
@contextlib.contextmanager
def latest_report(project: Project, content: str | None) -> Iterator[None]:
    """Point ``.cicd/runs/latest`` at a run folder whose report.json is ``content`` (None: no report)."""
    runs = project.runs()
    link = runs / "latest"
    previous = link.readlink() if link.is_symlink() else None
    fake = runs / "fake-run"
    fake.mkdir(parents=True)
    if content is not None:
        (fake / "report.json").write_text(content, encoding="utf-8")
    link.unlink(missing_ok=True)
    link.symlink_to(fake.name)
    try:
        yield
    finally:
        link.unlink()
        if previous is not None:
            link.symlink_to(previous)
        shutil.rmtree(fake)


ROW = {"env": None, "duration_s": 1, "reason": "x", "log": None, "rerun": "uv run inv lint"}


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (None, ("no run report at", "run `inv pr-checks` or `inv pipeline` first")),
        ('{"steps": [', ("is unreadable (JSONDecodeError)", "delete it and start a new run")),
        ("[1, 2]", ("is not a pipeline report", "delete it and start a new run")),
        ('{"steps": [1]}', ("the last run report is malformed", "start a new run")),
        (
            json.dumps({"target": "local", "steps": [{**ROW, "name": "bogus", "status": "failed"}]}),
            ("unknown step 'bogus'", "choose one of:"),
        ),
        (
            json.dumps({"target": "gcp", "steps": [{**ROW, "name": "lint", "status": "failed"}]}),
            ("unknown target 'gcp'", "choose one of: local, aws"),
        ),
    ],
    ids=["missing", "corrupt", "not-a-report", "malformed-row", "unknown-step", "unknown-target"],
)
def test_rerun_with_a_missing_or_corrupt_report(
    deployed: Project, content: str | None, needles: tuple[str, ...]
) -> None:
    runs = run_count(deployed)
    with unchanged(deployed), latest_report(deployed, content):
        assert_one_line_error(deployed.inv("rerun"), 2, *needles)
    assert run_count(deployed) == runs


# ---------------------------------------------------------------------------------------------------- delivery
def test_promote_with_no_passed_artifact(fresh: Project) -> None:
    proc = fresh.inv("promote", "--to", "preprod")
    assert_step_failed(proc, fresh, "promote:preprod", 1, "no artifact was handed to this job", "the dev job handed on")
    assert fresh.server() is None and fresh.snapshot()["history"] == {env: [] for env in ENVIRONMENTS}


def test_integration_test_of_an_environment_never_deployed(fresh: Project) -> None:
    proc = fresh.inv("integration-test", "--env", "prod")
    assert_step_failed(
        proc, fresh, "integration-test:prod", 1, "prod has no recorded deployment", "run `inv deploy --env prod`"
    )
    assert fresh.server() is None


def test_rollback_with_nothing_earlier_to_roll_back_to(fresh: Project) -> None:
    proc = fresh.inv("rollback", "--env", "prod")
    assert_step_failed(
        proc, fresh, "rollback:prod", 1, "no earlier artifact passed in prod", "deploy a fixed build instead"
    )
    assert fresh.server() is None


def test_build_version_that_is_not_a_version_stops_the_package(deployed: Project) -> None:
    # synth comes from the step cache (it does not depend on the version), so package is the step that must refuse
    with unchanged(deployed):
        proc = deployed.pipeline(env={"CICD_BUILD_VERSION": "banana"})
        assert deployed.rows()["synth"]["status"] == "cached"
        assert_step_failed(
            proc, deployed, "package", 2, "build version 'banana' is not MAJOR.MINOR.PATCH", "CICD_BUILD_VERSION=1.2.3"
        )


def tamper(folder: Path, how: str) -> str:
    """Change one artifact file the way ``how`` says; returns the file's path inside the artifact."""
    template = next((folder / "cdk.out").rglob("*.template.json"))
    rel = template.relative_to(folder).as_posix()
    if how == "modified":
        template.write_text(template.read_text(encoding="utf-8") + " ", encoding="utf-8")
    elif how == "removed":
        template.unlink()
    else:
        (folder / "cdk.out" / "extra.json").write_text("{}", encoding="utf-8")
        rel = "cdk.out/extra.json"
    return rel


@pytest.mark.parametrize(
    ("how", "problem"),
    [("modified", "no longer matches its sha256"), ("removed", "is missing"), ("added", "was added")],
)
def test_tampered_ci_artifact_is_refused_before_deploying(deployed: Project, how: str, problem: str) -> None:
    staged = deployed.stage_ci_artifact("0.1.900")
    rel = tamper(staged.path, how)
    try:
        with unchanged(deployed):
            proc = deployed.inv("deploy", "--env", "dev")
            assert_step_failed(
                proc,
                deployed,
                "deploy:dev",
                1,
                f"artifact {staged.short} was tampered with: {rel} {problem}",
                "package again",
            )
    finally:
        shutil.rmtree(staged.path)


def test_tampered_stored_artifact_is_not_promoted(deployed: Project) -> None:
    stored = deployed.last_passed("dev")  # what promote --to preprod picks
    template = next(stored.assembly.rglob("*.template.json"))
    original = template.read_bytes()
    template.write_bytes(original.replace(b'"Type"', b'"Type" ', 1))
    try:
        with unchanged(deployed):
            proc = deployed.inv("promote", "--to", "preprod")
            assert_step_failed(
                proc, deployed, "promote:preprod", 1, f"artifact {stored.short} was tampered with", "package again"
            )
    finally:
        template.write_bytes(original)


# ---------------------------------------------------------------------------------------------------- state folder
def test_cicd_folder_replaced_by_a_file(fresh: Project) -> None:
    state = fresh.root / ".cicd"
    aside = fresh.root / ".cicd-aside"
    if state.exists():
        state.rename(aside)
    state.write_text("a file where the pipeline keeps its state")
    try:
        proc = fresh.inv("lint")
        assert_one_line_error(proc, 2, "cannot write the run folder .cicd/runs/", "make .cicd/ writable")
    finally:
        state.unlink()
        if aside.exists():
            aside.rename(state)


def test_deploy_lock_folder_replaced_by_a_file(deployed: Project) -> None:
    locks = deployed.root / ".cicd" / "locks"
    aside = deployed.root / ".cicd" / "locks-aside"
    locks.rename(aside)
    locks.write_text("a file where the deploy locks go")
    try:
        with unchanged(deployed):
            staged = deployed.stage_ci_artifact("0.1.901")
            proc = deployed.inv("deploy", "--env", "dev")
            assert_step_failed(proc, deployed, "deploy:dev", 2, "cannot write .cicd/locks", "make .cicd/ writable")
            shutil.rmtree(staged.path)
    finally:
        locks.unlink()
        aside.rename(locks)


def test_corrupt_cache_entry_is_ignored_and_rebuilt(deployed: Project) -> None:
    first = deployed.inv("lint")  # passed now, or served from the entry an earlier run stored
    assert first.returncode == 0, tail(first)
    key = str(deployed.rows()["lint"]["details"]["cache_key"])
    entry = deployed.root / ".cicd" / "cache" / "steps" / key[:2] / key
    assert (entry / "result.json").is_file(), sorted(p.name for p in entry.parent.glob("*"))
    for corrupt, problem in (
        (lambda: (entry / "result.json").write_text("{not json", encoding="utf-8"), "is corrupt"),
        ((entry / "outputs" / "reports" / "ruff.sarif").unlink, "output reports/ruff.sarif missing"),
    ):
        corrupt()
        with unchanged(deployed):
            proc = deployed.inv("lint")
        assert proc.returncode == 0, tail(proc)
        harness.no_traceback(proc)
        warning = next(line for line in proc.stdout.splitlines() if line.startswith("warning: cache entry"))
        assert problem in warning and "ignored and rebuilt" in warning, warning
        assert deployed.rows()["lint"]["status"] == "passed"  # run again, not served from the broken entry
        rebuilt = json.loads((entry / "result.json").read_text(encoding="utf-8"))
        assert rebuilt["run_id"] == deployed.report()["run_id"]
    again = deployed.inv("lint")
    assert again.returncode == 0 and deployed.rows()["lint"]["status"] == "cached"


# ---------------------------------------------------------------------------------------------------- tools
@pytest.fixture(scope="module")
def git_only(tmp_path_factory: pytest.TempPathFactory) -> str:
    return harness.system_path(tmp_path_factory.mktemp("system-bin"))


def test_gitleaks_missing(deployed: Project, tmp_path: Path, git_only: str) -> None:
    bin_dir = harness.shadow_venv(tmp_path / "venv", without={"gitleaks"})
    with unchanged(deployed):
        # --no-cache: the shared copy's earlier runs cached a pass, which needs no gitleaks to serve
        proc = harness.run_without(deployed, bin_dir, git_only, "secrets-scan", "--no-cache")
        assert_step_failed(
            proc, deployed, "secrets-scan", 3, "required tool 'gitleaks' was not found on PATH", "uv sync"
        )


def test_flutter_missing(deployed: Project, git_only: str) -> None:
    env = {"PATH": git_only}
    with unchanged(deployed):
        skipped = deployed.inv("flutter-build", env=env)
        assert skipped.returncode == 0, tail(skipped)
        row = deployed.rows()["flutter-build"]
        assert row["status"] == "skipped" and "Flutter SDK not on PATH" in row["reason"]
        required = deployed.inv("flutter-build", env={**env, "CICD_REQUIRE_FLUTTER": "1"})
        assert_step_failed(
            required,
            deployed,
            "flutter-build",
            3,
            "Flutter SDK",
            "install the Flutter SDK or unset CICD_REQUIRE_FLUTTER",
        )


def test_node_missing(deployed: Project, tmp_path: Path, git_only: str) -> None:
    bin_dir = harness.shadow_venv(tmp_path / "venv", without={"node", "npm", "npx", "corepack"})
    staged = deployed.stage_ci_artifact("0.1.902")  # a new artifact: deploying it needs the CDK CLI, so Node.js
    try:
        with unchanged(deployed):
            proc = harness.run_without(deployed, bin_dir, git_only, "deploy", "--env", "dev")
            assert_step_failed(proc, deployed, "deploy:dev", 3, "the CDK CLI needs Node.js >= 20", "uv sync")
    finally:
        shutil.rmtree(staged.path)


def test_cdk_cli_missing_and_not_installable(deployed: Project, tmp_path: Path) -> None:
    modules = deployed.root / "node_modules"  # the installed CDK CLI (a link to the checkout's, or its own)
    aside = deployed.root / "node_modules-aside"
    modules.rename(aside)
    staged = deployed.stage_ci_artifact("0.1.903")
    offline = {
        "npm_config_offline": "true",
        "npm_config_cache": str(tmp_path / "empty-npm-cache"),
        "npm_config_registry": "http://127.0.0.1:9/",
    }
    try:
        with unchanged(deployed):
            proc = deployed.inv("deploy", "--env", "dev", env=offline)
            assert_step_failed(
                proc,
                deployed,
                "deploy:dev",
                3,
                "could not install the CDK CLI (aws-cdk",
                "check that the npm registry is reachable",
            )
    finally:
        shutil.rmtree(modules, ignore_errors=True)  # what the failed npm ci left
        aside.rename(modules)
        shutil.rmtree(staged.path)


def test_local_aws_port_already_taken(fresh: Project) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = fresh.inv("local.up", env={"CICD_LOCAL_PORT": str(port)})
        assert_one_line_error(
            proc, 2, f"port {port} is in use by another program: set CICD_LOCAL_PORT or stop it", "CICD_LOCAL_PORT=0"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the program holding the port was left alone
    assert fresh.server() is None
    assert_one_line_error(
        fresh.inv("local.up", env={"CICD_LOCAL_PORT": "http"}), 2, "is not a port number", "use 1-65535"
    )


# ---------------------------------------------------------------------------------------------------- the API
ABSURD = [
    "/apk/latest?expires=99999999999999999999999999999999",
    "/apk/latest?expires=-1",
    "/apk/latest?expires=0",
    "/apk/latest?expires=1e3",
    "/apk/latest?expires=0x10",
    "/apk/latest?expires=%00",
    "/apk/latest?expires=%E2%80%8B120",
    "/apk/latest?expires=%EF%BC%91%EF%BC%92%EF%BC%90",
    "/apk/latest?expires=3601",
    "/apk/latest?expires=60&expires=120",
    "/apk/latest?expires[]=1",
    "/apk/latest?%ZZ=%ZZ&%=%",
    "/apk/latest?&&&==&=&",
    "/apk/latest?" + "&".join(f"p{i}={i}" for i in range(2000)),
    "/apk/latest?x=" + "A" * 8000,
    "/apk/latest?expires=" + "9" * 5000,
    "/apk/latest?expires=%F0%9F%92%A3&name=%F0%9F%92%A3",
    "/apk/%2e%2e/%2e%2e/etc/passwd",
    "/apk/1.2.3%00",
    "/apk/99999999999999999999999.0.0",
    "/apk/" + "9" * 3000,
    "/health?debug=true&verbose=1",
]


def test_absurd_query_strings_never_get_a_5xx(deployed: Project) -> None:
    url = deployed.api_url("dev")
    assert url
    with unchanged(deployed):
        for path in ABSURD:
            status, body = harness.http_get(url.rstrip("/") + path)
            assert 200 <= status < 500, (path[:120], status, body)
            text = json.dumps(body)
            assert "Traceback" not in text and "raw" not in body, (path[:120], body)
            if status >= 400:
                assert body.get("message") or body.get("error"), (path[:120], body)


def test_presigned_url_lifetime_is_bounded_by_the_configured_maximum(deployed: Project) -> None:
    url = deployed.api_url("dev")
    assert url
    status, body = harness.http_get(url + "apk/latest?expires=3600")
    assert status == 200, body  # the baseline's integration test published an APK in dev
    assert parse_qs(urlsplit(body["url"]).query)["X-Amz-Expires"] == ["3600"]
    status, body = harness.http_get(url + "apk/latest?expires=3601")
    assert status == 400 and "3600" in body["message"], body


# ---------------------------------------------------------------------------------------------------- concurrency
def test_deploy_lock_timeout_refuses_to_deploy(deployed: Project) -> None:
    staged = deployed.stage_ci_artifact("0.1.904")
    try:
        with unchanged(deployed), harness.lock_held(deployed.root / ".cicd" / "locks" / "local-dev.lock"):
            proc = deployed.inv("deploy", "--env", "dev", env={"CICD_DEPLOY_LOCK_TIMEOUT": "1"})
            assert_step_failed(
                proc,
                deployed,
                "deploy:dev",
                1,
                "another deploy to dev (pid of another deploy) still runs after 1 s",
                "raise CICD_DEPLOY_LOCK_TIMEOUT",
            )
            assert "waiting for it to finish" in proc.stderr
    finally:
        shutil.rmtree(staged.path)


def test_two_deploys_to_one_environment_never_both_deploy(deployed: Project, tmp_path: Path) -> None:
    staged = deployed.stage_ci_artifact("0.1.905")
    before = deployed.deploys("dev")
    others = {env: deployed.snapshot()["health"][env] for env in ("preprod", "prod")}
    outputs = [tmp_path / "first.out", tmp_path / "second.out"]
    with harness.lock_held(deployed.root / ".cicd" / "locks" / "local-dev.lock"):
        procs = [deployed.start("deploy", "--env", "dev", output=out) for out in outputs]
        try:
            harness.wait_for(
                lambda: all("waiting for it to finish" in out.read_text(errors="replace") for out in outputs),
                timeout=120,
                what="both deploys to say they wait for the lock",
            )
            assert all(p.poll() is None for p in procs)
            assert deployed.deploys("dev") == before  # neither deployed while the lock was held
        except BaseException:
            for p in procs:
                os.killpg(p.pid, signal.SIGTERM)
            raise
    codes = [p.wait(timeout=600) for p in procs]
    texts = [out.read_text(errors="replace") for out in outputs]
    assert codes == [0, 0], texts
    assert deployed.deploys("dev") == [*before, staged.digest]  # exactly one deploy
    reasons = sorted("deployed artifact" if "deployed artifact" in t else "already runs" for t in texts)
    assert reasons == ["already runs", "deployed artifact"], texts
    assert deployed.version("dev") == "0.1.905"
    assert {env: deployed.health(env) for env in others} == others


def interrupt_during_deploy(project: Project, output: Path, sig: signal.Signals) -> tuple[int, Path]:
    """Start a pipeline of a new commit and send ``sig`` to its process group while the CDK CLI deploys dev."""
    proc, run_dir = project.start_until_deploying(output)
    os.killpg(proc.pid, sig)
    return proc.wait(timeout=300), run_dir


def test_ctrl_c_during_a_deploy_then_rerun_completes(deployed: Project, tmp_path: Path) -> None:
    before = deployed.snapshot()
    code, run_dir = interrupt_during_deploy(deployed, tmp_path / "pipeline.out", signal.SIGINT)
    text = (tmp_path / "pipeline.out").read_text(errors="replace")
    assert code == 1, text
    assert "Traceback" not in text
    deployed.wait_for_processes_to_end(run_dir, timeout=10)  # the CDK CLI was stopped with the run
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    rows = {(r["name"] + (f":{r['env']}" if r["env"] else "")): r for r in report["steps"]}
    assert report["status"] == "failed"
    assert rows["deploy:dev"]["status"] == "failed" and rows["deploy:dev"]["reason"] == "interrupted by Ctrl-C"
    for node in harness.downstream("deploy:dev", rows):
        assert rows[node]["status"] == "not-run" and "interrupted by Ctrl-C" in rows[node]["reason"]
    after = deployed.snapshot()
    for env in ("preprod", "prod"):
        assert after["health"][env] == before["health"][env]
        assert after["history"][env] == before["history"][env]
    rerun = deployed.inv("rerun")
    assert rerun.returncode == 0, tail(rerun)
    rows = deployed.rows()
    assert "deploy:dev" in rows and "package" not in rows  # only what failed or did not run
    version = deployed.version("dev")
    assert deployed.versions() == dict.fromkeys(ENVIRONMENTS, version) and version != before["health"]["dev"]["version"]


def test_sigterm_from_a_cancelled_ci_job_stops_the_run_and_writes_the_report(deployed: Project, tmp_path: Path) -> None:
    output = tmp_path / "sast.out"
    proc = deployed.start("sast", "--no-cache", output=output)
    harness.wait_for(
        lambda: (
            (deployed.runs() / "latest" / "logs" / "sast.log").is_file()
            and "+ bandit" in (deployed.runs() / "latest" / "logs" / "sast.log").read_text(errors="replace")
        ),
        timeout=120,
        what="sast to start",
    )
    run_dir = deployed.run_dir()
    with unchanged(deployed):
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 1, output.read_text(errors="replace")
    assert "Traceback" not in output.read_text(errors="replace")
    deployed.wait_for_processes_to_end(run_dir, timeout=10)
    row = deployed.rows()["sast"]
    assert deployed.run_dir() == run_dir and row["status"] == "failed" and row["reason"] == "interrupted by SIGTERM"


def test_local_aws_killed_mid_deploy_then_the_next_run_recovers(deployed: Project, tmp_path: Path) -> None:
    server = deployed.server()
    assert server is not None
    output = tmp_path / "pipeline.out"
    proc, _ = deployed.start_until_deploying(output)
    os.kill(server["pid"], signal.SIGKILL)
    code = proc.wait(timeout=600)
    text = output.read_text(errors="replace")
    assert code == 3, text
    assert "Traceback" not in text
    rows = deployed.rows()
    reason = rows["deploy:dev"]["reason"]
    assert rows["deploy:dev"]["status"] == "failed"
    assert f"local AWS (moto) on port {server['port']} is not running (it stopped during the run)" in reason
    assert "run `inv local.up` or rerun" in reason and f"✗ deploy:dev failed: {reason}" in text
    for node in harness.downstream("deploy:dev", rows):
        assert rows[node]["status"] == "not-run"
    recovered = deployed.pipeline()
    assert recovered.returncode == 0, tail(recovered)
    restarted = deployed.server()
    assert restarted is not None and restarted["pid"] != server["pid"]
    versions = deployed.versions()
    assert None not in versions.values() and len(set(versions.values())) == 1, versions
