"""The job-by-job runner and ``inv adapters.run`` without the real tools: a stand-in ``inv`` and stand-in runners.

The slow suites run them for real (``test_job_by_job.py``, ``test_local_runs.py``); these pin the rules down fast:
jobs run in dependency order, each in a fresh clone, receiving only what the file says it receives; a failed job
stops what needs it; pull-request checks are not rerun; a tool's output becomes per-job verdicts.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cicd.adapters import bbrun, flutter_stand_in, jobrun, localrun, runners
from cicd.adapters.facts import AdapterFacts, Handoff, JobFacts
from cicd.command import CommandResult
from cicd.errors import UsageError
from cicd.sandbox import git

# A stand-in `inv`: `make NAME` writes .cicd/artifact/NAME, `need NAME` fails unless it is there, `fail` fails.
FAKE_INV = """#!/bin/sh
case "$1" in
  make) mkdir -p .cicd/artifact && echo "$CICD_TARGET" > ".cicd/artifact/$2" ;;
  need) test -f ".cicd/artifact/$2" || { echo "no $2 handed to this job"; exit 1; } ;;
  fail) echo "planted failure"; exit 1 ;;
  *) echo "ran $*" ;;
esac
"""


def source_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "source"
    repo.mkdir()
    (repo / "README.md").write_text("project\n")
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def fake_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    inv = venv / "bin" / "inv"
    inv.write_text(FAKE_INV)
    inv.chmod(0o755)
    return venv


def job(job_id: str, commands: list[str], **extra: Any) -> JobFacts:
    return JobFacts(id=job_id, commands=commands, triggers={"main"}, **extra)


def runner(tmp_path: Path, jobs: list[JobFacts]) -> jobrun.Runner:
    facts = AdapterFacts("toy", {}, jobs)
    return jobrun.Runner(
        facts, source_repo(tmp_path), tmp_path / "work", {"PATH": "/usr/bin:/bin"}, fake_venv(tmp_path)
    )


ARTIFACT = Handoff("artifact-build", (".cicd/artifact/",))


@pytest.mark.component  # runs a stand-in inv or runner in git clones
def test_jobs_run_in_order_each_in_a_fresh_clone_with_only_what_they_receive(tmp_path: Path) -> None:
    jobs = [
        job("deploy", ["need app"], needs=["build"], receives=[Handoff("artifact-build")]),
        job("build", ["make app"], hands_on=[ARTIFACT], variables={"CICD_TARGET": "aws", "X": "${{ expr }}"}),
        job("other", ["need app"], needs=["build"]),  # the file gives it nothing
    ]
    seen: list[str] = []
    r = runner(tmp_path, jobs)
    r.on_job = lambda run: seen.append(run.id)
    runs = {run.id: run for run in r.run("main")}
    assert seen == ["build", "deploy", "other"]
    assert runs["build"].status == "passed" and runs["deploy"].status == "passed"
    assert runs["deploy"].received == ["artifact-build"]
    assert runs["other"].status == "failed" and "no app handed" in (runs["other"].log or Path()).read_text()
    # the file's CICD_TARGET=aws is replaced by local; tool expressions are never passed on
    assert (r.store("artifact-build") / ".cicd" / "artifact" / "app").read_text().strip() == "local"
    assert runs["build"].workspace != runs["deploy"].workspace


@pytest.mark.component  # runs a stand-in inv or runner in git clones
def test_a_failed_job_stops_what_needs_it_and_checks_are_not_rerun(tmp_path: Path) -> None:
    jobs = [
        job("lint", ["lint"]),
        job("build", ["fail"], needs=["lint"], hands_on=[ARTIFACT]),
        job("deploy", ["need app"], needs=["build"], receives=[Handoff("artifact-build")]),
    ]
    runs = {run.id: run.status for run in runner(tmp_path, jobs).run("main")}
    assert runs == {"lint": "checks", "build": "failed", "deploy": "not-run"}


@pytest.mark.component  # runs a stand-in inv or runner in git clones
def test_a_cycle_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cycle"):
        runner(tmp_path, [job("a", ["x"], needs=["b"]), job("b", ["x"], needs=["a"])]).order()


@pytest.mark.component  # runs a stand-in inv or runner in git clones
def test_hand_ons_keep_paths_relative_to_their_root_and_globs(tmp_path: Path) -> None:
    jobs = [
        job("build", ["make app"], hands_on=[Handoff("flat", (".cicd/artifact/**",), root=".cicd/artifact")]),
        job("use", ["ok"], needs=["build"], receives=[Handoff("flat", dest=".cicd/artifact")]),
    ]
    r = runner(tmp_path, jobs)
    runs = r.run("main")
    assert (r.store("flat") / "app").is_file()
    use = next(run for run in runs if run.id == "use")
    assert use.workspace is not None and (use.workspace / ".cicd" / "artifact" / "app").is_file()
    assert jobrun.strip_glob(".cicd/artifact/**/*") == ".cicd/artifact" and jobrun.strip_glob("a.txt") == "a.txt"
    assert not jobrun.plain("$CI_COMMIT_SHA") and not jobrun.plain("<< pipeline.id >>") and jobrun.plain("aws")


# --- inv adapters.run ---------------------------------------------------------------------------------------------
@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A checkout with a committed adapter per tool."""
    repo = tmp_path / "checkout"
    for tool, path in localrun.TOOLS.items():
        target = repo / "ci-adapters" / tool / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"# the {tool} adapter\n")
    (repo / ".venv" / "bin").mkdir(parents=True)
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def test_bad_choices_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown tool 'jenkins'"):
        localrun.check_choice("jenkins", "main")
    with pytest.raises(UsageError, match="unknown event 'tag'"):
        localrun.check_choice("github", "tag")


