"""Every adapter's ``main`` path, job by job: one fresh workspace per job, only what the tool hands between them.

For each of the eight tools the committed file is read back (:mod:`cicd.adapters.facts`: each job's ``inv``
commands, needs, what it receives and hands on), and :class:`cicd.adapters.jobrun.Runner` runs the main jobs in
dependency order, each in a fresh ``git clone`` with ``CICD_TARGET=local``, a stand-in ``flutter`` that writes an
APK and a web build, the jobs sharing one embedded AWS. The pull-request check jobs are not rerun here (the
pull-request runs execute them); everything from ``flutter-build`` to the prod smoke test is.

* green: the run reaches prod; dev, preprod and prod run the one packaged digest; prod serves the packaged APK;
* a commit whose integration tests fail in preprod: the preprod job (a fresh workspace) rolls preprod back to the
  artifact that passed there before, from preprod's own state in the target, and no job reaches prod;
* breakers: a copy of the file without the artifact hand-off, or without the evidence hand-off (the environment
  job that hands the artifact on), must stop before prod.

Each case is a whole main path, so under ``pytest -n`` the tools come in two xdist groups (every other tool) that
two workers can run at once, each in its own world: within a group the green runs come first, in file order, so
every red run finds environments that a green run of its world deployed; the breakers run with the GitHub half.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cicd.adapters import localrun
from cicd.adapters.cli import committed_facts
from cicd.adapters.facts import AdapterFacts, JobFacts
from cicd.adapters.jobrun import JobRun, Runner, stand_in_path
from cicd.adapters.registry import ADAPTERS
from cicd.sandbox import copy_project, git
from tests.conftest import ROOT
from tests.harness import TOOLS_DIR, base_env, http_get, stacks_of

pytestmark = pytest.mark.slow

STACKS = {"dev": "LatestApk-dev", "preprod": "LatestApk-preprod", "prod": "LatestApk-prod"}
FAIL_IN_PREPROD = """

import os as _os

import pytest as _pytest


@_pytest.fixture(autouse=True)
def _fail_in_preprod() -> None:
    if _os.environ.get("CICD_IT_ENV") == "preprod":
        _pytest.fail("planted failure: this build's integration tests fail in preprod")
"""
TOOLS = [a.name for a in ADAPTERS]


def half(index: int) -> pytest.MarkDecorator:
    """The xdist group of the tool at ``index`` (see the module docstring)."""
    return pytest.mark.xdist_group(f"job-by-job-{index % 2}")


BY_HALF = [pytest.param(tool, marks=half(i)) for i, tool in enumerate(TOOLS)]


@dataclasses.dataclass
class World:
    """One source repository and one embedded AWS shared by every tool's runs (as CI jobs share an account)."""

    source: Path
    home: Path
    bin_dir: Path
    work: Path

    def environ(self) -> dict[str, str]:
        env = base_env({"CICD_LOCAL_HOME": str(self.home), "CICD_TOOLS_DIR": TOOLS_DIR, "UV_NO_SYNC": "1"})
        env["PATH"] = stand_in_path(self.bin_dir, env.get("PATH", ""))
        return env

    def commit(self, message: str) -> str:
        git(self.source, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.source, "rev-parse", "HEAD").strip()

    def runner(self, facts: AdapterFacts, name: str) -> Runner:
        return Runner(facts, self.source, self.work / name, self.environ(), ROOT / ".venv")

    def server(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.home / "server.json").read_text(encoding="utf-8"))
        return data

    def digests(self) -> dict[str, str | None]:
        stacks = stacks_of(self.server())
        return {env: stacks[env][1] if env in stacks else None for env in STACKS}

    def api(self, env: str) -> str:
        state = json.loads((self.home / f"api-{env}.json").read_text(encoding="utf-8"))
        return str(state["url"])

    def down(self) -> None:
        if (self.home / "server.json").is_file():
            subprocess.run(
                [str(ROOT / ".venv" / "bin" / "inv"), "local.down"],
                cwd=self.source,
                env=self.environ(),
                capture_output=True,
                timeout=120,
                check=False,
            )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("job-by-job")
    source = copy_project(base / "source", share_node_modules=True)
    bin_dir = localrun.write_stand_in(base / "bin")  # always the stand-in: the test compares its APK
    made = World(source, base / "local-aws", bin_dir, base / "work")
    try:
        yield made
    finally:
        made.down()


def facts_of(tool: str) -> AdapterFacts:
    return committed_facts(ROOT, next(a for a in ADAPTERS if a.name == tool))


def describe(runs: list[JobRun]) -> str:
    lines = []
    for run in runs:
        tail = ""
        if run.status == "failed" and run.log is not None:
            tail = "\n" + run.log.read_text(encoding="utf-8")[-3000:]
        lines.append(f"{run.id}: {run.status} {run.commands} received={run.received}{tail}")
    return "\n".join(lines)


