"""Fault injection: a failure at each stage of the trunk pipeline, in a copy where the pipeline ran once.

Each test injects one fault, runs the pipeline, and asserts from report.json and from every environment's
``/health``, stack and deploy history that nothing downstream of the failure ran, production still serves the
build it served before, and an environment whose post-deploy tests (or deploy) failed was rolled back to its last
good artifact; then it removes the fault and asserts that the next pipeline completes. The tests run in file
order, each starting from where the previous one's recovery left the environments.

Cost: the deployed copy is shared with the bad-input suite and each run reuses its step cache, so only what a
fault changes runs again. The runs start at ``synth`` (:data:`harness.PIPELINE`): the checks before it touch no
environment, and the faults that concern them start at the failing check instead (``--from unit-test``,
``--from sast``), as a user rerunning a fix would.
The unit-test fault selects only the injected test (``-k`` in ``PYTEST_ADDOPTS``) and runs it on one worker
(``PYTEST_XDIST_AUTO_NUM_WORKERS=1`` sets what the step's ``-n auto`` means): the fault is that one failing test,
and collecting and running the rest of the unit suite around it on every core is what would cost minutes.

Faults in the post-deploy tests come from a pytest plugin the pipeline's own test runs load
(``plugins/injected_faults.py``): the suite of one environment fails, as a regression there would. Each of those
runs deploys a new artifact (a new commit gives a new version), so a rollback has an older one to go back to.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from cicd import artifact as artifacts
from cicd.runner import NOT_STARTED, UNFINISHED
from tests import harness
from tests.harness import ENVIRONMENTS, PLUGINS, Project, tail

pytestmark = pytest.mark.slow

INFRA_STACK = Path("infra") / "stack.py"
# Appended to infra/stack.py: after ServiceStack builds, one more change is made to every environment's stack.
INFRA_FAULT = """

# --- injected by the fault-injection suite ---------------------------------------------------------------------
from aws_cdk import aws_s3 as _injected_s3

_injected_init = ServiceStack.__init__


def _init_with_injected_fault(self, *args, **kwargs):
    _injected_init(self, *args, **kwargs)
    {change}


