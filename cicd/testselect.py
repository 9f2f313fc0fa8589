"""Affected-only tests: a test step reruns only the tests whose inputs changed since the run that recorded them.

What a test depends on is recorded while it runs (by the pytest plugin ``cicd/pytest_plugins/cicd_testselect.py``),
at the granularity of files:

* every project file it *executes*, from coverage's per-test dynamic contexts (the fixtures it uses count too:
  a session fixture runs once, in the first test that asks for it);
* every project file it *imports*: the static import closure of its module and of the ``conftest.py`` files above
  it (module-level code runs at collection time, outside any test);
* every project file it *opens* and every project folder it *lists* (fixture files, schemas, globs), from an audit
  hook;
* what the Python processes it starts import, open and list, recorded by the same audit hook in each of them
  (``sitecustomize`` in the plugin's folder, which the step puts first on ``PYTHONPATH``), in a journal written as
  they read, so a process killed or still running has read what its journal holds;
* *everything the step reads* when it starts another process that can see the project (not Python, or with an
  environment of its own; a working directory or an argument inside the project), or when a journal cannot be read
  whole: what such a process reads cannot be observed, so any change to the step's inputs reruns the test.

The next run of the step hashes those files again. A test reruns when one of its files changed, when it did not
pass last time, or when it is new; every other test is deselected. Everything runs, and the step says why, when
there is no recorded data, when it cannot be read or (with ``CICD_CACHE_SECRET``) its signature does not verify,
when the test arguments changed, or when something every test depends on changed: ``pyproject.toml``,
``requirements.lock``, the installed packages, the Python version, or this selection code.

Collecting a test module costs time too (importing it and what it imports), so a test module is not even collected
when nothing its collection depends on changed and every test it had in the recorded run is left out. What its
collection depends on is recorded like a test's inputs: the static import closure of the module and of its
conftests, what its import and parametrization opened and listed, and what the rest of the collection read (every
conftest, the test folders' listings). Its tests keep their record. A new module, a changed one and one with a test
to rerun are collected.

The data lives in ``.cicd/cache/select/<step>/``, inside the step cache folder that every CI adapter saves and
restores, so CI jobs select too. It is signed like the step cache's entries: a branch that cannot sign cannot make
a trusted branch skip tests.

Coverage gate: a selective run measures only the tests it reran, so the gate is computed on the *combined* data:
the previous run's coverage for every file that did not change, plus this run's. Every test that executed a changed
file reran (that is what selected it), so the combined data is what a full run would measure.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import importlib.metadata
import json
import os
import platform
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cicd.pytest_plugins.cicd_select_audit import EVERYTHING, child_records
from cicd.pytest_plugins.cicd_testselect import CHILDREN, COLLECT

FORMAT = 2
GLOBAL_FILES = ("pyproject.toml", "requirements.lock")
SELECT_DIR = Path(".cicd") / "cache" / "select"
SIGNING_VARIABLE = "CICD_CACHE_SECRET"
VERIFY_VARIABLE = "CICD_CACHE_VERIFY"
DATA = "data.json"
COVERAGE = "coverage.json"
SIGNATURE = "signature"
IMPORT_ROOTS = (".", "functions")
PLUGIN = "cicd_testselect"
PLUGIN_DIR = Path(__file__).resolve().parent / "pytest_plugins"  # pytest's `pythonpath`
SERIAL_BELOW = 15.0  # processor seconds the tests to rerun took, under which an affected-only run uses one process


class SelectionError(Exception):
    """The recorded data cannot be used (unreadable, unsigned, another format)."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_hash(root: Path, dep: str) -> str:
    """Content hash of a recorded dependency: a file, or ``dir:PATH`` (the names in that folder); absent is ``-``."""
    if dep.startswith("dir:"):
        folder = root / dep[4:]
        if not folder.is_dir():
            return "-"
        names = sorted(p.name for p in folder.iterdir() if p.name != "__pycache__")
        return _digest("\n".join(names).encode())
    path = root / dep
    try:
        return _digest(path.read_bytes())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return "-"


