"""Where bytecode writing is off, the pipeline's processes keep their bytecode in .cicd/pycache (cicd.bytecode)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cicd import bytecode, command


def test_an_environment_that_turns_writing_off_keeps_bytecode_in_the_checkouts_folder() -> None:
    env = bytecode.python_env({"PATH": "/bin", bytecode.OFF: "1"})
    assert env == {"PATH": "/bin", bytecode.PREFIX: str(bytecode.DIR)}
    assert bytecode.DIR.parts[-2:] == (".cicd", "pycache")  # not in .cicd/cache, which CI caches carry


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ({"PATH": "/bin"}, {"PATH": "/bin"}),  # writing on: Python keeps bytecode beside the sources
        ({bytecode.OFF: ""}, {bytecode.OFF: ""}),  # empty means unset to Python
        ({bytecode.OFF: "1", bytecode.PREFIX: "/elsewhere"}, {bytecode.PREFIX: "/elsewhere"}),  # the user's prefix
    ],
)
def test_other_environments_are_left_as_they_are(given: dict[str, str], kept: dict[str, str]) -> None:
    env = dict(given)
    bytecode.keep(env)
    assert env == kept


def test_keep_in_process_turns_writing_on_into_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "pycache_prefix", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    bytecode.keep_in_process()
    assert (sys.pycache_prefix, sys.dont_write_bytecode) == (str(bytecode.DIR), False)
    monkeypatch.setattr(sys, "pycache_prefix", "/elsewhere")
    bytecode.keep_in_process()
    assert sys.pycache_prefix == "/elsewhere"


@pytest.mark.component  # starts a Python process
def test_a_command_that_turns_writing_off_writes_its_bytecode_under_the_prefix(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "mod.py").write_text("VALUE = 42\n")
    prefix = tmp_path / "pycache"
    command.run(
        [sys.executable, "-c", "import mod; assert mod.VALUE == 42"],
        cwd=tmp_path / "src",
        env={bytecode.OFF: "1", bytecode.PREFIX: str(prefix)},
    )
    written = [p.name for p in prefix.rglob("*.pyc")]
    assert any(name.startswith("mod.") for name in written), written
    assert not (tmp_path / "src" / "__pycache__").exists()
