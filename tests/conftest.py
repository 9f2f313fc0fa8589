"""Shared fixtures: the repository root, the report schema, hand-built step contexts, a throw-away project copy."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cicd.context import StepContext
from cicd.sandbox import copy_project, git  # noqa: F401 - git is re-exported for the test modules

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


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project")