def inputs_digest(root: Path, files: Iterable[str]) -> str:
    """One hash over the step's input files: what a test that starts a project-seeing process depends on."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + file_hash(root, rel).encode() + b"\0")
    return digest.hexdigest()


def global_state(root: Path) -> dict[str, str]:
    """What every test depends on: project configuration, locked and installed packages, Python, this code."""
    state = {name: file_hash(root, name) for name in GLOBAL_FILES}
    packages = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    state["installed packages"] = _digest("\n".join(packages).encode())
    state["Python"] = platform.python_version()
    here = Path(__file__).resolve().parent
    code = [here / "testselect.py", *sorted(PLUGIN_DIR.glob("*.py"))]
    state["the selection code"] = _digest(b"".join(path.read_bytes() for path in code))
    return state


# --- static imports --------------------------------------------------------------------------------------------


def _module_file(root: Path, name: str) -> Path | None:
    parts = name.split(".")
    for base in IMPORT_ROOTS:
        candidate = root.joinpath(base, *parts)
        if (candidate / "__init__.py").is_file():
            return candidate / "__init__.py"
        if candidate.with_suffix(".py").is_file():
            return candidate.with_suffix(".py")
    return None


def _imported_names(path: Path, package: str) -> set[str]:
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # `from .x import y` in package a.b is a.b.x; `from ..x` is a.x
                anchor = package.split(".")[: package.count(".") + 2 - node.level] if package else []
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n}


class ImportGraph:
    """The project's static imports, each file parsed once (a graph lives for one recording: files change between
    runs)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._edges: dict[Path, set[Path]] = {}
        self._modules: dict[str, Path | None] = {}

    def _module(self, name: str) -> Path | None:
        if name not in self._modules:
            self._modules[name] = _module_file(self.root, name)
        return self._modules[name]

    def imports(self, path: Path) -> set[Path]:
        """The project files importing ``path`` runs directly: each module it names, with its packages' ``__init__``."""
        if path not in self._edges:
            rel = path.relative_to(self.root)
            module_parts = list(rel.with_suffix("").parts)
            if module_parts and module_parts[0] in IMPORT_ROOTS[1:]:
                module_parts = module_parts[1:]
            package = ".".join(module_parts[:-1])  # a/b/c.py and a/b/__init__.py are both in package a.b
            found: set[Path] = set()
            for name in _imported_names(path, package):
                pieces = name.split(".")
                for end in range(1, len(pieces) + 1):  # `import a.b.c` runs a/__init__, a/b/__init__ and a/b/c
                    module = self._module(".".join(pieces[:end]))
                    if module is not None:
                        found.add(module)
            self._edges[path] = found
        return self._edges[path]

    def closure(self, start: Path) -> set[str]:
        """Project files that importing ``start`` executes: its imports, transitively."""
        seen: set[Path] = set()
        todo = [start]
        while todo:
            path = todo.pop()
            if path not in seen:
                seen.add(path)
                todo.extend(self.imports(path) - seen)
        return {p.relative_to(self.root).as_posix() for p in seen}


def import_closure(root: Path, start: Path) -> set[str]:
    """Project files that importing ``start`` executes: its imports, transitively, with their packages' ``__init__``."""
    return ImportGraph(root).closure(start)


def conftests(root: Path, module: Path) -> list[Path]:
    found = []
    folder = module.parent
    while folder == root or root in folder.parents:
        if (folder / "conftest.py").is_file():
            found.append(folder / "conftest.py")
        if folder == root:
            break
        folder = folder.parent
    return found


# --- the plan before a run -------------------------------------------------------------------------------------


@dataclass
class Plan:
    run_all: bool
    reason: str
    changed: list[str] = field(default_factory=list)
    unaffected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # test modules not collected: unchanged, every test unaffected
    rerun_seconds: float = 0.0  # processor time the recorded tests that rerun took in the recorded run (new: unknown)
    previous: dict[str, Any] | None = None
    previous_coverage: dict[str, Any] | None = None

    def describe(self) -> str:
        if self.run_all:
            return f"every test runs: {self.reason}"
        shown = ", ".join(self.changed[:5]) + (f" and {len(self.changed) - 5} more" if len(self.changed) > 5 else "")
        return (
            f"affected-only: {len(self.unaffected)} test(s) unaffected and left out, "
            f"{len(self.ignored)} test module(s) not collected; "
            f"changed since the recorded run: {shown or 'nothing any test depends on'}; "
            f"the tests to rerun took {self.rerun_seconds:.1f} s of processor time in the recorded run"
        )


def _secret(environ: Mapping[str, str]) -> bytes:
    return environ.get(SIGNING_VARIABLE, "").encode()


def _signature(secret: bytes, folder: Path) -> str:
    mac = hmac.new(secret, b"cicd.testselect", hashlib.sha256)
    for name in (DATA, COVERAGE):
        path = folder / name
        mac.update(b"\0" + name.encode() + b"\0" + (_digest(path.read_bytes()).encode() if path.is_file() else b"-"))
    return mac.hexdigest()


