"""Every pull-request job of the rendered GitHub, GitLab and Bitbucket adapters, executed for real on this machine.

What runs: the commit where the session's cold ``inv pipeline`` ran is cloned (from ``pipelined_checkout``, taken
right after that run), the generated adapter is put where its tool expects it and committed; then ``act``
(self-hosted mode, :mod:`cicd.adapters.runners` stand-ins for the pinned actions) runs the whole ``pull_request``
workflow - every entry of the ``checks`` matrix, the jobs for ``main`` are skipped by their ``if:`` - and
``gitlab-ci-local`` (shell executor, ``--shell-isolation``) runs the whole ``merge_request_event`` pipeline, and
``bb-run`` (host mode, :mod:`cicd.adapters.bbrun`: one clone per step) the ``pull-requests`` pipeline. Every job
must run ``uv run inv <its step>`` and show the step's outcome line.

The step cache travels as on CI, through the adapter's own cache mechanism: the step cache of that run seeds act's
cache store (restored by the workflow's ``actions/cache`` step, saved back by its post step) and
gitlab-ci-local's ``.gitlab-ci-local/cache/cicd-JOB`` folders (the ``cicd-$CI_JOB_NAME_SLUG`` cache of
``.gitlab-ci.yml``) and bb-run's cache store (each step's ``steps-JOB`` cache under its key files' hash). So a
step whose inputs the new commit did not change is served from the cache (``cached``),
exactly as on CI, and costs seconds. What runs for real, and why:

* ``secrets-scan``: its key holds the commit (gitleaks scans the history) and the added adapter file is one of its
  inputs (``**``); it takes a few seconds;
* ``sca`` when the date (UTC) changed since the pipelined run: its key holds the date; it is served from the cache
  otherwise (a skip is served as the skip, with its reason: no advisory service from this machine);
* ``flutter-check``: the adapters require the Flutter SDK in that job (``CICD_REQUIRE_FLUTTER=1``, so a broken SDK
  install fails it). Each lets a runner without the SDK say so: the repository variable ``CICD_REQUIRE_FLUTTER=0``
  on GitHub (act's ``--var``) and Bitbucket (bb-run's ``-v``), a pipeline variable of that name on GitLab
  (gitlab-ci-local's ``--variable``, which outranks the job's ``variables:``). This machine has no SDK, so the runs
  set it: the offline half (Dart syntax, pubspec schema, semgrep Dart rules) runs for real and passes, and the
  reason names the half that did not run.
  With an SDK on PATH (the stand-in puts it there) the whole step runs.

``synth`` and ``iac-scan`` share one job in both adapters (the plan puts a check that needs only one other check
into its job), so no artifact passes between pull-request jobs; the report artifacts of every job are checked in
the stand-ins' store (act) and in ``.gitlab-ci-local/artifacts`` (gitlab-ci-local) instead. SARIF upload is a no-op
stand-in (it needs GitHub's code-scanning service). ``UV_NO_SYNC=1`` keeps ``uv run`` from re-syncing the shared
virtual environment; the isolated scanners of this checkout come through ``CICD_TOOLS_DIR``.

The third test checks the rules with gitlab-ci-local: a merge-request pipeline has the checks and no deploy job; a
push to main has every job, with prod behind the manual gate.

The main pipeline runs to prod under act and bb-run from the committed files, and under gitlab-ci-local with the
approval switch on (held at the manual gate, then released): the committed ``.gitlab-ci.yml`` is that file without
the approve-prod job and the gate, so a second gitlab-ci-local run of it would add little for its two minutes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from cicd import pipeline
from cicd.adapters import bbrun, bitbucket, github, gitlab, localrun, runners
from cicd.adapters.plan import RUNS_DIR, Job, build_plan
from cicd.config import PipelineConfig
from cicd.errors import MissingToolError
from cicd.sandbox import git
from tests.adapters.toy import toy_model
from tests.conftest import ROOT, needs_program
from tests.harness import TOOLS_DIR, stacks_of

pytestmark = pytest.mark.slow

PR_JOBS = build_plan(pipeline.MODEL).for_trigger("pr")
REMOTE = "https://gitlab.example.invalid/example/apk-pipeline.git"
CACHE = Path(".cicd") / "cache"
JOB_ENV = {"UV_NO_SYNC": "1", "CICD_TOOLS_DIR": TOOLS_DIR, "COLUMNS": "400"}
HAS_FLUTTER = shutil.which("flutter") is not None
# What a repository without a Flutter SDK on its runners sets; an SDK on PATH makes it moot (the step then runs it).
NO_SDK: dict[str, str] = {} if HAS_FLUTTER else {"CICD_REQUIRE_FLUTTER": "0"}
# Steps whose inputs the adapter's commit leaves unchanged: their results must come from the cache.
FROM_CACHE = {
    "lint",
    "typecheck",
    "unit-test",
    "component-test",
    "sast",
    "sbom",
    "synth",
    "iac-scan",
    "adapters-check",
}

NEEDS_RSYNC = needs_program("rsync", "gitlab-ci-local (it copies the repository with rsync)")


def entries(cache: Path) -> set[str]:
    """The keys of the step-cache entries in a ``.cicd/cache`` folder."""
    return {p.name for p in (cache / "steps").glob("*/*")}


def clone_with(tmp_path: Path, source: Path, files: dict[str, str]) -> Path:
    """The pipelined commit, cloned from ``source``, with ``files`` (``{path here: path in the source}``) added,
    committed."""
    project = tmp_path / "project"
    git(tmp_path, "clone", "-q", str(source), str(project))
    if not (project / ".venv").exists():  # the copy commits its link to the shared environment
        (project / ".venv").symlink_to(ROOT / ".venv")
    for dest, src in files.items():
        (project / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / src, project / dest)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "adapter")
    return project


def outcomes(lines: list[str]) -> dict[str, tuple[str, str]]:
    """``{step: (status, reason)}`` from the runner's result lines (``  cached lint (0.0 s) — inputs unchanged``)."""
    pattern = re.compile(r"^[\s|>]*(passed|cached|skipped|failed)\s+(\S+) \([\d.]+ s\)(?: — (.*))?$")
    return {m.group(2): (m.group(1), m.group(3) or "") for m in map(pattern.match, lines) if m}


