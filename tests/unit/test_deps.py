"""The lock: hashed, free of index addresses, and the constraints uv installs from match it exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from cicd import deps


@pytest.mark.component  # the project's own lock and pyproject.toml
def test_pyproject_constraints_match_the_lock(repo_root: Path) -> None:
    lock = (repo_root / deps.LOCK).read_text()
    block = deps.current_block((repo_root / "pyproject.toml").read_text())
    assert block == deps.constraints_block(lock), "run `uv run inv deps.lock`"


@pytest.mark.component  # the project's own lock and pyproject.toml
def test_lock_pins_every_package_with_hashes_and_no_urls(repo_root: Path) -> None:
    lock = (repo_root / deps.LOCK).read_text()
    pinned = deps.pins(lock)
    assert len(pinned) > 100
    assert lock.count("--hash=sha256:") >= len(pinned)
    assert "://" not in lock
    names = {p.split("==")[0] for p in pinned}
    assert {"boto3", "aws-cdk-lib", "invoke", "moto", "pytest"} <= names


def test_pins_keep_environment_markers() -> None:
    text = "colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:ab\nrich==15.0.0 \\\n    --hash=sha256:cd\n"
    assert deps.pins(text) == ["colorama==0.4.6 ; sys_platform == 'win32'", "rich==15.0.0"]
