"""The rule of the unit tier: unit tests run in-process, and no unit test reads the project as its subject.

One module (imported once, as ``tests.unit_tier``, by tests/conftest.py and by the tests of the rule itself), since
an audit hook cannot be removed: it is added once per process and does nothing while no unit test runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from cicd.steps.checks import COMPONENT_MARKER, UNIT_TEST_PATHS

ROOT = Path(__file__).resolve().parent.parent


class UnitTier:
    """The rule of the unit tier: unit tests run in-process, and no unit test reads the project as its subject.

    A test collected from the ``unit-test`` step's folders (``UNIT_TEST_PATHS``) without the ``slow`` or the
    ``component`` marker is a unit test however it is started, so ``pytest tests/unit/test_x.py`` on a laptop
    enforces what the step enforces. While one runs (set-up, call and tear-down), an audit hook refuses

    - starting a process (``subprocess``, ``os.system``, ``os.exec*``, ``os.spawn*``, ``os.posix_spawn``,
      ``os.fork``): a test that runs the project's tools, a server or the CLI is a ``component`` test;
    - opening a file of the working tree other than Python source, the tests' own files (``tests/``, with the
      fixture projects made for them) and the library's package data (``cicd/``, which the code under test reads
      itself); environment folders (``.venv``, ``node_modules``, tool caches) are not the project. A test that
      needs a project gets a fixture project; one that checks the project's own files is a ``component`` test.

    Audit hooks cannot be removed: the hook is added once per process and does nothing while no unit test runs.
    The refusal raises where the process would start or the file open; since the code under test may catch that,
    the test's report is made a failure too, naming what it did and the marker to use.
    """

    SPAWN_EVENTS = frozenset(
        {"subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty"}
    )
    NOT_PROJECT = frozenset({".venv", "node_modules", ".hypothesis", ".mypy_cache", ".ruff_cache", ".pytest_cache"})
    OWN_FILES = frozenset({"tests", "cicd"})
    SOURCE = (".py", ".pyc", ".pyi")

    def __init__(self, root: Path) -> None:
        self.root = str(root) + os.sep
        self.current: str | None = None
        self.refused: list[str] = []

    @contextmanager
    def watching(self, item: pytest.Item) -> Iterator[None]:
        """The rule holds while ``item``'s set-up, call or tear-down runs, if it is a unit test."""
        rel = self.unit_test_path(item)
        self.current = f"{rel}::{item.name}" if rel else None
        try:
            yield
        finally:
            self.current = None

    def unit_test_path(self, item: pytest.Item) -> str | None:
        """The test file of ``item`` (relative to the checkout) when ``item`` is a unit test, else None."""
        try:
            rel = item.path.relative_to(ROOT).as_posix()
        except ValueError:
            return None
        in_tier = any(rel.startswith(f"{folder}/") for folder in UNIT_TEST_PATHS)
        return rel if in_tier and not any(item.get_closest_marker(m) for m in ("slow", COMPONENT_MARKER)) else None

    def project_file(self, path: object, mode: object) -> str | None:
        """``path`` relative to the checkout when it is a project file a unit test may not open, else None."""
        if not isinstance(path, (str, bytes, os.PathLike)):
            return None  # a file descriptor
        name = Path(os.fsdecode(path))
        if mode is None and not name.is_absolute():
            return None  # os.open, maybe relative to a dir_fd the event does not carry (shutil.rmtree does that)
        full = os.path.normpath(name.absolute())
        if not full.startswith(self.root) or full.endswith(self.SOURCE) or not Path(full).is_file():
            return None
        rel = full[len(self.root) :]
        top = rel.split(os.sep, 1)[0]
        return None if top in self.OWN_FILES or top in self.NOT_PROJECT else rel

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if self.current is None:
            return
        if event in self.SPAWN_EVENTS:
            program = args[1] if event == "subprocess.Popen" else args[0] if args else ""
            if isinstance(program, (list, tuple)):
                program = program[0] if program else ""
            self.refuse(f"started a process ({event}: {os.fsdecode(program) if program else '?'})")
        elif event == "open" and args:
            rel = self.project_file(args[0], args[1] if len(args) > 1 else None)
            if rel is not None:
                self.refuse(f"opened {rel}, a file of the project's working tree")

    def refuse(self, what: str) -> None:
        message = (
            f"{self.current} is a unit test and {what}{self.where()}. Unit tests run in-process on what they "
            f"are given: keep it so (a fixture project under tests/unit/fixtures or tmp_path), or mark it "
            f"@pytest.mark.{COMPONENT_MARKER} (a whole module: pytestmark = pytest.mark.{COMPONENT_MARKER}) "
            f"to run it in the component-test step."
        )
        self.refused.append(message)
        raise PermissionError(message)

    def where(self) -> str:
        """`` at FILE:LINE`` of the innermost frame in the project's own code (not the libraries it calls)."""
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            name = frame.f_code.co_filename
            rel = name[len(self.root) :]
            if name != __file__ and name.startswith(self.root) and rel.split(os.sep, 1)[0] not in self.NOT_PROJECT:
                return f" at {rel}:{frame.f_lineno}"
            frame = frame.f_back
        return ""


UNIT_TIER = UnitTier(ROOT)
sys.addaudithook(UNIT_TIER.audit)