def status(runs: list[JobRun]) -> dict[str, str]:
    return {r.id: r.status for r in runs}


def ran(runs: list[JobRun], command: str) -> JobRun:
    return next(r for r in runs if command in r.commands)


def packaged_manifest(runs: list[JobRun]) -> dict[str, Any]:
    job = ran(runs, "package")
    assert job.workspace is not None
    data: dict[str, Any] = json.loads((job.workspace / ".cicd" / "artifact" / "manifest.json").read_text())
    return data


@pytest.mark.parametrize("tool", BY_HALF)
def test_the_main_jobs_reach_prod_one_fresh_workspace_per_job(world: World, tool: str) -> None:
    facts = facts_of(tool)
    world.commit(f"{tool}: a build for the job-by-job run")
    runs = world.runner(facts, f"{tool}-green").run("main")
    assert all(r.status in ("passed", "checks") for r in runs), describe(runs)
    smoke = ran(runs, "smoke-test --env prod")
    assert smoke.status == "passed", describe(runs)
    manifest = packaged_manifest(runs)
    assert manifest["target"] == "local"
    digests = world.digests()
    assert digests == dict.fromkeys(STACKS, manifest["digest"]), (digests, describe(runs))
    assert "flutter/app-release.apk" in manifest["files"], "the Flutter build did not reach the artifact"
    code, body = http_get(world.api("prod") + "apk/latest")
    assert code == 200 and body["version"] == manifest["version"], body
    assert body["sha256"] == manifest["files"]["flutter/app-release.apk"], body


@pytest.mark.parametrize("tool", BY_HALF)
def test_a_failing_preprod_test_rolls_preprod_back_from_a_fresh_job(world: World, tool: str) -> None:
    facts = facts_of(tool)
    before = world.digests()
    assert before["preprod"] and before["prod"], "the green run of this module comes first"
    conftest = world.source / "tests" / "integration" / "conftest.py"
    original = conftest.read_text(encoding="utf-8")
    conftest.write_text(original + FAIL_IN_PREPROD, encoding="utf-8")
    try:
        world.commit(f"{tool}: a build whose integration tests fail in preprod")
        git(world.source, "commit", "-qam", "plant the preprod failure")
        runs = world.runner(facts, f"{tool}-red").run("main")
    finally:
        conftest.write_text(original, encoding="utf-8")
        git(world.source, "commit", "-qam", "remove the planted preprod failure")
    failed = [r for r in runs if r.status == "failed"]
    assert [c for r in failed for c in r.commands if c.startswith("integration-test")] == [
        "integration-test --env preprod"
    ], describe(runs)
    assert not any(r.status == "passed" and any("--to prod" in c for c in r.commands) for r in runs), describe(runs)
    new = packaged_manifest(runs)["digest"]
    after = world.digests()
    assert after["dev"] == new, "dev runs the new build, which passed there"
    assert after["preprod"] == before["preprod"], "preprod was rolled back to the artifact that passed there"
    assert after["prod"] == before["prod"], "nothing reached prod"
    log = failed[0].log.read_text(encoding="utf-8") if failed[0].log else ""
    assert f"rolled preprod back to artifact {before['preprod'][:12]}" in log, log[-3000:]


def _without_hand_on(facts: AdapterFacts, job_id: str) -> AdapterFacts:
    """The adapter as if ``job_id`` handed nothing on (its upload, persist or stash removed)."""
    jobs: list[JobFacts] = [dataclasses.replace(j, hands_on=[]) if j.id == job_id else j for j in facts.jobs]
    return dataclasses.replace(facts, jobs=jobs)


def _env_job(facts: AdapterFacts, env: str) -> str:
    return next(j.id for j in facts.jobs if any(c.endswith(f"--env {env}") for c in j.commands) and j.hands_on)


@half(TOOLS.index("github"))
@pytest.mark.parametrize("where", ["package", "dev"], ids=["no-artifact-hand-off", "no-evidence-hand-off"])
def test_a_copy_without_a_hand_off_stops_before_prod(world: World, where: str) -> None:
    """Breakers, on the GitHub adapter: the runner must not find another way to pass what the file drops."""
    facts = facts_of("github")
    job = "package" if where == "package" else _env_job(facts, "dev")
    world.commit(f"a build for the breaker without the hand-off of {where}")
    runs = world.runner(_without_hand_on(facts, job), f"breaker-{where}").run("main")
    assert not any(r.status == "passed" and any("--to prod" in c for c in r.commands) for r in runs), describe(runs)
    first_failed = next(r for r in runs if r.status == "failed")
    log = first_failed.log.read_text(encoding="utf-8") if first_failed.log else ""
    expected = ("arrived without evidence", "no artifact was handed") if where == "dev" else ("no packaged artifact",)
    assert any(e in log for e in expected), log[-3000:]
