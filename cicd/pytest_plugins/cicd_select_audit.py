"""What a test reads, seen from inside a process: the audit hook of :mod:`cicd.testselect`, in the test process and in
the Python processes a test starts.

The pytest plugin (``cicd_testselect``) keeps an :class:`Auditor` in each test process, owned in turn by the test
being run or the fixture being set up. It exports the owner, the project root and a records folder in the
environment (:data:`OWNER`, :data:`ROOT`, :data:`RECORDS`), and the step puts this folder first on ``PYTHONPATH``,
where :mod:`sitecustomize` starts an auditor in every Python process that inherits them (:func:`start_in_child`). A
child's auditor keeps a journal, ``RECORDS/<pid>-<n>-<time>.jsonl``: a first line with its owner, then one line per
project file as it first reads it, written before the read goes on, and a last line when it ends (normal exit,
``sys.exit``, ``os._exit``, as a forked ``multiprocessing`` child ends, or ``SIGTERM``). So a process killed
(``SIGKILL``) or still running when the records are read has read what its journal holds so far; the selection code
adds the files to the owner's. A journal line that cannot be read makes the owner depend on everything; a last line
still being written is left out (that process reads the file after its test). A module imported from its cached
bytecode counts as its source file.

A process that ``exec``s another program ends its journal first, and the program is judged as a new process.
A program that isolates its Python (``-I``) can start the recording itself: it calls :func:`start_in_child`, and
whoever builds its environment adds :func:`passed_on` (the local API's function workers do).

A process the auditor cannot follow (not Python, started with ``-I``/``-E``/``-S``, or given an environment without
this owner) that can see the project (its working directory, an argument, or ``PYTHONPATH`` inside the project)
makes the owner depend on everything. One whose only way into the project is a ``PYTHONPATH`` folder depends on the
Python files under that folder.

Standard library only: it runs at the start of every Python process a test starts.
"""

# The audit hook runs on every open() of the process: plain os.path string work, no Path objects, no symlinks
# resolved (a link inside the project is the project's file).
# ruff: noqa: PTH100, PTH103, PTH109, PTH112, PTH113, PTH118, PTH119, PTH120, PTH123, PTH208

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import itertools
import json
import os
import re
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

EVERYTHING = "*"  # the dependency of a test that started a process able to see the project
SKIPPED_PREFIXES = (  # never inputs: tool state, environments, caches, run folders
    ".git/",
    ".venv/",
    ".cicd/",
    "node_modules/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".pytest_cache/",
    ".hypothesis/",
    "cdk.out/",
)
OWNER = "CICD_SELECT_OWNER"
ROOT = "CICD_SELECT_ROOT"
RECORDS = "CICD_SELECT_RECORDS"
SELF = "CICD_SELECT_SELF"  # "1": the program starts its recording itself (isolated Pythons: the local API workers)
HERE = os.path.dirname(os.path.abspath(__file__))
_PYTHON = re.compile(r"python[0-9.]*$")
_ISOLATING_FLAGS = re.compile(r"-[A-Za-z]*[IES]")  # -I, -E, -S alone or grouped (-IS): PYTHONPATH is not read


def is_python(argv0: str, environ: Mapping[str, str]) -> bool:
    """Whether ``argv0`` starts a Python interpreter: the interpreter itself, or a script whose first lines call
    one (a console script, or its ``/bin/sh`` trampoline)."""
    path = argv0
    if os.sep not in argv0:
        for folder in environ.get("PATH", os.defpath).split(os.pathsep):
            candidate = os.path.join(folder or ".", argv0)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                path = candidate
                break
        else:
            return False
    if _PYTHON.search(os.path.basename(path)):
        return True
    try:
        with open(path, "rb") as script:
            head = script.read(512)
    except OSError:
        return False
    lines = head.split(b"\n")
    if not lines[0].startswith(b"#!"):
        return False
    if b"python" in lines[0]:
        return True
    return lines[0].strip() == b"#!/bin/sh" and len(lines) > 1 and lines[1].startswith(b"'''exec'")


def _isolated(argv: Sequence[str]) -> bool:
    """Whether the interpreter's own options make it ignore ``PYTHONPATH``."""
    for arg in argv[1:]:
        if not arg.startswith("-") or arg in ("-m", "-c", "-"):
            return False
        if arg.startswith(("-X", "-W", "--")):
            continue
        if _ISOLATING_FLAGS.match(arg):
            return True
    return False


