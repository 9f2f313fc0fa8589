"""pytest plugin of :mod:`cicd.testselect`: records what every test reads and runs, and leaves out the tests that
selection found unaffected.

Loaded by the test steps with ``-p cicd_testselect --cicd-select DIR``, this folder first on ``PYTHONPATH``: a
top-level module of its own, importing nothing of the project, so it loads in a project that has a ``cicd``
package of its own (the steps' tests run them on fixture projects). In each pytest process (every xdist
worker) it:

* keeps an *owner* (the test being run, or the fixture being set up, since a session fixture is set up once, in
  the first test that asks for it, and every later test depends on what it read too);
* switches coverage's dynamic context to that owner, so the executed lines of each test (and fixture) are told
  apart in the coverage data;
* records, through an audit hook, every project file opened and every project folder listed under that owner, and
  marks an owner that starts a process able to see the project (a working directory or an argument inside it) as
  depending on the whole project;
* writes ``DIR/parts/<worker>.json``: per test its outcome, fixtures and recorded files; per fixture its files;
* deselects the tests listed in ``DIR/plan.json`` as unaffected (all workers compute the same collection).
"""

# The audit hook runs on every open() of the test process: plain os.path string work, no Path objects, no symlinks
# resolved (a link inside the project is the project's file).
# ruff: noqa: PTH100, PTH109, PTH112, PTH113

from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

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
OPTION = "--cicd-select"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("cicd").addoption(
        OPTION, dest="cicd_select", metavar="DIR", default=None, help="record test inputs into DIR (cicd.testselect)"
    )


def fixture_id(fixturedef: Any) -> str:
    return f"{fixturedef.baseid}::{fixturedef.argname}"


class Recorder:
    def __init__(self, root: Path, folder: Path, worker: str) -> None:
        self.root = str(root)
        self.prefix = self.root + os.sep
        self.folder = folder
        self.worker = worker
        self.owners: list[str] = []
        self.files: dict[str, set[str]] = {}
        self.tests: dict[str, dict[str, Any]] = {}
        self.active = False

    # --- what an owner depends on -----------------------------------------------------------------------------

    def _rel(self, path: object) -> str | None:
        if isinstance(path, int):
            return None
        try:
            text = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        except (TypeError, ValueError):
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

    def _refers_to_project(self, text: str) -> bool:
        start = text.find(self.root)
        while start != -1:
            rest = text[start + len(self.root) :]
            if not rest or rest[0] != os.sep or not rest[1:].startswith(SKIPPED_PREFIXES):
                return True
            start = text.find(self.root, start + 1)
        return False

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
            _, argv, cwd, env = args
            where = os.path.abspath(os.fsdecode(cwd)) if cwd is not None else os.getcwd()
            texts = [os.fsdecode(a) for a in (argv if isinstance(argv, list | tuple) else [argv]) if a is not None]
            if env is not None:
                texts.append(os.fsdecode(env.get("PYTHONPATH", "")))
            if where == self.root or where.startswith(self.prefix) or any(map(self._refers_to_project, texts)):
                self._add(EVERYTHING)
        elif event in ("os.system", "os.exec", "os.posix_spawn", "os.spawn"):
            self._add(EVERYTHING)

    # --- ownership and coverage contexts ------------------------------------------------------------------------

    def _switch(self) -> None:
        try:
            import coverage
        except ImportError:  # pragma: no cover - coverage is a dependency of the test steps
            return
        current = coverage.Coverage.current()
        if current is not None:
            current.switch_context(self.owners[-1] if self.owners else "")

    def push(self, owner: str) -> None:
        self.owners.append(owner)
        self._switch()

    def pop(self) -> None:
        self.owners.pop()
        self._switch()

    def write(self) -> None:
        parts = self.folder / "parts"
        parts.mkdir(parents=True, exist_ok=True)
        tests = {nodeid: {**info, "files": sorted(self.files.get(nodeid, ()))} for nodeid, info in self.tests.items()}
        fixtures = {owner: sorted(deps) for owner, deps in self.files.items() if owner not in self.tests}
        payload = {"tests": tests, "fixtures": fixtures}
        (parts / f"{self.worker}.json").write_text(json.dumps(payload, sort_keys=True), encoding="utf-8")


_RECORDER_KEY = pytest.StashKey[Recorder]()
_ACTIVE: list[Recorder] = []  # the hooks that get no config (a test report) find it here


def pytest_configure(config: pytest.Config) -> None:
    folder = config.getoption("cicd_select")
    if not folder:
        return
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    recorder = Recorder(config.rootpath.resolve(), Path(folder), worker)
    config.stash[_RECORDER_KEY] = recorder
    _ACTIVE[:] = [recorder]
    sys.addaudithook(recorder.audit)  # audit hooks stay for the process's life; `active` turns this one off


def _recorder(config: pytest.Config) -> Recorder | None:
    return config.stash.get(_RECORDER_KEY, None)


@pytest.hookimpl(trylast=True)  # after -m/-k deselection, so the plan sees the tests the run would have run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    recorder = _recorder(config)
    if recorder is None:
        return
    plan_file = recorder.folder / "plan.json"
    plan: dict[str, Any] = json.loads(plan_file.read_text(encoding="utf-8")) if plan_file.is_file() else {}
    unaffected = set(plan.get("unaffected", ()))
    kept = [item for item in items if item.nodeid not in unaffected]
    left = [item for item in items if item.nodeid in unaffected]
    if recorder.worker in ("main", "gw0"):  # every worker collects the same tests: one of them says which
        collected = {"collected": [item.nodeid for item in items], "deselected": [item.nodeid for item in left]}
        (recorder.folder / "collected.json").write_text(json.dumps(collected), encoding="utf-8")
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept
    recorder.active = True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    recorder = _recorder(item.config)
    if recorder is None:
        yield
        return
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    fixtures = sorted({fixture_id(d) for name in getattr(item, "fixturenames", ()) for d in definitions.get(name, ())})
    recorder.tests[item.nodeid] = {"outcome": "passed", "fixtures": fixtures, "module": item.path.as_posix()}
    recorder.push(item.nodeid)
    try:
        yield
    finally:
        recorder.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Generator[None, None, None]:
    recorder = _recorder(request.config)
    if recorder is None or not recorder.owners:
        yield
        return
    recorder.push(fixture_id(fixturedef))
    try:
        yield
    finally:
        recorder.pop()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # xdist's controller sees every report too: only the process that ran the test has it in `tests`.
    recorder = _ACTIVE[0] if _ACTIVE else None
    if recorder is None or report.nodeid not in recorder.tests:
        return
    info = recorder.tests[report.nodeid]
    if report.failed:
        info["outcome"] = "failed"
    elif report.skipped and info["outcome"] == "passed":
        info["outcome"] = "skipped"


def pytest_sessionfinish(session: pytest.Session) -> None:
    recorder = _recorder(session.config)
    if recorder is None:
        return
    recorder.active = False
    if recorder.tests:  # xdist's controller runs no test and writes nothing
        recorder.write()
