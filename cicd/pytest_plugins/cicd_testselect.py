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
* records, through an audit hook (:mod:`cicd_select_audit`), every project file opened and every project folder
  listed under that owner; the Python processes the owner starts record theirs into ``DIR/children/``; an owner that
  starts another process able to see the project (a working directory or an argument inside it) depends on the
  whole project;
* records the same for the collection of each test module (its import, its parametrization), under the owner
  ``collect:<module>``, and for the rest of the collection (conftests, folders) under ``collect:``, and writes the
  modules collected and what their collection read into ``DIR/collected.json``;
* writes ``DIR/parts/<worker>.json``: per test its outcome, duration, processor time (its own and that of the
  processes it waited for), fixtures and recorded files; per fixture its files;
* does not collect the test modules listed in ``DIR/plan.json`` as ignored, and deselects the tests listed there as
  unaffected (all workers compute the same collection).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

if __package__:  # imported as part of the project (the selection code, mypy)
    from cicd.pytest_plugins.cicd_select_audit import EVERYTHING, Auditor
else:  # loaded by pytest from this folder on PYTHONPATH
    from cicd_select_audit import EVERYTHING, Auditor  # type: ignore[import-not-found, no-redef]

__all__ = ["CHILDREN", "EVERYTHING"]
OPTION = "--cicd-select"
CHILDREN = "children"  # DIR/children: the records of the Python processes the tests started
COLLECT = "collect:"  # owner prefix of what collection reads: `collect:` (the session), `collect:<module>`


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("cicd").addoption(
        OPTION, dest="cicd_select", metavar="DIR", default=None, help="record test inputs into DIR (cicd.testselect)"
    )


def fixture_id(fixturedef: Any) -> str:
    return f"{fixturedef.baseid}::{fixturedef.argname}"


def test_id(item: pytest.Item) -> str:
    """The test's node id without the ``@group`` suffix that pytest-xdist's ``loadgroup`` adds in its workers: a run
    in one process and a run on workers record a test under the same id."""
    groups = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    suffix = "@" + "_".join(sorted(groups))
    return item.nodeid[: -len(suffix)] if groups and item.nodeid.endswith(suffix) else item.nodeid


class Recorder(Auditor):
    def __init__(self, root: Path, folder: Path, worker: str) -> None:
        super().__init__(str(root))
        self.folder = folder
        self.worker = worker
        self.tests: dict[str, dict[str, Any]] = {}  # by test_id
        self.ids: dict[str, str] = {}  # node id (as reports carry it): test_id
        self.modules: list[str] = []  # the test modules collected, by node id
        self.plan: dict[str, Any] = {}

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
        super().push(owner)
        if not owner.startswith(COLLECT):  # collection runs in no test's context (imports: the static closure)
            self._switch()

    def pop(self) -> None:
        owner = self.owners[-1] if self.owners else ""
        super().pop()
        if not owner.startswith(COLLECT):
            self._switch()

    @contextmanager
    def owning(self, owner: str) -> Iterator[None]:
        """What happens inside is ``owner``'s."""
        self.push(owner)
        try:
            yield
        finally:
            self.pop()

    def write(self) -> None:
        parts = self.folder / "parts"
        parts.mkdir(parents=True, exist_ok=True)
        tests = {nodeid: {**info, "files": sorted(self.files.get(nodeid, ()))} for nodeid, info in self.tests.items()}
        fixtures = {
            owner: sorted(deps)
            for owner, deps in self.files.items()
            if owner not in self.tests and not owner.startswith(COLLECT)
        }
        payload = {"tests": tests, "fixtures": fixtures}
        (parts / f"{self.worker}.json").write_text(json.dumps(payload, sort_keys=True), encoding="utf-8")


_RECORDER_KEY = pytest.StashKey[Recorder]()
_ACTIVE: list[Recorder] = []  # the hooks that get no config (a test report) find it here