ServiceStack.__init__ = _init_with_injected_fault
"""
# An IaC finding: a bucket with no encryption, no public access block, no SSL-only policy and no access logs.
OPEN_BUCKET = '_injected_s3.CfnBucket(self, "InjectedOpenBucket")'
# A deploy CloudFormation rejects: the web bucket renamed to a name too short to be valid (replacement fails).
REJECTED_NAME = 'self.storage.web_bucket.node.default_child.add_property_override("BucketName", "ab")'


@pytest.fixture(scope="module")
def project(deployed_project: Project) -> Project:
    """The shared deployed copy, starting from a green pipeline (whatever ran in it before)."""
    proc = deployed_project.pipeline()
    assert proc.returncode == 0, tail(proc)
    return deployed_project


def stopped_at(
    project: Project, proc: subprocess.CompletedProcess[str], failed: str, report_schema: dict[str, Any], *needles: str
) -> str:
    """The run failed at ``failed`` (exit 1, reason naming the problem) and nothing that needs it ran."""
    import jsonschema

    assert proc.returncode == 1, tail(proc)
    harness.no_traceback(proc)
    report = project.report()
    jsonschema.validate(report, report_schema)
    rows = project.rows()
    assert report["status"] == "failed" and rows[failed]["status"] == "failed", rows[failed]
    reason = str(rows[failed]["reason"])
    for needle in needles:
        assert needle in reason, (needle, reason)
    assert f"✗ {failed} failed: {reason}" in proc.stdout.splitlines(), tail(proc)
    for node in harness.downstream(failed, rows):  # none after smoke-test:prod, the last step
        assert rows[node]["status"] == "not-run", rows[node]
        assert rows[node]["reason"].startswith("needs "), rows[node]
    return reason


def completes(project: Project, report_schema: dict[str, Any], *args: str) -> dict[str, str | None]:
    """The next pipeline (``args``, default the suite's pipeline) passes; returns what each environment runs."""
    import jsonschema

    proc = project.inv(*(args or harness.PIPELINE))
    assert proc.returncode == 0, tail(proc)
    jsonschema.validate(project.report(), report_schema)
    versions = project.versions()
    assert None not in versions.values() and len(set(versions.values())) == 1, versions  # one build everywhere
    return versions


def version_of(project: Project, digest: str) -> str:
    return artifacts.get(project.root, digest).version


def assert_rolled_back(project: Project, env: str, good: str, failing: str | None) -> None:
    """``env`` runs ``good`` again (stack, /health, deploy history), after ``failing`` was deployed or attempted."""
    status, digest = project.stacks()[env]
    assert digest == good and status.endswith("_COMPLETE"), (env, status, digest, good)
    health = project.health(env)
    assert health is not None and health["version"] == version_of(project, good), (env, health)
    deploys = project.deploys(env)
    assert deploys[-1] == good, deploys
    if failing is not None:
        tested = [e for e in project.history(env) if e.get("digest") == failing]
        assert tested and tested[-1]["passed"] is False, tested


def unchanged_envs(before: dict[str, Any], after: dict[str, Any], envs: tuple[str, ...]) -> None:
    for env in envs:
        assert after["stacks"][env] == before["stacks"][env], env
        assert after["health"][env] == before["health"][env], env
        assert after["history"][env] == before["history"][env], env


def injected(path: Path, change: str) -> str:
    original = path.read_text(encoding="utf-8")
    path.write_text(original + INFRA_FAULT.format(change=change), encoding="utf-8")
    return original


# ---------------------------------------------------------------------------------------------------- checks
def test_failing_unit_test(project: Project, report_schema: dict[str, Any]) -> None:
    before = project.snapshot()
    fault = project.root / "tests" / "unit" / "functions" / "test_0_injected_fault.py"
    fault.write_text("def test_injected_fault() -> None:\n    assert 1 + 1 == 3, 'injected fault'\n", encoding="utf-8")
    try:
        only_the_fault = {"PYTEST_ADDOPTS": "-k test_injected_fault", "PYTEST_XDIST_AUTO_NUM_WORKERS": "1"}
        proc = project.inv("pipeline", "--from", "unit-test", env=only_the_fault)
        stopped_at(project, proc, "unit-test", report_schema, "1 of 1 unit tests failed")
        assert "test_injected_fault" in project.log("unit-test")
        assert project.snapshot() == before
    finally:
        fault.unlink()
    assert completes(project, report_schema) == {env: before["health"][env]["version"] for env in ENVIRONMENTS}


def test_sast_finding(project: Project, report_schema: dict[str, Any]) -> None:
    before = project.snapshot()
    fault = project.root / "cicd" / "injected_fault.py"
    fault.write_text(
        '"""Injected by the fault-injection suite: a shell command built from input."""\n\n'
        "from __future__ import annotations\n\nimport subprocess\n\n\n"
        "def greet(name: str) -> int:\n"
        '    return subprocess.call(f"echo {name}", shell=True)  # noqa: S602 - the linter is silenced, SAST is not\n',
        encoding="utf-8",
    )
    try:
        proc = project.inv("pipeline", "--from", "sast", env={})
        stopped_at(project, proc, "sast", report_schema, "SAST finding(s)")
        log = project.log("sast")
        assert "bandit cicd/injected_fault.py" in log and "semgrep cicd/injected_fault.py" in log, log[-3000:]
        assert project.snapshot() == before
    finally:
        fault.unlink()
    completes(project, report_schema)


def test_iac_finding(project: Project, report_schema: dict[str, Any]) -> None:
    before = project.snapshot()
    stack = project.root / INFRA_STACK
    original = injected(stack, OPEN_BUCKET)
    try:
        proc = project.pipeline()
        assert project.rows()["synth"]["status"] == "passed"  # synthesized again: the infrastructure changed
        stopped_at(project, proc, "iac-scan", report_schema, "finding(s) without a waiver", "InjectedOpenBucket")
        assert project.snapshot() == before
    finally:
        stack.write_text(original, encoding="utf-8")
    completes(project, report_schema)
    assert project.rows()["synth"]["status"] == "cached"


# ---------------------------------------------------------------------------------------------------- after deploy
def failing_tests_in(env: str, **extra: str) -> dict[str, str]:
    return {
        "PYTHONPATH": str(PLUGINS),
        "PYTEST_ADDOPTS": "-p injected_faults",
        "CICD_FAULT_FAIL_IN": env,
        **extra,
    }


SECRETS = {"API_TOKEN": "tok/en+planted=Secret-4711", "RELEASE_HOOK": "hook-planted-value-0815"}


def test_failing_dev_integration_test_rolls_dev_back_and_leaks_no_secret(
    project: Project, report_schema: dict[str, Any], tmp_path: Path
) -> None:
    before = project.snapshot()
    good = before["stacks"]["dev"][1]
    project.commit()
    summary = tmp_path / "job-summary.md"
    env = failing_tests_in(
        "dev",
        CICD_FAULT_ECHO="API_TOKEN,RELEASE_HOOK",
        CICD_SECRET_VARS="RELEASE_HOOK",  # a name the pattern does not catch, listed in the config
        GITHUB_ACTIONS="true",  # CI mode: every step log is printed to the terminal, and a job summary written
        GITHUB_STEP_SUMMARY=str(summary),
        **SECRETS,
    )
    proc = project.pipeline(env=env)
    reason = stopped_at(project, proc, "integration-test:dev", report_schema, "integration tests failed in dev")
    failing = project.rows()["package"]["details"]["digest"]
    assert f"rolled dev back to artifact {good[:12]}" in reason
    assert_rolled_back(project, "dev", good, failing)
    unchanged_envs(before, project.snapshot(), ("preprod", "prod"))

    # The planted values were printed (the log shows where, scrubbed) and appear nowhere in any form.
    assert "planted values: API_TOKEN=*** url=*** form=***; RELEASE_HOOK=*** url=*** form=***" in project.log(
        "integration-test:dev"
    )
    forms = {form for value in SECRETS.values() for form in (value, quote(value, safe=""), quote_plus(value))}
    places = {"terminal": proc.stdout + proc.stderr, "job summary": summary.read_text(encoding="utf-8")}
    for path in project.run_dir().rglob("*"):
        if path.is_file():
            places[str(path.relative_to(project.run_dir()))] = path.read_text(encoding="utf-8", errors="replace")
    assert {"report.json", "junit.xml", "summary.md", "logs/integration-test-dev.log"} <= set(places)
    for where, text in places.items():
        for form in forms:
            assert form not in text, f"{form!r} leaked into {where}"

    versions = completes(project, report_schema)
    assert versions["dev"] == version_of(project, failing)


def test_failing_preprod_integration_test_rolls_preprod_back(project: Project, report_schema: dict[str, Any]) -> None:
    before = project.snapshot()
    good = before["stacks"]["preprod"][1]
    project.commit()
    proc = project.pipeline(env=failing_tests_in("preprod"))
    reason = stopped_at(project, proc, "integration-test:preprod", report_schema, "integration tests failed in preprod")
    failing = project.rows()["package"]["details"]["digest"]
    assert f"rolled preprod back to artifact {good[:12]}" in reason
    assert project.rows()["integration-test:dev"]["status"] == "passed"
    assert project.stacks()["dev"][1] == failing  # dev keeps the build that passed there
    assert_rolled_back(project, "preprod", good, failing)
    unchanged_envs(before, project.snapshot(), ("prod",))
    completes(project, report_schema)


def test_failing_prod_smoke_test_rolls_prod_back(project: Project, report_schema: dict[str, Any]) -> None:
    before = project.snapshot()
    good = before["stacks"]["prod"][1]
    project.commit()
    proc = project.pipeline(env=failing_tests_in("prod"))
    reason = stopped_at(project, proc, "smoke-test:prod", report_schema, "smoke test failed in prod")
    failing = project.rows()["package"]["details"]["digest"]
    assert f"rolled prod back to artifact {good[:12]}" in reason
    assert_rolled_back(project, "prod", good, failing)  # production serves the previous build again
    assert project.health("prod") == before["health"]["prod"]
    assert {project.stacks()[env][1] for env in ("dev", "preprod")} == {failing}
    completes(project, report_schema)


# ---------------------------------------------------------------------------------------------------- deploy
def test_deploy_rejected_by_cloudformation_rolls_dev_back(project: Project, report_schema: dict[str, Any]) -> None:
    before = project.snapshot()
    good = before["stacks"]["dev"][1]
    stack = project.root / INFRA_STACK
    original = injected(stack, REJECTED_NAME)
    try:
        proc = project.pipeline()
        assert project.rows()["iac-scan"]["status"] == "passed"  # nothing a scanner objects to
        reason = stopped_at(project, proc, "deploy:dev", report_schema, "to dev failed", "exited with")
        rejected = project.rows()["package"]["details"]["digest"]
        assert rejected != good and f"rolled dev back to artifact {good[:12]}" in reason
        assert "InvalidBucketName" in project.log("deploy:dev") or "not valid" in project.log("deploy:dev")
        assert_rolled_back(project, "dev", good, None)
        assert rejected not in project.deploys("dev")
        unchanged_envs(before, project.snapshot(), ("preprod", "prod"))
    finally:
        stack.write_text(original, encoding="utf-8")
    assert completes(project, report_schema) == {env: before["health"][env]["version"] for env in ENVIRONMENTS}


# ---------------------------------------------------------------------------------------------------- the runner
def test_runner_killed_mid_deploy_then_rerun_resumes(project: Project, tmp_path: Path) -> None:
    before = project.snapshot()
    proc, run_dir = project.start_until_deploying(tmp_path / "pipeline.out")
    os.kill(proc.pid, signal.SIGKILL)  # the runner dies at once: no handler, no final report
    assert proc.wait(timeout=60) == -signal.SIGKILL
    project.wait_for_processes_to_end(run_dir)  # its orphaned CDK CLI ends too (or finishes its deploy)

    assert project.run_dir() == run_dir  # the report was kept current while the run went
    rows = project.rows()
    assert project.report()["status"] == "failed" and rows["package"]["status"] == "passed"
    assert rows["deploy:dev"]["status"] == "not-run" and rows["deploy:dev"]["reason"] == UNFINISHED
    for node in harness.downstream("deploy:dev", rows):
        assert rows[node] == {**rows[node], "status": "not-run", "reason": NOT_STARTED}
    unchanged_envs(before, project.snapshot(), ("preprod", "prod"))
    new = rows["package"]["details"]["digest"]
    assert project.stacks()["dev"][1] in (before["stacks"]["dev"][1], new)

    rerun = project.inv("rerun")
    assert rerun.returncode == 0, tail(rerun)
    rows = project.rows()
    assert "package" not in rows and {r["status"] for r in rows.values()} <= {"passed", "skipped"}, rows
    assert "waiting" not in project.log("deploy:dev")  # the crashed run left no deploy lock behind
    assert project.versions() == dict.fromkeys(ENVIRONMENTS, version_of(project, new))
    assert json.loads((run_dir / "report.json").read_text(encoding="utf-8"))["run_id"] == run_dir.name
