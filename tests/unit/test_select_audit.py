"""The audit side of affected-only tests (:mod:`cicd.pytest_plugins.cicd_select_audit`): which processes a test starts
record what they read themselves, which make it depend on everything, and how their records are read back."""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cicd.pytest_plugins import cicd_select_audit as audit
from cicd.pytest_plugins.cicd_select_audit import (
    EVERYTHING,
    Auditor,
    ChildAuditor,
    child_records,
    is_python,
    read_journal,
)


def script(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


def test_python_is_the_interpreter_or_a_script_that_calls_it(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}
    assert is_python(sys.executable, env)
    assert is_python(str(script(tmp_path, "inv", "#!/opt/venv/bin/python3.11\nimport sys\n")), env)
    trampoline = "#!/bin/sh\n'''exec' '/a/very/long/path/bin/python' \"$0\" \"$@\"\n' '''\n"
    assert is_python(str(script(tmp_path, "pytest", trampoline)), env)
    assert is_python("pytest", env)  # found on PATH
    assert not is_python(str(script(tmp_path, "tool", "#!/bin/sh\necho python\n")), env)
    assert not is_python(str(script(tmp_path, "ruff", "\x7fELF binary")), env)
    assert not is_python("not-on-path", env)


def owned(root: Path, tmp_path: Path) -> tuple[Auditor, dict[str, str]]:
    auditor = Auditor(str(root))
    auditor.owners = ["tests/test_x.py::test_x"]
    auditor.active = True
    env = {
        "PATH": os.environ.get("PATH", ""),
        audit.OWNER: "tests/test_x.py::test_x",
        audit.ROOT: str(root),
        audit.RECORDS: str(tmp_path / "records"),
        "PYTHONPATH": audit.HERE,
    }
    return auditor, env


@pytest.mark.parametrize(
    ("argv", "env_edit", "expected"),
    [
        # followed: Python, this owner, the plugin folder on PYTHONPATH; the process records its own reads
        ([sys.executable, "-m", "tool"], {}, set()),
        # Python that ignores PYTHONPATH, or given another owner or none: it cannot record, and it runs in the project
        ([sys.executable, "-I", "-m", "tool"], {}, {EVERYTHING}),
        ([sys.executable, "-bE", "script.py"], {}, {EVERYTHING}),
        # an isolated Python that starts its recording itself (the local API's function workers)
        ([sys.executable, "-I", "-S", "-c", "boot"], {audit.SELF: "1"}, set()),
        (["sh", "-c", "cat README.md"], {audit.SELF: "1", audit.OWNER: "tests/test_y.py::test_y"}, {EVERYTHING}),
        ([sys.executable, "-m", "tool"], {audit.OWNER: "tests/test_y.py::test_y"}, {EVERYTHING}),
        ([sys.executable, "-m", "tool"], {"PYTHONPATH": ""}, {EVERYTHING}),
        # not Python
        (["sh", "-c", "cat README.md"], {}, {EVERYTHING}),
    ],
)
def test_a_process_in_the_project_is_followed_or_makes_the_test_depend_on_everything(
    tmp_path: Path, argv: list[str], env_edit: dict[str, str], expected: set[str]
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    auditor, env = owned(root, tmp_path)
    auditor.audit("subprocess.Popen", (argv[0], argv, str(root), {**env, **env_edit}))
    assert auditor.files.get("tests/test_x.py::test_x", set()) == expected


def test_a_process_outside_the_project_depends_on_the_python_files_of_its_project_pythonpath(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "plugins" / "__pycache__").mkdir(parents=True)
    for rel in ("plugins/a.py", "plugins/b.py", "plugins/notes.md", "plugins/__pycache__/a.cpython-311.pyc"):
        (root / rel).write_text("", encoding="utf-8")
    elsewhere = tmp_path / "fixture"
    elsewhere.mkdir()
    auditor, env = owned(root, tmp_path)
    env = {"PATH": env["PATH"], "PYTHONPATH": str(root / "plugins")}  # no owner: not followed
    auditor.audit("subprocess.Popen", ("ruff", ["ruff", "check"], str(elsewhere), env))
    assert auditor.files["tests/test_x.py::test_x"] == {"plugins/a.py", "plugins/b.py"}
    auditor.audit("subprocess.Popen", ("ruff", ["ruff", "check", str(root / "src")], str(elsewhere), env))
    assert EVERYTHING in auditor.files["tests/test_x.py::test_x"]  # an argument inside the project


def test_a_child_journal_holds_what_the_process_read_even_if_it_never_ends(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "table.json").write_text("{}", encoding="utf-8")
    (root / "data" / "other.json").write_text("{}", encoding="utf-8")
    records = tmp_path / "records"
    killed = ChildAuditor(str(root), "tests/test_a.py::test_a", str(records))
    killed.begin()
    killed.active = True
    killed.audit("open", (str(root / "data" / "table.json"), "r", 0))
    finished = ChildAuditor(str(root), "tests/test_b.py::test_b", str(records))
    finished.begin()
    finished.active = True
    finished.audit("open", (str(root / "data" / "other.json"), "r", 0))
    finished.audit("open", (str(tmp_path / "outside.txt"), "r", 0))
    finished.finish()
    # the first never ends (killed, or still running when the records are read): it read what its journal holds
    assert child_records(str(records)) == {
        "tests/test_a.py::test_a": {"data/table.json"},
        "tests/test_b.py::test_b": {"data/other.json"},
    }
    assert read_journal(finished.path) == ("tests/test_b.py::test_b", {"data/other.json"}, True)
    assert read_journal(killed.path) == ("tests/test_a.py::test_a", {"data/table.json"}, False)
    assert child_records(str(tmp_path / "none")) == {}


def test_a_journal_line_that_cannot_be_read_makes_its_owner_depend_on_everything(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    head = '{"owner": "tests/test_%s.py::test_%s", "argv": []}\n'
    (records / "1-0-1.jsonl").write_text(head % ("a", "a") + '"data/ta\n"data/b.json"\n', encoding="utf-8")
    (records / "2-0-1.jsonl").write_text(head % ("b", "b") + "[1]\n", encoding="utf-8")
    # a last line still being written: the process reads that file now, after its test
    (records / "3-0-1.jsonl").write_text(head % ("c", "c") + '"data/c.json"\n"data/d.js', encoding="utf-8")
    assert child_records(str(records)) == {
        "tests/test_a.py::test_a": {EVERYTHING},
        "tests/test_b.py::test_b": {EVERYTHING},
        "tests/test_c.py::test_c": {"data/c.json"},
    }


def test_a_process_id_used_again_starts_a_journal_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    for name in ("a.json", "b.json"):
        (root / "data" / name).write_text("{}", encoding="utf-8")
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    journals = []
    for owner, name in (("tests/test_a.py::test_a", "a.json"), ("tests/test_b.py::test_b", "b.json")):
        monkeypatch.setattr(ChildAuditor, "_numbers", itertools.count())  # a new process: its counter from 0
        child = ChildAuditor(str(root), owner, str(tmp_path / "records"))
        child.begin()
        child.active = True
        child.audit("open", (str(root / "data" / name), "r", 0))
        child.finish()
        journals.append(child.path)
    assert journals[0] != journals[1]
    assert child_records(str(tmp_path / "records")) == {
        "tests/test_a.py::test_a": {"data/a.json"},
        "tests/test_b.py::test_b": {"data/b.json"},
    }


def test_a_module_loaded_from_its_bytecode_counts_as_its_source(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("", encoding="utf-8")
    child = ChildAuditor(str(root), "tests/test_c.py::test_c", str(tmp_path / "records"))
    child.begin()
    child.active = True
    child.audit("open", (str(root / "pkg" / "__pycache__" / "mod.cpython-311.pyc"), "rb", 0))
    child.audit("open", (str(root / "pkg" / "__pycache__" / "gone.cpython-311.pyc"), "rb", 0))  # no source: none
    child.audit("open", (str(root / "pkg" / "stray.pyc"), "rb", 0))  # not a cache file
    assert child_records(str(tmp_path / "records")) == {"tests/test_c.py::test_c": {"pkg/mod.py"}}


def test_a_child_records_the_project_modules_it_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    module = root / "pkg" / "mod.py"
    module.write_text("", encoding="utf-8")
    fake = type(sys)("pkg.mod")
    fake.__file__ = str(module)
    monkeypatch.setitem(sys.modules, "pkg.mod", fake)
    child = ChildAuditor(str(root), "tests/test_c.py::test_c", str(tmp_path / "records"))
    child.begin()
    child.finish()
    assert child_records(str(tmp_path / "records"))["tests/test_c.py::test_c"] == {"pkg/mod.py"}


def test_start_in_child_does_nothing_without_a_recorded_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    added: list[object] = []
    monkeypatch.setattr(sys, "addaudithook", added.append)
    for name in (audit.OWNER, audit.ROOT, audit.RECORDS):
        monkeypatch.delenv(name, raising=False)
    audit.start_in_child()
    assert added == []


def test_a_fresh_environment_passes_on_the_recording_only_while_a_test_is_recorded() -> None:
    recorded = {audit.OWNER: "tests/test_x.py::test_x", audit.ROOT: "/p", audit.RECORDS: "/p/.cicd/r", "HOME": "/h"}
    assert audit.passed_on(recorded) == {
        audit.OWNER: "tests/test_x.py::test_x",
        audit.ROOT: "/p",
        audit.RECORDS: "/p/.cicd/r",
        "PYTHONPATH": audit.HERE,
        audit.SELF: "1",
    }
    assert audit.passed_on({"HOME": "/h", audit.ROOT: "/p"}) == {}


CHILD = """
import multiprocessing, os, sys
def read():
    with open(os.path.join(sys.argv[1], "data", "table.json"), encoding="utf-8") as source:
        source.read()
if __name__ == "__main__":
    child = multiprocessing.get_context("fork").Process(target=read)
    child.start()
    child.join()
    sys.stdout.flush()
    os._exit(child.exitcode)
"""


def recorded_script(tmp_path: Path, text: str) -> tuple[list[str], dict[str, str], Path]:
    """A project with ``data/table.json`` and a Python script (``text``, given the project's folder): the command
    that runs it, the environment of a process that test ``tests/test_x.py::test_x`` started, and its records
    folder."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "table.json").write_text("{}", encoding="utf-8")
    script = tmp_path / "script.py"
    script.write_text(text, encoding="utf-8")
    records = tmp_path / "records"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": audit.HERE,
        audit.OWNER: "tests/test_x.py::test_x",
        audit.ROOT: str(root),
        audit.RECORDS: str(records),
    }
    return [sys.executable, str(script), str(root)], env, records


@pytest.mark.component
def test_processes_ended_by_os_exit_finish_their_records(tmp_path: Path) -> None:
    command, env, records = recorded_script(tmp_path, CHILD)
    subprocess.run(command, env=env, cwd=tmp_path, check=True, timeout=60)
    journals = [read_journal(str(path)) for path in records.glob("*.jsonl")]
    assert len(journals) == 2 and all(finished for _, _, finished in journals)  # the script and its forked child
    assert child_records(str(records)) == {"tests/test_x.py::test_x": {"data/table.json"}}


KILLED = """
import os, sys, time
with open(os.path.join(sys.argv[1], "data", "table.json"), encoding="utf-8") as source:
    source.read()
print("read", flush=True)
time.sleep(60)
"""


@pytest.mark.component
def test_a_process_killed_by_sigkill_read_what_its_journal_holds(tmp_path: Path) -> None:
    command, env, records = recorded_script(tmp_path, KILLED)
    (tmp_path / "project" / "data" / "unread.json").write_text("{}", encoding="utf-8")
    with subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "read\n"
        proc.kill()
        proc.wait(timeout=30)
    journals = [read_journal(str(path)) for path in records.glob("*.jsonl")]
    assert [finished for _, _, finished in journals] == [False]
    assert child_records(str(records)) == {"tests/test_x.py::test_x": {"data/table.json"}}


def test_a_process_that_execs_finishes_its_record_and_judges_the_new_program(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "table.json").write_text("{}", encoding="utf-8")
    records = tmp_path / "records"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside, inside = (ChildAuditor(str(root), f"tests/test_{n}.py::test_{n}", str(records)) for n in "ab")
    for child in (outside, inside):
        child.begin()
        child.active = True
        child.audit("open", (str(root / "data" / "table.json"), "r", 0))
    outside.audit("os.exec", ("/usr/bin/gitleaks", ["gitleaks", "dir", str(elsewhere)], None))
    inside.audit("os.exec", ("/usr/bin/gitleaks", ["gitleaks", "dir", str(root)], None))
    assert child_records(str(records)) == {
        "tests/test_a.py::test_a": {"data/table.json"},  # a finished record, and the program reads no project file
        "tests/test_b.py::test_b": {"data/table.json", EVERYTHING},  # the program reads the project: everything
    }


def test_a_program_that_starts_its_own_recording_does_not_pass_the_marker_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "addaudithook", lambda hook: None)
    monkeypatch.setattr(os, "register_at_fork", lambda **kwargs: None)
    monkeypatch.setattr(atexit, "register", lambda *args: None)
    monkeypatch.setattr(os, "_exit", os._exit)  # restored after the test
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    for name, value in audit.passed_on(
        {audit.OWNER: "tests/test_x.py::test_x", audit.ROOT: str(tmp_path), audit.RECORDS: str(tmp_path / "r")}
    ).items():
        monkeypatch.setenv(name, value)
    audit.start_in_child()
    assert audit.SELF not in os.environ
    assert [path.name.endswith(".jsonl") for path in (tmp_path / "r").iterdir()] == [True]  # its journal


IMPORT_ALL = """
import importlib, sys
started = []
sys.addaudithook(lambda event, args: started.append(event) if event in PROCESS_EVENTS else None)
for name in sys.argv[1:]:
    before = len(started)
    importlib.import_module(name)
    if len(started) > before:
        print(name)
"""


@pytest.mark.slow  # it imports every test module, so it depends on nearly every file: the suite runs it, not the steps
def test_importing_the_test_modules_starts_no_process(repo_root: Path) -> None:
    """A process started while a module is collected can see the checkout, so its collection depends on everything
    and the test steps collect it on every run: importing the CDK does that (it starts the jsii kernel, a node
    process), so the test modules import it inside their tests (see tests/infra/conftest.py)."""
    names = sorted(
        ".".join(path.relative_to(repo_root).with_suffix("").parts)
        for path in (repo_root / "tests").rglob("*.py")
        if path.name == "conftest.py" or path.name.startswith("test_")
    )
    events = ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.system", "os.exec", "os.spawn")
    paths = [os.environ.get("PYTHONPATH", ""), str(repo_root), str(repo_root / "functions")]
    proc = subprocess.run(
        [sys.executable, "-c", f"PROCESS_EVENTS = {events!r}\n{IMPORT_ALL}", *names],
        cwd=repo_root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(names) > 50 and proc.stdout.split() == [], proc.stdout