class Auditor:
    """Records, per owner, the project files opened and folders listed, and the processes that can see the project."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.prefix = root + os.sep
        self.owners: list[str] = []
        self.files: dict[str, set[str]] = {}
        self.active = False

    def _rel(self, path: object) -> str | None:
        if isinstance(path, int):
            return None
        try:
            text = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if text.endswith(".pyc"):  # a module loaded from its bytecode: its source is what the process read
            try:
                text = importlib.util.source_from_cache(text)
            except ValueError:  # not a cache file (or outside the cache prefix)
                return None
        if not text.startswith(self.prefix):
            return None
        rel = text[len(self.prefix) :]
        if rel.startswith(SKIPPED_PREFIXES) or "__pycache__" in rel:
            return None
        return rel

    def _add(self, dep: str) -> None:
        if self.owners:
            self.files.setdefault(self.owners[-1], set()).add(dep)

    def _inside(self, text: str) -> bool:
        """Whether ``text`` names a project path outside the skipped folders."""
        start = text.find(self.root)
        while start != -1:
            rest = text[start + len(self.root) :]
            if not rest or rest[0] != os.sep or not rest[1:].startswith(SKIPPED_PREFIXES):
                return True
            start = text.find(self.root, start + 1)
        return False

    def _python_files(self, folder: str) -> set[str]:
        found: set[str] = set()
        for parent, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in names:
                if name.endswith(".py"):
                    rel = self._rel(os.path.join(parent, name))
                    if rel is not None:
                        found.add(rel)
        return found

    def _followed(self, argv: Sequence[str], environ: Mapping[str, str]) -> bool:
        """Whether the process will record what it reads itself, with this owner: Python reading ``PYTHONPATH``
        (where :mod:`sitecustomize` starts the recording), or a program that starts it itself (:data:`SELF`)."""
        if not (
            self.owners
            and environ.get(OWNER) == self.owners[-1]
            and environ.get(ROOT) == self.root
            and environ.get(RECORDS)
            and argv
        ):
            return False
        if environ.get(SELF) == "1":
            return True
        return (
            HERE in environ.get("PYTHONPATH", "").split(os.pathsep)
            and is_python(argv[0], environ)
            and not _isolated(argv)
        )

    def _process(self, executable: object, argv: object, cwd: object, env: Mapping[str, str] | None) -> None:
        environ = os.environ if env is None else env
        items = argv if isinstance(argv, list | tuple) else [argv]
        args = [os.fsdecode(a) for a in items if isinstance(a, str | bytes | os.PathLike)]
        if isinstance(executable, str | bytes | os.PathLike) and args:
            args[0] = os.fsdecode(executable)
        if self._followed(args, environ):
            return
        where = os.path.abspath(os.fsdecode(cwd)) if isinstance(cwd, str | bytes | os.PathLike) else os.getcwd()
        if where == self.root or where.startswith(self.prefix) or any(map(self._inside, args)):
            self._add(EVERYTHING)
            return
        for folder in environ.get("PYTHONPATH", "").split(os.pathsep):
            if folder and self._inside(os.path.abspath(folder)):
                for rel in self._python_files(os.path.abspath(folder)):
                    self._add(rel)

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or not self.owners:
            return
        if event == "open":
            rel = self._rel(args[0])
            if rel is not None and os.path.isfile(self.prefix + rel):
                self._add(rel)
        elif event in ("os.listdir", "os.scandir"):
            rel = self._rel(args[0] if args[0] is not None else ".")
            if rel is not None and os.path.isdir(self.prefix + rel):
                self._add("dir:" + rel)
        elif event == "subprocess.Popen":
            self._process(*args)
        elif event in ("os.system", "os.exec", "os.posix_spawn", "os.spawn"):
            self._add(EVERYTHING)

    def push(self, owner: str) -> None:
        self.owners.append(owner)
        os.environ[OWNER] = owner

    def pop(self) -> None:
        self.owners.pop()
        if self.owners:
            os.environ[OWNER] = self.owners[-1]
        else:
            os.environ.pop(OWNER, None)

    def export(self, records: str) -> None:
        """Let the Python processes the owners start record what they read, into ``records``."""
        os.environ[ROOT] = self.root
        os.environ[RECORDS] = records


class ChildAuditor(Auditor):
    """The auditor of a process a test started: one owner (the test's), its journal written as it reads."""

    _numbers = itertools.count()

    def __init__(self, root: str, owner: str, records: str) -> None:
        super().__init__(root)
        self.owner = owner
        self.records = records
        self.owners = [owner]
        self.path = ""
        self._fd = -1

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "os.exec" and self.active:  # this process becomes another program: judge it, then finish
            self._process(args[0], args[1], None, args[2])
            self.end()
            return
        super().audit(event, args)

    def _add(self, dep: str) -> None:
        known = self.files.setdefault(self.owner, set())
        if dep not in known:
            known.add(dep)
            self._journal(dep)

    def _journal(self, entry: object) -> None:
        if self._fd < 0:
            return
        # One write per line, appended: a reader sees whole lines (a kill cannot cut a write to a file short). A full
        # disk fails the step's own writes too.
        with contextlib.suppress(OSError):
            os.write(self._fd, (json.dumps(entry) + "\n").encode("utf-8"))

    def note_modules(self) -> None:
        """Add the project modules imported so far (before the audit hook, or loaded without an ``open``)."""
        for module in list(sys.modules.values()):
            rel = self._rel(getattr(module, "__file__", None) or "")
            if rel is not None:
                self._add(rel)

    def begin(self) -> None:
        """Start this process's journal (again in a forked child, which has a journal of its own): the owner, then
        what the process read so far."""
        if self._fd >= 0:
            os.close(self._fd)  # a forked child's copy of its parent's journal
        # The time too: process ids are reused (32768 of them on many machines, and a test step starts thousands of
        # processes), and a journal must never replace another's.
        name = f"{os.getpid()}-{next(self._numbers)}-{time.time_ns()}.jsonl"
        self.path = os.path.join(self.records, name)
        try:
            os.makedirs(self.records, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError:  # pragma: no cover - no journal: nothing of this process is known
            self._fd = -1
            return
        self._journal({"owner": self.owner, "argv": sys.argv})
        for dep in sorted(self.files.get(self.owner, ())):
            self._journal(dep)

    def end(self) -> None:
        """End the journal: the modules imported last, then the closing line."""
        if self._fd >= 0:
            self.note_modules()
            self._journal({"done": True})
            os.close(self._fd)
            self._fd = -1

    def finish(self) -> None:
        self.active = False
        self.end()

    def on_sigterm(self, signum: int, _frame: object) -> None:
        self.finish()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def passed_on(environ: Mapping[str, str]) -> dict[str, str]:
    """What a process that builds its children's environment from scratch (the local API's function workers, isolated
    Pythons that call :func:`start_in_child` themselves) passes on so that a recorded test follows them too: the
    owner, root and records folder, this folder as ``PYTHONPATH`` and :data:`SELF`. Empty when no test is being
    recorded."""
    names = (OWNER, ROOT, RECORDS)
    if not all(environ.get(name) for name in names):
        return {}
    return {**{name: environ[name] for name in names}, "PYTHONPATH": HERE, SELF: "1"}


def start_in_child() -> None:
    """Start recording in this process if a test being recorded started it (called by ``sitecustomize``)."""
    owner, root, records = os.environ.get(OWNER), os.environ.get(ROOT), os.environ.get(RECORDS)
    if not (owner and root and records):
        return
    os.environ.pop(SELF, None)  # for this process only: a program it starts is judged as any other
    auditor = ChildAuditor(root, owner, records)
    auditor.note_modules()
    auditor.begin()
    auditor.active = True
    sys.addaudithook(auditor.audit)
    atexit.register(auditor.finish)
    os.register_at_fork(after_in_child=auditor.begin)  # a fork keeps a journal of its own
    real_exit = os._exit

    def finished_exit(status: int) -> NoReturn:  # skips atexit: how a forked multiprocessing child ends
        auditor.finish()
        real_exit(status)

    os._exit = finished_exit
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, auditor.on_sigterm)
    except ValueError:  # pragma: no cover - not the main thread
        pass


def read_journal(path: str) -> tuple[str, set[str], bool]:
    """``(owner, files, finished)`` from one journal; every file (:data:`EVERYTHING`) when a line cannot be read. A
    last line without its end is being written by a process still running: it reads that file after its test ended,
    so it is left out."""
    owner, files, finished = "", set(), False
    with open(path, encoding="utf-8") as source:
        for number, line in enumerate(source):
            if not line.endswith("\n"):  # only the last line can lack its end
                break
            try:
                entry = json.loads(line)
            except ValueError:
                return owner, {EVERYTHING}, finished
            if number == 0 and isinstance(entry, dict):
                owner = str(entry.get("owner", ""))
            elif isinstance(entry, str):
                files.add(entry)
            elif isinstance(entry, dict) and entry.get("done") is True:
                finished = True
            else:
                return owner, {EVERYTHING}, finished
    return owner, files, finished


def child_records(records: str) -> dict[str, set[str]]:
    """``{owner: files}`` from the journals in the records folder (finished or not: a process read what its journal
    holds; one whose journal cannot be read depends on everything)."""
    found: dict[str, set[str]] = {}
    try:
        names = sorted(os.listdir(records))
    except OSError:
        return found
    for name in names:
        if not name.endswith(".jsonl"):
            continue
        try:
            owner, files, _finished = read_journal(os.path.join(records, name))
        except OSError:
            continue
        found.setdefault(owner, set()).update(files)
    return found
