"""Isolated tool environments: the interpreter each is made with, and their locks."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from cicd import tools
from cicd.errors import MissingToolError
from tests.conftest import needs_program


def fake_python(folder: Path, version: str, *, works: bool = True) -> Path:
    """A stand-in interpreter that answers the version probe (or fails, like a pyenv shim with no such version)."""
    script = folder / f"python{version}"
    body = f'echo "{version.replace(".", " ")}"' if works else "echo 'pyenv: version not installed' >&2; exit 127"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def no_other_pythons(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.delenv(tools.PYTHON_VARIABLE, raising=False)


def test_this_interpreter_when_it_is_new_enough() -> None:
    assert tools.interpreter((3, 11)) == sys.executable


@pytest.mark.component  # runs interpreters
@pytest.mark.usefixtures("no_other_pythons")
def test_a_newer_interpreter_is_looked_for_and_a_broken_one_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = fake_python(tmp_path, "3.13", works=False)
    monkeypatch.setenv(tools.PYTHON_VARIABLE, str(broken))
    versions = tmp_path / "pyenv" / "versions"
    for version in ("3.12.1", "3.9.18"):
        (versions / version / "bin").mkdir(parents=True)
        fake_python(versions / version / "bin", version[:4].rstrip(".")).rename(versions / version / "bin" / "python3")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    assert tools.interpreter((3, 12)) == str(versions / "3.12.1" / "bin" / "python3")


@pytest.mark.usefixtures("no_other_pythons")
def test_no_new_enough_interpreter_is_one_clear_error() -> None:
    with pytest.raises(MissingToolError) as err:
        tools.interpreter((3, 99))
    assert "no Python >= 3.99" in str(err.value) and tools.PYTHON_VARIABLE in (err.value.hint or "")


def test_every_isolated_tool_is_locked_with_hashes_for_its_python() -> None:
    for tool in tools.ISOLATED.values():
        text = tool.lock_file.read_text()
        assert tool.version and "--hash=sha256:" in text, tool.name
    assert tools.BB_RUN.python == (3, 12) and tools.BB_RUN.version == "1.3.0"


def test_a_test_that_needs_a_missing_system_program_is_skipped_saying_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    mark = needs_program("java", "npm-groovy-lint")
    assert mark.args == (True,)
    assert mark.kwargs["reason"] == (
        "npm-groovy-lint needs java, which is not installed: sudo apt-get install default-jre-headless"
    )
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert needs_program("rsync", "gitlab-ci-local").args == (shutil.which("rsync") is None,)