def reported(runs: Path) -> dict[str, str]:
    """``{step: status}`` from every run report kept in an uploaded ``.cicd/runs`` artifact."""
    found: dict[str, str] = {}
    for report in runs.glob("*/report.json"):
        data: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
        found.update({s["name"]: s["status"] for s in data["steps"]})
    return found


def check_job(job: Job, lines: list[str], succeeded: bool, runs: Path, summary: str = "") -> None:
    """The job ran its ``inv`` commands; each step shows the expected outcome, in the output and in the report.
    ``summary``: the runner's own end of output, shown when it does not count the job as passed."""
    text = "\n".join(lines)
    for call in job.inv():
        assert call in text, f"{job.id}: `{call}` not run\n{text[-3000:]}"
    seen = outcomes(lines)
    kept = reported(runs)
    for node in job.nodes:
        status, reason = seen.get(node.step, ("missing", ""))
        assert kept.get(node.step) == status, (job.id, node.step, kept, status)
        assert succeeded, f"{job.id} failed\n{text[-3000:]}\n--- the runner's summary ---\n{summary}"
        if node.step == "flutter-check" and not HAS_FLUTTER:
            assert status == "passed" and "flutter analyze/test not run" in reason, (job.id, status, reason)
            continue
        if node.step in FROM_CACHE:
            assert status == "cached" and "inputs unchanged since run" in reason, (job.id, node.step, status, reason)
        elif node.step == "secrets-scan":
            assert status == "passed", (job.id, status, reason)
        elif node.step == "sca":
            assert status in ("cached", "skipped") and reason, (job.id, status, reason)
        else:
            assert status in ("passed", "cached"), (job.id, node.step, status, reason)


# The runs of the main pipeline come first: the longest tests of the module start first, so the xdist workers
# end close together (tests/conftest.py, queue_order); bb-run's, the longest, first of all.


def served_digests(folder: Path) -> dict[str, str | None]:
    """Per environment, the artifact digest its stack was deployed with, in the run's shared local AWS."""
    stacks = stacks_of(json.loads((folder / "local-aws" / "server.json").read_text(encoding="utf-8")))
    return {env: stacks[env][1] if env in stacks else None for env in ("dev", "preprod", "prod")}


def assert_reached_prod(run: localrun.LocalRun, folder: Path) -> None:
    """Every job the runner reported passed, the delivery jobs among them; one digest in all three environments."""
    assert run.returncode == 0, run.output[-6000:]
    failed = {job: verdict for job, verdict in run.jobs.items() if verdict != "passed"}
    assert not failed, (failed, run.output[-6000:])
    delivery = {j.id for j in build_plan(pipeline.MODEL).for_trigger("main") if not j.on_pr}
    assert delivery <= set(run.jobs), (delivery, run.jobs)
    digests = served_digests(folder)
    assert len(set(digests.values())) == 1 and None not in digests.values(), digests


