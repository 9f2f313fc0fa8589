"""The command line: exit codes of the contract, one-line errors, no tracebacks, rerun and --from."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from cicd.sandbox import copy_project, git, listed
from tests.conftest import ROOT

pytestmark = [pytest.mark.component, pytest.mark.spread]  # the CLI as a process, mostly on a copy of the project

INV = str(ROOT / ".venv" / "bin" / "inv")
CLI_FILES = ("tasks.py", "cicd", "pyproject.toml", "requirements.lock", ".gitignore", ".gitleaks.toml")
"""What the command line reads besides the code its steps check: its tasks, the library, the configuration."""


@pytest.fixture
def cli_project(tmp_path: Path) -> Path:
    """A copy of the command line's part of the project, without the service, the front end and the tests: copying
    the whole project, and linting and scanning it, took most of these tests' time."""
    return copy_project(tmp_path / "project", only=CLI_FILES)


@pytest.fixture(scope="module")
def cli_readonly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One such copy for the commands that change nothing in it (``--list``, ``graph``, usage errors): run in the
    checkout itself, they would depend on all of it (test selection counts a process there as reading everything)."""
    return copy_project(tmp_path_factory.mktemp("cli") / "project", only=CLI_FILES)


def inv(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INV, *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_list_shows_the_tasks(cli_readonly: Path) -> None:
    proc = inv("--list", cwd=cli_readonly)
    assert proc.returncode == 0
    for name in (
        "lint",
        "typecheck",
        "unit-test",
        "component-test",
        "sast",
        "secrets-scan",
        "sca",
        "sbom",
        "pr-checks",
        "rerun",
        "graph",
    ):
        assert f"  {name} " in proc.stdout or f"  {name}\n" in proc.stdout, name


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("pr-checks", "--from", "nope"), ("unknown step 'nope'", "choose one of")),
        (("pr-checks", "--jobs", "0"), ("--jobs must be at least 1",)),
        (("pr-checks", "--jobs", "many"), ("--jobs must be a whole number",)),
        (("lint", "--bogus"), ("--bogus",)),
        (("no-such-task",), ("no-such-task",)),
    ],
)
def test_bad_usage_exits_2_with_one_line(args: tuple[str, ...], needles: tuple[str, ...], cli_readonly: Path) -> None:
    assert_one_line_error(inv(*args, cwd=cli_readonly), 2, *needles)


def test_graph_prints_mermaid(cli_readonly: Path) -> None:
    proc = inv("graph", cwd=cli_readonly)
    assert proc.returncode == 0 and proc.stdout.startswith("flowchart LR") and "lint" in proc.stdout


def test_rerun_without_a_report_and_with_a_corrupt_one(cli_project: Path) -> None:
    assert_one_line_error(inv("rerun", cwd=cli_project), 2, "no run report")
    runs = cli_project / ".cicd" / "runs" / "x"
    runs.mkdir(parents=True)
    (runs / "report.json").write_text("{not json")
    (cli_project / ".cicd" / "runs" / "latest").symlink_to("x")
    assert_one_line_error(inv("rerun", cwd=cli_project), 2, "unreadable")


def test_unwritable_run_folder_exits_2(cli_project: Path) -> None:
    (cli_project / ".cicd").mkdir(exist_ok=True)  # a copy has one (its bytecode link)
    (cli_project / ".cicd" / "runs").write_text("a file where the run folder should be")
    assert_one_line_error(inv("lint", cwd=cli_project), 2, "cannot write the run folder")


def test_failed_step_rerun_command_reruns_only_that_step(cli_project: Path) -> None:
    bad = cli_project / "cicd" / "badly_formatted.py"
    bad.write_text("from __future__ import annotations\nx   =  1\n")
    first = inv("lint", cwd=cli_project)
    assert first.returncode == 1
    report = json.loads((cli_project / ".cicd/runs/latest/report.json").read_text())
    (row,) = report["steps"]
    assert row["status"] == "failed" and row["rerun"] == "uv run inv lint"
    assert "rerun: uv run inv lint" in first.stdout
    bad.unlink()
    proc = subprocess.run(
        shlex.split(row["rerun"]), cwd=cli_project, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = json.loads((cli_project / ".cicd/runs/latest/report.json").read_text())
    assert again["run_id"] != report["run_id"]
    assert [s["name"] for s in again["steps"]] == ["lint"] and again["status"] == "passed"


def test_inv_rerun_reruns_only_failed_and_blocked_steps(cli_project: Path) -> None:
    runs = cli_project / ".cicd" / "runs" / "old"
    runs.mkdir(parents=True)
    rows = [
        {
            "name": "typecheck",
            "env": None,
            "status": "passed",
            "duration_s": 1,
            "reason": None,
            "log": None,
            "rerun": "uv run inv typecheck",
        },
        {
            "name": "lint",
            "env": None,
            "status": "failed",
            "duration_s": 1,
            "reason": "x",
            "log": None,
            "rerun": "uv run inv lint",
        },
    ]
    (runs / "report.json").write_text(json.dumps({"run_id": "old", "trigger": "pr", "target": "local", "steps": rows}))
    (cli_project / ".cicd" / "runs" / "latest").symlink_to("old")
    proc = inv("rerun", cwd=cli_project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((cli_project / ".cicd/runs/latest/report.json").read_text())
    assert [s["name"] for s in report["steps"]] == ["lint"]
    assert report["trigger"] == "pr"


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (("deploy",), 2, ("needs --env",)),
        (("deploy", "--env", "qa"), 2, ("unknown environment 'qa'", "dev, preprod, prod")),
        (("promote", "--to", "dev"), 2, ("does not run in 'dev'",)),
        (("pipeline", "--target", "gcp"), 2, ("unknown target 'gcp'",)),
        (("pipeline", "--from", "nope"), 2, ("unknown step 'nope'",)),
        (("deploy", "--env", "dev", "--target", "aws"), 2, ("has no account for the aws target",)),
    ],
)
def test_delivery_usage_errors(cli_project: Path, args: tuple[str, ...], code: int, needles: tuple[str, ...]) -> None:
    assert_one_line_error(inv(*args, cwd=cli_project), code, *needles)


def test_aws_target_without_credentials_exits_3_before_building(cli_project: Path, tmp_path: Path) -> None:
    pyproject = cli_project / "pyproject.toml"
    tables = "".join(
        f'[tool.cicd.environments.{env}]\naccount = "123456789012"\nregion = "eu-west-1"\n\n'
        for env in ("dev", "preprod", "prod")
    )
    pyproject.write_text(pyproject.read_text() + "\n" + tables)
    clean = dict.fromkeys(("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ROLE_ARN"), "")
    proc = inv("pipeline", "--target", "aws", cwd=cli_project, env={**clean, "HOME": str(tmp_path)})
    assert_one_line_error(proc, 3, "no AWS credentials")
    assert not (cli_project / ".cicd" / "runs").exists()  # nothing was built


def test_report_status_and_cache_commands(cli_project: Path) -> None:
    assert_one_line_error(inv("report", cwd=cli_project), 2, "no run yet")
    status = inv("local.status", cwd=cli_project)
    assert status.returncode == 0 and "local AWS is not running" in status.stdout
    assert inv("secrets-scan", cwd=cli_project).returncode == 0
    summary = inv("report", cwd=cli_project)
    assert summary.returncode == 0 and "| `secrets-scan` |" in summary.stdout and "gantt" in summary.stdout
    assert "cached secrets-scan" in inv("secrets-scan", cwd=cli_project).stdout
    cleared = inv("cache.clear", cwd=cli_project)
    assert cleared.returncode == 0 and "Removed 1 cached step result(s)." in cleared.stdout
    assert "passed secrets-scan" in inv("secrets-scan", cwd=cli_project).stdout


def test_promote_and_approve_refuse_without_a_passed_artifact(cli_project: Path) -> None:
    proc = inv("promote", "--to", "preprod", cwd=cli_project)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    report = json.loads((cli_project / ".cicd/runs/latest/report.json").read_text())
    assert "no artifact was handed to this job" in report["steps"][0]["reason"]
    assert_one_line_error(inv("approve", "--env", "prod", cwd=cli_project), 1, "no artifact was handed to this job")


IGNORED_DECOYS = (
    "cicd/__pycache__/mod.cpython-311.pyc",
    "cicd/steps/stray.pyc",
    "cicd/.coverage.worker",
    "cicd/node_modules/pkg/index.js",
    "cicd/.mypy_cache/3.11/mod.json",
    "cicd/cdk.out/manifest.json",
)


def test_the_copy_of_the_cli_part_holds_what_git_would_list(tmp_path: Path, cli_readonly: Path) -> None:
    """The copy lists its files in-process (so test selection can follow it): the same files git lists as tracked
    or new and not ignored, none of the ignored ones (bytecode, node_modules). git runs on a mirror of the CLI part
    (every file name of it, empty, and the same ``.gitignore``) in a repository of its own: run in the checkout, it
    would count as reading all of it."""
    mirror = tmp_path / "mirror"
    for part in CLI_FILES:
        source = ROOT / part
        names = [source] if source.is_file() else [Path(d) / f for d, _, files in os.walk(source) for f in files]
        for name in names:
            (mirror / name.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            (mirror / name.relative_to(ROOT)).touch()
    for decoy in IGNORED_DECOYS:  # names each kind of .gitignore pattern must leave out
        (mirror / decoy).parent.mkdir(parents=True, exist_ok=True)
        (mirror / decoy).touch()
    (mirror / ".gitignore").write_text((ROOT / ".gitignore").read_text(encoding="utf-8"), encoding="utf-8")
    git(mirror, "init", "-q")
    by_git = git(mirror, "ls-files", "-co", "--exclude-standard", "-z", "--", *CLI_FILES)
    assert sorted(listed(CLI_FILES, mirror)) == sorted(filter(None, by_git.split("\0")))
    assert not set(IGNORED_DECOYS) & set(listed(CLI_FILES, mirror))
    copied = git(cli_readonly, "ls-files", "-z")
    own = {".venv"}  # the copy's link to this checkout's environment
    assert sorted(set(filter(None, copied.split("\0"))) - own) == sorted(listed(CLI_FILES))