def load(folder: Path, environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The recorded data and coverage of ``folder``; :class:`SelectionError` when they cannot be trusted or read."""
    data_file = folder / DATA
    if not data_file.is_file():
        raise SelectionError("no selection data from an earlier run")
    secret = _secret(environ)
    if secret or environ.get(VERIFY_VARIABLE, "").lower() == "true":
        signature = folder / SIGNATURE
        if not secret:
            raise SelectionError(f"{VERIFY_VARIABLE} asks for signed selection data and {SIGNING_VARIABLE} is not set")
        if not signature.is_file() or not hmac.compare_digest(
            signature.read_text(encoding="utf-8").strip(), _signature(secret, folder)
        ):
            raise SelectionError("the selection data is unsigned or its signature does not verify")
    try:
        data: dict[str, Any] = json.loads(data_file.read_text(encoding="utf-8"))
        coverage_file = folder / COVERAGE
        cov = json.loads(coverage_file.read_text(encoding="utf-8")) if coverage_file.is_file() else None
    except (OSError, ValueError) as err:
        raise SelectionError(f"the selection data cannot be read ({err.__class__.__name__})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SelectionError("the selection data has another format")
    try:
        return _decode(data), cov
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise SelectionError(f"the selection data cannot be read ({err.__class__.__name__})") from err


def _encode(data: dict[str, Any]) -> dict[str, Any]:
    """The stored form: each dependency once, with its hash; a test lists the positions of its dependencies."""
    names = sorted(data["files"])
    index = {name: i for i, name in enumerate(names)}
    tests = {
        nodeid: {
            "deps": [index[d] for d in info["deps"]],
            "outcome": info["outcome"],
            "duration": info.get("duration", 0.0),
            "cpu": info.get("cpu", 0.0),
        }
        for nodeid, info in data["tests"].items()
    }
    modules = {module: [index[d] for d in deps] for module, deps in data["modules"].items()}
    return {**data, "files": [[name, data["files"][name]] for name in names], "tests": tests, "modules": modules}


def _decode(data: dict[str, Any]) -> dict[str, Any]:
    names = [str(name) for name, _ in data["files"]]
    tests = {
        nodeid: {
            "deps": [names[i] for i in info["deps"]],
            "outcome": info["outcome"],
            "duration": float(info.get("duration", 0.0)),
            "cpu": float(info.get("cpu", 0.0)),
        }
        for nodeid, info in data["tests"].items()
    }
    modules = {str(module): [names[i] for i in deps] for module, deps in data["modules"].items()}
    files = {str(name): str(digest) for name, digest in data["files"]}
    return {**data, "files": files, "tests": tests, "modules": modules}


def module_of(nodeid: str) -> str:
    """The test module of a test's node id (``tests/test_x.py::Class::test[param]``: ``tests/test_x.py``)."""
    return nodeid.split("::", 1)[0]


def plan(root: Path, folder: Path, args: Sequence[str], step_inputs: Iterable[str], environ: Mapping[str, str]) -> Plan:
    """Which recorded tests can be left out of this run, from the data kept in ``folder``."""
    try:
        data, cov = load(folder, environ)
    except SelectionError as err:
        return Plan(True, str(err))
    if data.get("args") != list(args):
        return Plan(True, "the test arguments changed since the recorded run", previous=data)
    now = global_state(root)
    moved = [name for name, value in now.items() if data.get("global", {}).get(name) != value]
    if moved:
        return Plan(True, f"{', '.join(moved)} changed since the recorded run", previous=data)
    files: dict[str, str] = data.get("files", {})
    changed = sorted(
        dep
        for dep, recorded in files.items()
        if (inputs_digest(root, step_inputs) if dep == EVERYTHING else file_hash(root, dep)) != recorded
    )
    changed_set = set(changed)
    unaffected = sorted(
        nodeid
        for nodeid, info in data.get("tests", {}).items()
        if info.get("outcome") == "passed" and changed_set.isdisjoint(info.get("deps", (EVERYTHING,)))
    )
    left_out = set(unaffected)
    rerun = {module_of(nodeid) for nodeid in data.get("tests", {}) if nodeid not in left_out}
    seconds = sum(info.get("cpu", 0.0) for nodeid, info in data.get("tests", {}).items() if nodeid not in left_out)
    ignored = sorted(
        module
        for module, deps in data.get("modules", {}).items()
        if module not in rerun and changed_set.isdisjoint(deps)
    )
    return Plan(False, "", changed, unaffected, ignored, seconds, previous=data, previous_coverage=cov)


def workers(selection: Plan) -> str:
    """pytest-xdist workers for the run: ``auto`` (one per core), or ``0`` (one process) for an affected-only run
    whose recorded tests to rerun took less than :data:`SERIAL_BELOW` seconds of processor time (theirs and that of
    the processes they waited for: a cold run, its steps sharing the cores, stretches wall time two or three times,
    not this). Each worker starts its own interpreter and collects the modules again, seconds of work that only pay
    off when the tests take longer; tests new since the recorded run are not counted."""
    return "0" if not selection.run_all and selection.rerun_seconds < SERIAL_BELOW else "auto"


def pytest_options(work: Path, *, workers: str, sources: Sequence[str]) -> list[str]:
    """The options of a selective pytest run after its arguments: quiet, no cache provider, this plugin writing into
    ``work``, ``workers`` pytest-xdist workers (``auto``: one per core; ``0``: in one process), coverage of
    ``sources`` kept in ``COVERAGE_FILE`` without a report."""
    return [
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        PLUGIN,
        f"--cicd-select={work}",
        "-n",
        workers,
        *[f"--cov={source}" for source in sources],
        "--cov-report=",
    ]


def write_plan(folder: Path, selection: Plan) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "run_all": selection.run_all,
        "reason": selection.reason,
        "unaffected": selection.unaffected,
        "ignored": selection.ignored,
    }
    (folder / "plan.json").write_text(json.dumps(payload), encoding="utf-8")