def test_bb_run_runs_the_main_pipeline_to_prod(tmp_path: Path, pipelined_checkout: Path) -> None:
    """(GitLab's main pipeline runs to prod in the gate test below: the committed file is that one without the
    approve-prod job and the gate.)"""
    try:
        bbrun.bb_run_python(ROOT)
    except MissingToolError as err:  # bb-run needs Python >= 3.12
        pytest.skip(f"bb-run cannot run here: {err}")
    folder = tmp_path / "bitbucket-main"
    run = localrun.run(pipelined_checkout, "bitbucket", "main", folder=folder, keep=True, timeout=1800)
    try:
        assert_reached_prod(run, folder)
    finally:
        localrun.stop_local_aws(run.project, localrun.job_environment(pipelined_checkout, folder))


def test_act_runs_the_main_pipeline_to_prod(tmp_path: Path, pipelined_checkout: Path) -> None:
    folder = tmp_path / "github-main"
    run = localrun.run(pipelined_checkout, "github", "main", folder=folder, keep=True, timeout=1800)
    try:
        assert_reached_prod(run, folder)
    finally:
        localrun.stop_local_aws(run.project, localrun.job_environment(pipelined_checkout, folder))


@NEEDS_RSYNC
def test_gitlab_ci_local_stops_at_the_manual_gate_and_goes_on_when_released(
    tmp_path: Path, pipelined_checkout: Path
) -> None:
    """The approval switch on: gitlab-ci-local holds the `when: manual` prod job; released, it deploys prod."""
    plan = build_plan(pipeline.MODEL, PipelineConfig(approval_before_prod=True))
    adapter = next(r.text for r in gitlab.render(plan) if r.path == gitlab.PATH)
    folder = tmp_path / "gitlab-gate"
    root = pipelined_checkout
    run = localrun.run(root, "gitlab", "main", folder=folder, adapter=adapter, release=True, keep=True, timeout=1800)
    try:
        gated = [j.id for j in plan.jobs if j.gated]
        assert run.stopped_at == gated == ["prod"], (run.stopped_at, run.jobs)
        assert "uv run inv change-set --env prod" in run.output
        assert_reached_prod(run, folder)
    finally:
        localrun.stop_local_aws(run.project, localrun.job_environment(root, folder))


def test_act_runs_every_pull_request_job(tmp_path: Path, pipelined_checkout: Path) -> None:
    project = clone_with(tmp_path, pipelined_checkout, {github.PATH: f"ci-adapters/github/{github.PATH}"})
    store = tmp_path / "store"
    runners.link_tree(pipelined_checkout / CACHE, store / "cache" / CACHE)
    seeded = entries(store / "cache" / CACHE)
    # The workflow's target is the repository variable CICD_TARGET (else aws); the pipelined run was for the local
    # target, and a step-cache key holds the target.
    variables = {**NO_SDK, "CICD_TARGET": "local"}
    result = runners.run_act(project, store=store, env=JOB_ENV, variables=variables, timeout=900)
    for job in PR_JOBS:
        lines = runners.job_lines(result.output, runners.act_prefix(job.id))
        assert lines, f"{job.id} did not run\n{result.output[-3000:]}"
        text = "\n".join(lines)
        assert "cache: restored .cicd/cache" in text, text[-3000:]
        # act gives the entries of a matrix one result: an entry that ends after a failed sibling says "Job failed"
        succeeded = "Success - Complete job" in text and "❌  Failure" not in text
        check_job(job, lines, succeeded, store / "artifacts" / f"reports-{job.id}")
    for main_only in {j.id for j in build_plan(pipeline.MODEL).jobs} - {j.id for j in PR_JOBS}:
        assert "Run Main" not in "\n".join(runners.job_lines(result.output, runners.act_prefix(main_only)))
    saved = entries(store / "cache" / CACHE)
    assert saved > seeded, "secrets-scan ran for real: the post step of actions/cache saved its result"