def pytest_configure(config: pytest.Config) -> None:
    folder = config.getoption("cicd_select")
    if not folder:
        return
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    Path(folder).mkdir(parents=True, exist_ok=True)  # the step makes it; a run by hand may name a new one
    recorder = Recorder(config.rootpath.resolve(), Path(folder), worker)
    plan_file = recorder.folder / "plan.json"
    recorder.plan = json.loads(plan_file.read_text(encoding="utf-8")) if plan_file.is_file() else {}
    config.stash[_RECORDER_KEY] = recorder
    _ACTIVE[:] = [recorder]
    recorder.export(str(Path(folder).resolve() / CHILDREN))
    sys.addaudithook(recorder.audit)  # audit hooks stay for the process's life; `active` turns this one off


def _recorder(config: pytest.Config) -> Recorder | None:
    return config.stash.get(_RECORDER_KEY, None)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    recorder = _recorder(config)
    if recorder is None or not recorder.plan.get("ignored"):
        return None
    try:
        rel = collection_path.resolve().relative_to(Path(recorder.root)).as_posix()
    except ValueError:
        return None
    return True if rel in recorder.plan["ignored"] else None


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session) -> Generator[None, None, None]:
    recorder = _recorder(session.config)
    if recorder is None or session.config.pluginmanager.has_plugin("dsession"):  # xdist's controller collects nothing
        yield
        return
    recorder.active = True  # what collection reads counts too: which tests exist depends on it
    with recorder.owning(COLLECT):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    recorder = _recorder(collector.config)
    module = collector if isinstance(collector, pytest.Module) else collector.getparent(pytest.Module)
    if recorder is None or module is None:
        yield
        return
    with recorder.owning(COLLECT + module.nodeid):  # importing the module, parametrizing its tests (its classes too)
        outcome = yield
    if collector is module and outcome.excinfo is None and outcome.get_result().passed:
        recorder.modules.append(module.nodeid)


@pytest.hookimpl(trylast=True)  # after -m/-k deselection, so the plan sees the tests the run would have run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    recorder = _recorder(config)
    if recorder is None:
        return
    unaffected = set(recorder.plan.get("unaffected", ()))
    ids = [test_id(item) for item in items]
    kept = [item for item, nodeid in zip(items, ids, strict=True) if nodeid not in unaffected]
    left = [item for item, nodeid in zip(items, ids, strict=True) if nodeid in unaffected]
    if recorder.worker in ("main", "gw0"):  # every worker collects the same tests: one of them says which
        reads = {module: sorted(recorder.files.get(COLLECT + module, ())) for module in recorder.modules}
        collected = {
            "collected": ids,
            "deselected": [nodeid for nodeid in ids if nodeid in unaffected],
            "modules": reads,
            "session": sorted(recorder.files.get(COLLECT, ())),
        }
        (recorder.folder / "collected.json").write_text(json.dumps(collected), encoding="utf-8")
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    recorder = _recorder(item.config)
    if recorder is None:
        yield
        return
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    fixtures = sorted({fixture_id(d) for name in getattr(item, "fixturenames", ()) for d in definitions.get(name, ())})
    nodeid = recorder.ids[item.nodeid] = test_id(item)
    recorder.tests[nodeid] = {"outcome": "passed", "fixtures": fixtures, "module": item.path.as_posix()}
    started = _processor_time()
    with recorder.owning(nodeid):
        yield
    recorder.tests[nodeid]["cpu"] = _processor_time() - started


def _processor_time() -> float:
    """Seconds of processor time of this process and of the children it waited for: unlike wall time, a test's
    does not grow when other programs share the cores."""
    used = os.times()
    return used.user + used.system + used.children_user + used.children_system


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Generator[None, None, None]:
    recorder = _recorder(request.config)
    if recorder is None or not recorder.owners:
        yield
        return
    with recorder.owning(fixture_id(fixturedef)):
        yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # xdist's controller sees every report too: only the process that ran the test has it in `tests`.
    recorder = _ACTIVE[0] if _ACTIVE else None
    nodeid = recorder.ids.get(report.nodeid, "") if recorder is not None else ""
    if recorder is None or nodeid not in recorder.tests:
        return
    info = recorder.tests[nodeid]
    info["duration"] = info.get("duration", 0.0) + report.duration  # setup, call and teardown
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