# --- what the run recorded -------------------------------------------------------------------------------------


def _executed(root: Path, coverage_file: Path) -> tuple[dict[str, set[str]], dict[str, Any]]:
    """``{context: files executed}`` and ``{"arcs": bool, "files": {file: lines or arcs}}`` from a coverage file."""
    from coverage import CoverageData

    data = CoverageData(basename=str(coverage_file))
    data.read()
    arcs = data.has_arcs()
    by_context: dict[str, set[str]] = {}
    measured: dict[str, Any] = {}
    prefix = str(root) + os.sep
    for path in data.measured_files():
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix) :]
        measured[rel] = sorted(data.arcs(path) or []) if arcs else sorted(data.lines(path) or [])
        for contexts in data.contexts_by_lineno(path).values():
            for context in contexts:
                by_context.setdefault(context, set()).add(rel)
    return by_context, {"arcs": arcs, "files": measured}


def _parts(folder: Path) -> tuple[dict[str, dict[str, Any]], dict[str, set[str]]]:
    tests: dict[str, dict[str, Any]] = {}
    fixtures: dict[str, set[str]] = {}
    for part in sorted((folder / "parts").glob("*.json")):
        payload = json.loads(part.read_text(encoding="utf-8"))
        tests.update(payload["tests"])
        for fid, deps in payload["fixtures"].items():
            fixtures.setdefault(fid, set()).update(deps)
    for owner, deps in child_records(str(folder / CHILDREN)).items():  # what the processes each owner started read
        if owner in tests:
            tests[owner]["files"] = sorted(set(tests[owner]["files"]) | deps)
        else:
            fixtures.setdefault(owner, set()).update(deps)
    return tests, fixtures


@dataclass
class Recorded:
    ran: list[str]
    coverage: dict[str, Any]