@NEEDS_RSYNC
def test_gitlab_ci_local_runs_every_merge_request_job(tmp_path: Path, pipelined_checkout: Path) -> None:
    project = clone_with(tmp_path, pipelined_checkout, {gitlab.PATH: f"ci-adapters/gitlab/{gitlab.PATH}"})
    git(project, "remote", "set-url", "origin", REMOTE)
    # The file sets CICD_TARGET=aws; the pipelined run was for the local target, and a step-cache key holds the
    # target: a pipeline variable (it outranks the file's `variables:`) makes the checks the ones that copy ran.
    mr = {**JOB_ENV, **NO_SDK, "CI_PIPELINE_SOURCE": "merge_request_event", "CICD_TARGET": "local"}
    assert set(runners.gitlab_jobs(project, variables=mr)) == {j.id for j in PR_JOBS}
    source = pipelined_checkout / CACHE
    for job in PR_JOBS:
        runners.link_tree(source, runners.gitlab_cache(project, f"cicd-{job.id}") / CACHE)
    seeded = entries(runners.gitlab_cache(project, "cicd-secrets-scan") / CACHE)
    result = runners.run_gitlab_ci_local(project, variables=mr, isolate=True, timeout=900)
    for job in PR_JOBS:
        lines = runners.job_lines(result.output, runners.gitlab_prefix(job.id))
        assert lines, f"{job.id} did not run\n{result.output[-3000:]}"
        text = "\n".join(lines)
        assert f"imported cache 'cicd-{job.id}'" in text, text[-3000:]
        succeeded = any(re.match(rf"\s*PASS\s+{re.escape(job.id)}\b", ln) for ln in result.output.splitlines())
        runs = runners.gitlab_artifacts(project, job.id) / RUNS_DIR
        check_job(job, lines, succeeded, runs, summary=result.output[-2000:])
    saved = entries(runners.gitlab_cache(project, "cicd-secrets-scan") / CACHE)
    assert saved > seeded, "secrets-scan ran for real: gitlab-ci-local saved its result in the job's cache"


def test_bb_run_runs_every_pull_request_step(tmp_path: Path, pipelined_checkout: Path) -> None:
    try:
        python = bbrun.bb_run_python(ROOT)
    except MissingToolError as err:  # bb-run needs Python >= 3.12
        pytest.skip(f"bb-run cannot run here: {err}")
    project = clone_with(tmp_path, pipelined_checkout, {bitbucket.PATH: f"ci-adapters/bitbucket/{bitbucket.PATH}"})
    config = yaml.safe_load((project / bitbucket.PATH).read_text(encoding="utf-8"))
    store = tmp_path / "store"
    # Bitbucket holds each step's cache under its key files' hash. Seed them with the pipelined step cache, except
    # secrets-scan's: its key files are `**`, so the commit that added this file made it a new, empty key.
    layers = bbrun.cache_layers(config, project)
    for job in PR_JOBS:
        if job.id != "secrets-scan":
            runners.link_tree(pipelined_checkout / CACHE, store / "caches" / layers[f"steps-{job.id}"])
    result = bbrun.run_bb_run(project, store=store, env=JOB_ENV, variables=NO_SDK, jobs=2, python=python)

    assert set(result.steps) == {j.id for j in PR_JOBS} and not result.not_run, result.not_run
    for job in PR_JOBS:
        run = result.steps[job.id]
        succeeded = run.returncode == 0 and bbrun.step_result(run) == "ok"
        check_job(job, run.output.splitlines(), succeeded, run.artifacts[f"runs-{job.id}"] / RUNS_DIR)
        # (the dependency caches a step restores depend on which steps ran before it: only the step cache is checked)
        if job.id == "secrets-scan":  # a new key: nothing to restore; its first successful run saves it
            assert "steps-secrets-scan" not in run.restored and "steps-secrets-scan" in run.saved, run.output[-3000:]
        else:
            assert f"steps-{job.id}" in run.restored, (job.id, run.restored, run.output[-3000:])
    assert result.returncode == 0


def test_gitlab_ci_local_keeps_deploys_out_of_merge_requests(tmp_path: Path) -> None:
    plan = build_plan(toy_model(), PipelineConfig(approval_before_prod=True))
    project = tmp_path / "project"
    for r in gitlab.render(plan):
        (project / r.path).parent.mkdir(parents=True, exist_ok=True)
        (project / r.path).write_text(r.text)
    git(tmp_path, "init", "-q", "-b", "main", str(project))
    git(project, "add", "-A")
    git(project, "commit", "-qm", "adapter")
    git(project, "remote", "add", "origin", REMOTE)
    mr_jobs = runners.gitlab_jobs(project, variables={"CI_PIPELINE_SOURCE": "merge_request_event"})
    assert set(mr_jobs) == {j.id for j in plan.for_trigger("pr")}
    main_jobs = runners.gitlab_jobs(project)
    assert set(main_jobs) == {j.id for j in plan.jobs}
    assert main_jobs["prod"] == "manual" and main_jobs["dev"] == "on_success"


# --- the main pipeline, in each tool's own runner -----------------------------------------------------------------
