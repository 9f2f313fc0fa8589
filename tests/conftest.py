"""Shared fixtures: the repository root, the report schema, hand-built step contexts, a throw-away project copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cicd.context import StepContext

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def report_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((ROOT / "cicd" / "schemas" / "report.schema.json").read_text())
    return schema


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[Callable[..., StepContext]]:
    """Build a StepContext by hand: ``make_ctx(root=..., step="x", env=None)``; logs go to tmp."""
    handles = []

    def factory(
        root: Path = ROOT, step: str = "test-step", env: str | None = None, target: str = "local"
    ) -> StepContext:
        run_dir = tmp_path / "run"
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        log_path = run_dir / "logs" / f"{step}.log"
        handle = log_path.open("w", encoding="utf-8")
        handles.append(handle)
        return StepContext(root=root, run_dir=run_dir, step=step, env=env, target=target, log=handle, log_path=log_path)

    yield factory
    for handle in handles:
        handle.close()


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def copy_project(dest: Path) -> Path:
    """Copy the project's files (tracked and new, not ignored) to ``dest`` and commit them there.

    The copy shares this checkout's virtual environment (a symlink), so ``uv run`` in it starts at once.
    """
    listed = git(ROOT, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "copy")
    return dest


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project")
