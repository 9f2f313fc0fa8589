"""Affected-only tests (:mod:`cicd.testselect`), both ways: a change that matters reruns the test, one that does not,
does not. Each case runs pytest with the recording plugin on a small fixture project made for it, twice."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from coverage import Coverage

from cicd import testselect
from cicd.pytest_plugins.cicd_testselect import EVERYTHING

# Runs pytest as a process on fixture projects; the longest module of its tier, and each case stands alone.
pytestmark = [pytest.mark.component, pytest.mark.spread]

UNUSED_PLUGINS = "-p no:schemathesis -p no:hypothesispytest -p no:typeguard -p no:anyio"
FILES = {  # plugins of this environment unused here cost seconds at every start of pytest and of its workers
    "pyproject.toml": (
        f'[tool.pytest.ini_options]\npythonpath = ["."]\naddopts = "{UNUSED_PLUGINS}"\n\n'
        "[tool.coverage.run]\nbranch = true\n"
    ),
    "requirements.lock": "pytest==8\n",
    "pkg/__init__.py": "",
    "pkg/alpha.py": "def alpha(x: int) -> int:\n    if x > 0:\n        return x + 1\n    return 0\n",
    "pkg/beta.py": "def beta() -> int:\n    return 2\n",
    "pkg/consts.py": "LIMIT = 3\n",
    "data/table.json": '{"rows": 2}\n',
    "README.md": "# fixture project\n",
    "tests/conftest.py": (
        "import json\nfrom pathlib import Path\nimport pytest\n\n"
        "@pytest.fixture(scope='session')\ndef table():\n"
        "    return json.loads((Path(__file__).parent.parent / 'data' / 'table.json').read_text())\n"
    ),
    "tests/test_alpha.py": "from pkg.alpha import alpha\n\ndef test_alpha():\n    assert alpha(1) == 2\n",
    "tests/test_beta.py": "from pkg.beta import beta\n\ndef test_beta():\n    assert beta() == 2\n",
    "tests/test_consts.py": "from pkg.consts import LIMIT\n\ndef test_limit():\n    assert LIMIT == 3\n",
    "tests/test_data.py": (
        "def test_rows(table):\n    assert table['rows'] == 2\n\n"
        "def test_rows_again(table):\n    assert table['rows'] > 0\n"
    ),
    # a Python process: it records what it imports and reads itself
    "tests/test_spawn.py": (
        "import subprocess, sys\n\ndef test_spawn():\n"
        "    code = 'import pkg.beta; print(open(\"README.md\").read())'\n"
        "    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)\n"
        "    assert 'fixture' in out.stdout\n"
    ),
    # another program, in the project: what it reads cannot be observed
    "tests/test_tool.py": (
        "import subprocess\n\ndef test_tool():\n"
        "    out = subprocess.run(['sh', '-c', 'cat README.md'], capture_output=True, text=True, check=True)\n"
        "    assert 'fixture' in out.stdout\n"
    ),
}
ARGS = ["tests", "-m", "not slow"]


def write(project: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text, encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write(root, FILES)
    return root


@pytest.fixture(scope="module")
def recorded_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture project after one recorded run (made once: the tests that start from it work on copies)."""
    root = tmp_path_factory.mktemp("recorded") / "project"
    write(root, FILES)
    cycle(root)
    return root


@pytest.fixture
def recorded(recorded_once: Path, tmp_path: Path) -> Path:
    """A copy of the fixture project with the selection data of one recorded run."""
    return Path(shutil.copytree(recorded_once, tmp_path / "project", symlinks=True))


def cycle(
    project: Path, environ: Mapping[str, str] | None = None, workers: int = 0
) -> tuple[testselect.Plan, list[str], float]:
    """One selective run as the test step does it: plan, pytest with the plugin (on ``workers`` xdist workers, or in
    one process), record, combined coverage."""
    env = dict(environ or {})
    store = project / testselect.SELECT_DIR / "unit-test"
    work = project / ".cicd" / "run" / "select"
    shutil.rmtree(work, ignore_errors=True)
    inputs = [p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file() and ".cicd" not in p.parts]
    selection = testselect.plan(project, store, ARGS, inputs, env)
    testselect.write_plan(work, selection)
    coverage_file = project / ".cicd" / "run" / ".coverage"
    coverage_file.unlink(missing_ok=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *ARGS,
            *testselect.pytest_options(work, workers=str(workers), sources=("pkg", "tests")),
        ],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(testselect.PLUGIN_DIR), "COVERAGE_FILE": str(coverage_file), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 1, 5), proc.stdout + proc.stderr
    recorded = testselect.record(
        project,
        work,
        store,
        selection=selection,
        args=ARGS,
        step_inputs=inputs,
        coverage_file=coverage_file,
        environ=env,
    )
    data_file = project / ".cicd" / "combined"
    testselect.write_coverage(project, recorded.coverage, data_file)
    cov = Coverage(data_file=str(data_file), config_file=False)
    cov.load()
    percent = cov.report(include=[str(project / "pkg" / "*")], file=io.StringIO())
    return selection, recorded.ran, percent