@pytest.mark.component  # runs a stand-in inv or runner in git clones
def test_prepare_puts_the_adapter_where_the_tool_reads_it(root: Path, tmp_path: Path) -> None:
    project = localrun.prepare(root, "gitlab", tmp_path / "run")
    assert (project / ".gitlab-ci.yml").read_text() == "# the gitlab adapter\n"
    assert git(project, "status", "--porcelain").strip() == ""  # committed: the tools run what is committed
    assert "gitlab.example.invalid" in git(project, "remote", "get-url", "origin")
    other = localrun.prepare(root, "github", tmp_path / "run2", "# a rendering with the gate\n")
    assert (other / ".github" / "workflows" / "pipeline.yml").read_text() == "# a rendering with the gate\n"


@pytest.mark.component  # runs the stand-in flutter
def test_the_stand_in_flutter_only_without_an_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    bin_dir = localrun.stand_in_bin(tmp_path)
    assert bin_dir is not None
    flutter = [str(bin_dir / "flutter"), "--version", "--machine"]
    version = subprocess.run(flutter, capture_output=True, text=True, check=False)
    assert version.returncode == 0 and "frameworkVersion" in version.stdout
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert localrun.stand_in_bin(tmp_path / "again") is None


ACT_OUTPUT = """[pipeline/lint-1      ] 🏁  Job succeeded
[pipeline/unit-test-3 ] 🏁  Job failed
[pipeline/package     ] 🏁  Job succeeded
[pipeline/dev         ] \x1b[32m🏁  Job succeeded\x1b[0m
"""


