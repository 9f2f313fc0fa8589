"""The pull-request jobs of the rendered GitHub and GitLab adapters, executed for real on this machine.

What runs: the project is copied to a temporary git repository with the adapter at the path the tool expects;
``act`` (self-hosted mode, local stand-ins for the pinned remote actions) runs the ``checks`` matrix entry
``lint`` of the pull_request workflow, and ``gitlab-ci-local`` (shell executor) runs the merge-request job
``lint``: both install nothing but call ``uv run inv lint`` on the copy, which must pass. gitlab-ci-local also
evaluates the rules: a merge-request pipeline has the checks and no deploy job; a push to main has every job,
with prod behind the manual gate. ``UV_NO_SYNC=1`` keeps ``uv run`` from re-syncing the shared virtual environment
that the copy links to.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cicd import pipeline
from cicd.adapters import github, gitlab, runners
from cicd.adapters.plan import build_plan
from cicd.sandbox import copy_project, git
from tests.adapters.toy import toy_model

pytestmark = pytest.mark.slow


def project_with(tmp_path: Path, files: list[tuple[str, str]]) -> Path:
    project = copy_project(tmp_path / "project")
    for rel, text in files:
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "adapter")
    return project


def test_act_runs_the_pull_request_lint_job_green(tmp_path: Path) -> None:
    rendered = github.render(build_plan(pipeline.MODEL))
    project = project_with(tmp_path, [(r.path, r.text) for r in rendered])
    result = runners.run_act(project, matrix=["job:lint"], env={"UV_NO_SYNC": "1"})
    assert result.returncode == 0, result.output[-3000:]
    assert "Success - Main uv run inv lint" in result.output
    assert "Job succeeded" in result.output


def test_gitlab_ci_local_runs_the_merge_request_lint_job_green(tmp_path: Path) -> None:
    rendered = gitlab.render(build_plan(pipeline.MODEL))
    project = project_with(tmp_path, [(r.path, r.text) for r in rendered])
    git(project, "remote", "add", "origin", "https://gitlab.example.invalid/example/apk-pipeline.git")
    mr = {"UV_NO_SYNC": "1", "CI_PIPELINE_SOURCE": "merge_request_event"}
    result = runners.run_gitlab_ci_local(project, ["lint"], variables=mr)
    assert result.returncode == 0, result.output[-3000:]
    assert "$ uv run inv lint" in result.output
    assert "PASS" in result.output and "lint" in result.output


def test_gitlab_ci_local_keeps_deploys_out_of_merge_requests(tmp_path: Path) -> None:
    plan = build_plan(toy_model())
    project = project_with(tmp_path, [(r.path, r.text) for r in gitlab.render(plan)])
    git(project, "remote", "add", "origin", "https://gitlab.example.invalid/example/apk-pipeline.git")
    mr_jobs = runners.gitlab_jobs(project, variables={"CI_PIPELINE_SOURCE": "merge_request_event"})
    assert set(mr_jobs) == {j.id for j in plan.for_trigger("pr")}
    main_jobs = runners.gitlab_jobs(project)
    assert set(main_jobs) == {j.id for j in plan.jobs}
    assert main_jobs["prod"] == "manual" and main_jobs["dev"] == "on_success"