ALL = [
    "tests/test_alpha.py::test_alpha",
    "tests/test_beta.py::test_beta",
    "tests/test_consts.py::test_limit",
    "tests/test_data.py::test_rows",
    "tests/test_data.py::test_rows_again",
    "tests/test_spawn.py::test_spawn",
    "tests/test_tool.py::test_tool",
]
SPAWN, TOOL = "tests/test_spawn.py::test_spawn", "tests/test_tool.py::test_tool"


def test_the_first_run_runs_everything_and_an_unchanged_tree_runs_nothing(project: Path) -> None:
    first, ran, full = cycle(project, workers=2)  # xdist: each worker records its own tests
    assert first.run_all and first.reason == "no selection data from an earlier run"
    assert ran == ALL
    assert 50 < full < 100  # alpha's `return 0` never runs
    second, ran, percent = cycle(project, workers=2)
    assert not second.run_all and ran == [] and sorted(second.unaffected) == ALL
    assert percent == full  # the previous run's coverage of the unchanged files still counts


@pytest.mark.parametrize(
    ("changed", "rerun"),
    [
        # executed by the test (coverage context); the test that runs another program in the project reruns on any
        # change
        ("pkg/alpha.py", ["tests/test_alpha.py::test_alpha", TOOL]),
        # only imported: module-level code runs at collection time, outside the test (static import closure)
        ("pkg/consts.py", ["tests/test_consts.py::test_limit", TOOL]),
        # imported by the test, and by the Python process a test starts (the process's own record)
        ("pkg/beta.py", ["tests/test_beta.py::test_beta", SPAWN, TOOL]),
        # read by a session fixture, set up in one test and used by both (fixture ownership, audit hook)
        ("data/table.json", ["tests/test_data.py::test_rows", "tests/test_data.py::test_rows_again", TOOL]),
        # the conftest above every test
        ("tests/conftest.py", ALL),
        # a file no test reads in-process: the test whose Python process opened it, and the one that ran a program
        ("README.md", [SPAWN, TOOL]),
    ],
)
def test_a_change_reruns_exactly_the_tests_that_depend_on_it(recorded: Path, changed: str, rerun: list[str]) -> None:
    path = recorded / changed
    path.write_text(path.read_text(encoding="utf-8") + ("# changed\n" if changed.endswith(".py") else "\n"))
    selection, ran, _ = cycle(recorded)
    assert not selection.run_all
    assert changed in selection.changed and EVERYTHING in selection.changed  # TOOL depends on everything
    assert ran == rerun


def test_a_change_to_the_project_configuration_runs_everything_and_says_why(recorded: Path) -> None:
    write(recorded, {"pyproject.toml": FILES["pyproject.toml"] + "\n[tool.other]\nx = 1\n"})
    selection, ran, _ = cycle(recorded)
    assert selection.run_all and selection.reason == "pyproject.toml changed since the recorded run"
    assert ran == ALL


def test_a_failed_test_reruns_until_it_passes(project: Path) -> None:
    write(project, {"pkg/beta.py": "def beta() -> int:\n    return 3\n"})
    cycle(project)
    write(project, {"pkg/alpha.py": FILES["pkg/alpha.py"] + "\n"})  # unrelated to the failing test
    _, ran, _ = cycle(project)
    assert "tests/test_beta.py::test_beta" in ran
    data = json.loads((project / testselect.SELECT_DIR / "unit-test" / "data.json").read_text())
    assert data["tests"]["tests/test_beta.py::test_beta"]["outcome"] == "failed"


def test_a_new_test_runs(recorded: Path) -> None:
    write(recorded, {"tests/test_gamma.py": "def test_gamma():\n    assert True\n"})
    _, ran, _ = cycle(recorded)
    assert "tests/test_gamma.py::test_gamma" in ran and "tests/test_beta.py::test_beta" not in ran


def test_selection_data_a_secret_cannot_verify_is_not_trusted(project: Path) -> None:
    cycle(project, {"CICD_CACHE_SECRET": "trusted"})
    assert not cycle(project, {"CICD_CACHE_SECRET": "trusted"})[0].run_all
    data_file = project / testselect.SELECT_DIR / "unit-test" / "data.json"
    data = json.loads(data_file.read_text())
    data["tests"]["tests/test_beta.py::test_beta"]["deps"] = []  # a forged record: "depends on nothing"
    data_file.write_text(json.dumps(data))
    selection, ran, _ = cycle(project, {"CICD_CACHE_SECRET": "trusted"})
    assert selection.run_all and "signature does not verify" in selection.reason
    assert ran == ALL
    unsigned = cycle(project, {"CICD_CACHE_VERIFY": "true"})[0]
    assert unsigned.run_all and "CICD_CACHE_SECRET is not set" in unsigned.reason