@pytest.fixture
def aws_started(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The projects whose shared local AWS a local run started (before any job, from the project's environment)."""
    started: list[Path] = []
    monkeypatch.setattr(localrun, "start_local_aws", lambda project, env: started.append(project))
    return started


@pytest.mark.component  # runs a stand-in inv or runner in git clones
def test_github_runs_act_with_the_local_target_and_reads_its_verdicts(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_started: list[Path]
) -> None:
    calls: list[dict[str, Any]] = []

    def run_act(project: Path, **kw: Any) -> CommandResult:
        assert aws_started == [project], "the shared local AWS starts before the first job"
        calls.append({"project": project, **kw})
        return CommandResult("act", 1, ACT_OUTPUT)

    monkeypatch.setattr(runners, "run_act", run_act)
    seed = tmp_path / "seed"
    (seed / "steps").mkdir(parents=True)
    (seed / "steps" / "entry").write_text("cached")
    result = localrun.run(root, "github", "main", folder=tmp_path / "run", seed=seed, log=io.StringIO())
    assert calls[0]["event"] == "push" and calls[0]["variables"]["CICD_TARGET"] == "local"
    assert calls[0]["env"]["CICD_LOCAL_HOME"] == str(tmp_path / "run" / "local-aws")
    assert (tmp_path / "run" / "store" / "cache" / ".cicd" / "cache" / "steps" / "entry").is_file()
    assert result.jobs == {"lint-1": "passed", "unit-test-3": "failed", "package": "passed", "dev": "passed"}
    assert result.returncode == 1


@pytest.mark.component  # runs a stand-in inv or runner in git clones
def test_gitlab_stops_at_the_manual_job_and_releases_it(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_started: list[Path]
) -> None:
    runs: list[tuple[str, ...]] = []

    def gitlab_jobs(project: Path, **kw: Any) -> dict[str, str]:
        assert kw["variables"]["CI_PIPELINE_SOURCE"] == "push"
        return {"package": "on_success", "preprod": "on_success", "prod": "manual"}

    def run_gitlab_ci_local(project: Path, jobs: tuple[str, ...] = (), **kw: Any) -> CommandResult:
        runs.append(tuple(jobs))
        text = "PASS  prod\n" if jobs else "PASS  package\nPASS  preprod\n"
        return CommandResult("gitlab-ci-local", 0, text)

    monkeypatch.setattr(runners, "gitlab_jobs", gitlab_jobs)
    monkeypatch.setattr(runners, "run_gitlab_ci_local", run_gitlab_ci_local)
    held = localrun.run(root, "gitlab", "main", folder=tmp_path / "held", seed=tmp_path / "none")
    assert held.stopped_at == ["prod"] and held.jobs["prod"] == "manual" and runs == [()]
    released = localrun.run(root, "gitlab", "main", folder=tmp_path / "released", release=True)
    assert released.stopped_at == ["prod"] and released.jobs["prod"] == "passed" and runs[-1] == ("prod",)
    assert len(aws_started) == 2


@pytest.mark.component  # runs a stand-in inv or runner in git clones
def test_bitbucket_reports_steps_held_at_the_gate(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_started: list[Path]
) -> None:
    (root / "ci-adapters" / "bitbucket" / "bitbucket-pipelines.yml").write_text("pipelines: {}\n")
    git(root, "commit", "-qam", "a pipeline file")

    def run_bb_run(project: Path, **kw: Any) -> bbrun.PipelineRun:
        assert kw["target"] == bbrun.MAIN_TARGET and kw["variables"]["CICD_TARGET"] == "local"
        step = bbrun.StepRun("dev", 0, "ok", project, {}, (), (), 1.0)
        return bbrun.PipelineRun(0, {"dev": step}, (), ("prod",))

    monkeypatch.setattr(bbrun, "bb_run_python", lambda root: Path("/usr/bin/python3"))
    monkeypatch.setattr(bbrun, "run_bb_run", run_bb_run)
    monkeypatch.setattr(bbrun, "step_result", lambda run: "ok")
    result = localrun.run(root, "bitbucket", "main", folder=tmp_path / "run")
    assert result.jobs == {"dev": "passed", "prod": "manual"} and result.stopped_at == ["prod"]
    assert len(aws_started) == 1


@pytest.mark.component  # runs the stand-in flutter
def test_the_stand_in_flutter_answers_what_the_setup_steps_ask() -> None:
    """The CI tools' Flutter setup prints `flutter --version`; the stand-in answers it, saying what it is."""
    script = str(Path(flutter_stand_in.__file__))
    text = subprocess.run([sys.executable, script, "--version"], capture_output=True, text=True, check=True).stdout
    assert "stand-in" in text and "placeholder builds only" in text
