"""The README's main command, for real: `inv pipeline` on the local target in a fresh copy of the project
(the copy the slow suites share, ``pipelined_project``).

Runs every step (real tools, real CDK deploys to the embedded moto, the deployed API served on localhost), checks
what the three environments answer, then runs the pipeline again to prove nothing is redone: the checks come from
the step cache and the deploys are no-ops.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.harness import FirstRun, Project

pytestmark = pytest.mark.slow


def inv(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return Project(project).inv(*args, timeout=1200)


def report(project: Path) -> dict[str, Any]:
    return Project(project).report()


def get_json(url: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


@pytest.fixture(scope="module")
def first_run(pipelined_project: FirstRun) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The cold run of the shared copy (see ``pipelined_project`` in tests/conftest.py)."""
    return pipelined_project.proc, pipelined_project.report


@pytest.fixture(scope="module")
def project(pipelined_project: FirstRun) -> Path:
    return pipelined_project.project.root


def test_pipeline_runs_green_end_to_end(
    first_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]], report_schema: dict[str, Any]
) -> None:
    import jsonschema

    proc, data = first_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    jsonschema.validate(data, report_schema)
    status = {(s["name"] + (f":{s['env']}" if s["env"] else "")): s for s in data["steps"]}
    assert data["trigger"] == "main" and data["status"] == "passed"
    for name in (
        "package",
        "deploy:dev",
        "integration-test:dev",
        "promote:preprod",
        "integration-test:preprod",
        "promote:prod",
        "smoke-test:prod",
        "synth",
        "iac-scan",
        "unit-test",
        "component-test",
    ):
        assert status[name]["status"] in ("passed", "cached"), (name, status[name])
    assert status["flutter-build"]["status"] == "skipped" and "Flutter SDK" in status["flutter-build"]["reason"]
    assert "http://127.0.0.1:" in proc.stdout and "inv local.down" in proc.stdout


def test_three_environments_answer_with_the_promoted_build(
    project: Path, first_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]
) -> None:
    status = inv(project, "local.status")
    assert status.returncode == 0, status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines()[1:] if line.strip()}
    assert set(lines) == {"dev", "preprod", "prod"}
    digests = set()
    for env, line in lines.items():
        url = line.rsplit(" ", 1)[-1]
        health = get_json(url + "health")
        assert health["environment"] == env
        digests.add(line.split("artifact ")[1].split()[0])
        assert f"version {health['version']}" in line
    assert len(digests) == 1, "dev, preprod and prod must run the same artifact"


def test_second_run_redoes_nothing(
    project: Path, first_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]
) -> None:
    proc = inv(project, "pipeline")
    assert proc.returncode == 0, proc.stdout[-4000:]
    steps = {(s["name"] + (f":{s['env']}" if s["env"] else "")): s for s in report(project)["steps"]}
    for name in (
        "lint",
        "typecheck",
        "unit-test",
        "component-test",
        "sast",
        "sbom",
        "synth",
        "iac-scan",
        "flutter-check",
    ):
        assert steps[name]["status"] == "cached", (name, steps[name])
    for name in ("deploy:dev", "promote:preprod", "promote:prod"):
        assert "already runs artifact" in steps[name]["reason"], steps[name]
    if steps["sca"]["status"] == "skipped":  # a skip whose cause is unchanged is served from the cache, as a skip
        assert "(cached from run" in steps["sca"]["reason"], steps["sca"]
    # flutter-build is never cached (it hands its build on in .cicd/artifact/flutter); without an SDK it skips again
    assert steps["flutter-build"]["status"] in ("skipped", "passed"), steps["flutter-build"]