def test_the_combined_coverage_drops_what_a_changed_file_no_longer_has(recorded: Path) -> None:
    # alpha's branch for x <= 0 is gone: the combined data must measure the new file only
    write(recorded, {"pkg/alpha.py": "def alpha(x: int) -> int:\n    return x + 1\n"})
    _, ran, percent = cycle(recorded)
    assert "tests/test_alpha.py::test_alpha" in ran and percent == 100.0
    # and a line no test runs counts against the gate even though no test of beta reran... it did: beta changed
    write(recorded, {"pkg/beta.py": FILES["pkg/beta.py"] + "\n\ndef unused() -> int:\n    return 1\n"})
    _, ran, percent = cycle(recorded)
    assert "tests/test_beta.py::test_beta" in ran and percent < 100.0


# --- test modules not collected --------------------------------------------------------------------------------

NOTE = (  # a module that says when it is collected (imported), into the file COLLECTED_LOG names
    "import os\nfrom pathlib import Path\n\n"
    "if os.environ.get('COLLECTED_LOG'):\n"
    "    with open(os.environ['COLLECTED_LOG'], 'a') as log:\n"
    "        log.write(Path(__file__).name + '\\n')\n\n"
)
NOTED = {
    "tests/test_noted.py": NOTE + "from pkg.beta import beta\n\ndef test_noted():\n    assert beta() == 2\n",
    # parametrized from a data file, read as the module is collected
    "data/cases.json": "[1, 2]\n",
    "tests/test_cases.py": (
        NOTE + "import json\nimport pytest\n\nCASES = json.loads(Path('data/cases.json').read_text())\n\n"
        "@pytest.mark.parametrize('case', CASES)\ndef test_case(case):\n    assert case > 0\n"
    ),
    # no test of this tier: every test is deselected by `-m "not slow"`
    "tests/test_slow_only.py": NOTE + "import pytest\n\n@pytest.mark.slow\ndef test_slow():\n    assert True\n",
}
NOTED_TESTS = [
    "tests/test_cases.py::test_case[1]",
    "tests/test_cases.py::test_case[2]",
    "tests/test_noted.py::test_noted",
]