def record(
    root: Path,
    work: Path,
    store: Path,
    *,
    selection: Plan,
    args: Sequence[str],
    step_inputs: Iterable[str],
    coverage_file: Path,
    environ: Mapping[str, str],
) -> Recorded:
    """Merge what the run in ``work`` recorded with the data it selected from, and keep the result in ``store``."""
    tests_now, fixture_files = _parts(work)
    executed, measured = _executed(root, coverage_file) if coverage_file.is_file() else ({}, {"files": {}})
    collected_file = work / "collected.json"
    collected = json.loads(collected_file.read_text(encoding="utf-8")) if collected_file.is_file() else {}
    closures: dict[str, set[str]] = {}
    graph = ImportGraph(root)

    def static(module: str) -> set[str]:
        if module not in closures:
            path = Path(module)
            deps: set[str] = set()
            if path.is_file() and root in path.resolve().parents:
                for start in (path.resolve(), *conftests(root, path.resolve())):
                    deps |= graph.closure(start)
            closures[module] = deps
        return closures[module]

    previous = (selection.previous or {}) if not selection.run_all else {}
    previous_tests: dict[str, Any] = previous.get("tests", {})
    ignored = set(selection.ignored)
    tests: dict[str, Any] = {}
    deselected = set(collected.get("deselected", ()))
    for nodeid, info in previous_tests.items():  # left out, or in a module not collected: the record stays
        if nodeid in deselected or module_of(nodeid) in ignored:
            tests[nodeid] = info
    for nodeid, info in tests_now.items():
        deps = set(info["files"]) | executed.get(nodeid, set()) | static(info["module"])
        for fid in info["fixtures"]:
            deps |= fixture_files.get(fid, set()) | executed.get(fid, set())
        duration, cpu = round(info.get("duration", 0.0), 3), round(info.get("cpu", 0.0), 3)
        tests[nodeid] = {"deps": sorted(deps), "outcome": info["outcome"], "duration": duration, "cpu": cpu}
    modules: dict[str, list[str]] = {
        module: deps for module, deps in previous.get("modules", {}).items() if module in ignored
    }
    # The rest of the collection, for every module: what it listed and read, and the conftests it loaded (their hooks
    # see every test). Not the modules the conftests import: each module's static closure has its own conftests'.
    session = {
        dep for dep in collected.get("session", ()) if not dep.endswith(".py") or Path(dep).name == "conftest.py"
    }
    session |= fixture_files.get(COLLECT, set())
    for module, reads in collected.get("modules", {}).items():
        owner = COLLECT + module
        deps = set(reads) | fixture_files.get(owner, set()) | session
        modules[module] = sorted(deps | static(str(root / module)))
    inputs = list(step_inputs)
    files: dict[str, str] = {}
    for deps in [*(info["deps"] for info in tests.values()), *modules.values()]:
        for dep in deps:
            if dep not in files:
                files[dep] = inputs_digest(root, inputs) if dep == EVERYTHING else file_hash(root, dep)
    coverage = _combine(root, selection, measured)
    for rel in coverage["files"]:  # hashed too, so the next combination knows whether their lines still hold
        if rel not in files:
            files[rel] = file_hash(root, rel)
    data = {
        "format": FORMAT,
        "args": list(args),
        "global": global_state(root),
        "files": files,
        "tests": tests,
        "modules": modules,
    }
    store.mkdir(parents=True, exist_ok=True)
    staging = store.with_name(store.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / DATA).write_text(json.dumps(_encode(data), sort_keys=True), encoding="utf-8")
    (staging / COVERAGE).write_text(json.dumps(coverage, sort_keys=True), encoding="utf-8")
    secret = _secret(environ)
    if secret:
        (staging / SIGNATURE).write_text(_signature(secret, staging), encoding="utf-8")
    shutil.rmtree(store)
    staging.rename(store)
    return Recorded(sorted(tests_now), coverage)


def _combine(root: Path, selection: Plan, measured: dict[str, Any]) -> dict[str, Any]:
    """This run's coverage, plus the previous run's for every file that did not change (a selective run only).

    "Did not change" is checked again now, against the hashes of the recorded run: a file edited while the tests
    ran keeps none of its old lines."""
    old = selection.previous_coverage
    if selection.run_all or not old or old.get("arcs") != measured.get("arcs", old.get("arcs")):
        return measured
    recorded: dict[str, str] = (selection.previous or {}).get("files", {})
    files: dict[str, list[Any]] = {}
    for rel, entries in old.get("files", {}).items():
        if rel in recorded and file_hash(root, rel) == recorded[rel]:
            files[rel] = [tuple(e) if isinstance(e, list) else e for e in entries]
    for rel, entries in measured.get("files", {}).items():
        files[rel] = sorted(set(files.get(rel, [])) | {tuple(e) if isinstance(e, list) else e for e in entries})
    return {"arcs": old.get("arcs"), "files": files}


# --- the coverage gate on the combined data ----------------------------------------------------------------------


def write_coverage(root: Path, combined: dict[str, Any], data_file: Path) -> None:
    """Write ``combined`` (relative paths) as a coverage.py data file of this checkout, for reports and gates."""
    from coverage import CoverageData

    data_file.unlink(missing_ok=True)
    data = CoverageData(basename=str(data_file))
    entries = {str(root / rel): values for rel, values in combined.get("files", {}).items() if (root / rel).is_file()}
    if combined.get("arcs"):
        data.add_arcs({path: [tuple(a) for a in values] for path, values in entries.items()})
    else:
        data.add_lines({path: list(values) for path, values in entries.items()})
    data.write()