@pytest.fixture
def noted(project: Path, tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """The fixture project with modules that log their collection, after one recorded run: the project, the
    environment that turns the log on, the log."""
    write(project, NOTED)
    cycle(project)
    log = tmp_path / "collected.log"
    return project, {"COLLECTED_LOG": str(log)}, log


def collected_modules(log: Path) -> list[str]:
    names = sorted(log.read_text(encoding="utf-8").split()) if log.is_file() else []
    log.unlink(missing_ok=True)
    return names


def recorded_tests(project: Path) -> dict[str, str]:
    data = json.loads((project / testselect.SELECT_DIR / "unit-test" / "data.json").read_text())
    return {nodeid: info["outcome"] for nodeid, info in data["tests"].items()}


def test_a_module_with_nothing_to_rerun_is_not_collected_and_its_tests_keep_their_record(
    noted: tuple[Path, dict[str, str], Path],
) -> None:
    project, env, log = noted
    before = recorded_tests(project)
    assert sorted(before) == sorted([*ALL, *NOTED_TESTS]) and set(before.values()) == {"passed"}
    write(project, {"pkg/alpha.py": FILES["pkg/alpha.py"] + "\n"})  # nothing the noted modules read
    selection, ran, _ = cycle(project, env)
    assert ran == ["tests/test_alpha.py::test_alpha", TOOL]
    assert collected_modules(log) == []  # not even imported, the module with no test of the tier neither
    assert {"tests/test_noted.py", "tests/test_cases.py", "tests/test_slow_only.py"} <= set(selection.ignored)
    assert "tests/test_alpha.py" not in selection.ignored and "tests/test_tool.py" not in selection.ignored
    assert recorded_tests(project) == before  # the tests of the modules left out keep their record
    again, ran, _ = cycle(project, env)
    assert ran == [] and collected_modules(log) == [] and sorted(again.unaffected) == sorted(before)


@pytest.mark.parametrize(
    ("changed", "modules", "rerun"),
    [
        # the module itself
        ("tests/test_noted.py", ["test_noted.py"], ["tests/test_noted.py::test_noted"]),
        # what it imports: its test reruns (it executes beta) and the module is collected for it
        ("pkg/beta.py", ["test_noted.py"], ["tests/test_noted.py::test_noted"]),
        # a file its collection reads: a new parametrized case exists and runs
        ("data/cases.json", ["test_cases.py"], ["tests/test_cases.py::test_case[3]"]),
        # a module with no test of the tier is collected when it changes, and still runs nothing of it
        ("tests/test_slow_only.py", ["test_slow_only.py"], []),
        # a conftest: every module is collected (its hooks see every test)
        ("tests/conftest.py", ["test_cases.py", "test_noted.py", "test_slow_only.py"], NOTED_TESTS),
        # a new test file: the test folder's listing changed, so every module is collected again (and its test runs)
        ("tests/test_new.py", ["test_cases.py", "test_noted.py", "test_slow_only.py"], ["tests/test_new.py::test_new"]),
    ],
)
def test_a_module_is_collected_when_its_collection_or_a_test_of_it_is_affected(
    noted: tuple[Path, dict[str, str], Path], changed: str, modules: list[str], rerun: list[str]
) -> None:
    project, env, log = noted
    path = project / changed
    if changed == "data/cases.json":
        path.write_text("[1, 2, 3]\n", encoding="utf-8")
    elif not path.exists():
        path.write_text("def test_new():\n    assert True\n", encoding="utf-8")
    else:
        path.write_text(path.read_text(encoding="utf-8") + "# changed\n", encoding="utf-8")
    _, ran, _ = cycle(project, env)
    assert collected_modules(log) == modules
    assert [nodeid for nodeid in ran if nodeid not in ALL] == rerun


def test_a_module_with_a_failed_test_is_collected_until_it_passes(noted: tuple[Path, dict[str, str], Path]) -> None:
    project, env, log = noted
    write(project, {"data/cases.json": "[1, -2]\n"})
    cycle(project, env)
    assert collected_modules(log) == ["test_cases.py"]
    write(project, {"pkg/alpha.py": FILES["pkg/alpha.py"] + "\n"})  # unrelated to the failing case
    _, ran, _ = cycle(project, env)
    assert collected_modules(log) == ["test_cases.py"] and "tests/test_cases.py::test_case[-2]" in ran


def test_a_short_affected_only_run_uses_one_process(recorded: Path) -> None:
    data = json.loads((recorded / testselect.SELECT_DIR / "unit-test" / "data.json").read_text())
    took = {nodeid: info["cpu"] for nodeid, info in data["tests"].items()}  # processor time: setup, call, teardown
    assert sorted(took) == ALL and all(seconds >= 0 for seconds in took.values())
    assert took[SPAWN] > 0.01  # it starts a Python process, and waits for it: that process's time counts
    assert all(info["duration"] >= 0 for info in data["tests"].values())  # the wall time is kept too
    write(recorded, {"pkg/alpha.py": FILES["pkg/alpha.py"] + "\n"})
    store = recorded / testselect.SELECT_DIR / "unit-test"
    selection = testselect.plan(recorded, store, ARGS, [], {})
    assert selection.rerun_seconds == pytest.approx(took["tests/test_alpha.py::test_alpha"] + took[TOOL])
    assert testselect.workers(selection) == "0" and "took" in selection.describe()
    longer = dataclasses.replace(selection, rerun_seconds=testselect.SERIAL_BELOW)
    assert testselect.workers(longer) == "auto"  # worth the workers' start-up
    assert testselect.workers(testselect.Plan(True, "no selection data")) == "auto"  # every test runs


def test_a_run_on_workers_and_a_run_in_one_process_know_the_same_tests(project: Path) -> None:
    # pytest-xdist's loadgroup gives a grouped test another node id in its workers (`...::test_beta@g`)
    addopts = FILES["pyproject.toml"].replace(f'{UNUSED_PLUGINS}"', f'{UNUSED_PLUGINS} --dist loadgroup"')
    grouped = "import pytest\n\npytestmark = pytest.mark.xdist_group('g')\n\n" + FILES["tests/test_beta.py"]
    grouped += "\n\ndef test_table(table):\n    assert table['rows'] == 2\n"
    write(project, {"pyproject.toml": addopts, "tests/test_beta.py": grouped})
    table = ["tests/test_beta.py::test_table", "tests/test_data.py::test_rows", "tests/test_data.py::test_rows_again"]
    cycle(project, workers=2)
    write(project, {"data/table.json": '{"rows": 2}\n\n'})  # the module is collected for test_table only
    selection, ran, _ = cycle(project)  # in one process: test_beta is the test recorded on the workers
    assert not selection.run_all and ran == [*table, TOOL]
    write(project, {"data/table.json": '{"rows": 2}\n'})
    _, ran, _ = cycle(project, workers=2)  # and the other way round
    assert ran == [*table, TOOL]
