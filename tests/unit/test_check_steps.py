"""lint, typecheck, unit-test and component-test against a tiny project: they pass on good code and fail, saying
why, on bad."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cicd.context import StepContext
from cicd.errors import StepFailed
from cicd.results import Status
from cicd.steps import checks

pytestmark = pytest.mark.component  # runs ruff, mypy and pytest on a tiny project

PYPROJECT = """
[project]
name = "tiny"
version = "0.1.0"

[tool.ruff]
line-length = 100

[tool.mypy]
strict = true
files = ["cicd", "functions"]

[tool.pytest.ini_options]
pythonpath = ["."]
markers = ["component: runs a tool"]
# plugins of this environment the tiny project does not use (together they cost seconds at every start of pytest)
addopts = "-p no:schemathesis -p no:hypothesispytest -p no:typeguard -p no:anyio"
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A tiny project: a unit test of cicd/core.py and two component tests of functions/core.py."""
    root = tmp_path / "tiny"
    for pkg in ("cicd", "functions"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "cicd" / "core.py").write_text("def double(x: int) -> int:\n    return 2 * x\n")
    (root / "functions" / "core.py").write_text("def triple(x: int) -> int:\n    return 3 * x\n")
    (root / "tests" / "unit").mkdir(parents=True)
    (root / "tests" / "unit" / "test_core.py").write_text(
        "from cicd.core import double\n\n\ndef test_it() -> None:\n    assert double(2) == 4\n"
    )
    (root / "tests" / "unit" / "test_tool.py").write_text(
        "import pytest\n\nfrom functions.core import triple\n\npytestmark = pytest.mark.component\n\n\n"
        "def test_tool() -> None:\n    assert triple(2) == 6\n\n\n"
        "def test_other_tool() -> None:\n    assert triple(0) == 0\n"
    )
    (root / "pyproject.toml").write_text(PYPROJECT)
    return root


def test_lint_passes_clean_code_and_fails_unformatted(tiny: Path, make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(root=tiny, step="lint")
    assert checks.lint(ctx).status is Status.PASSED
    assert (ctx.run_dir / "reports" / "ruff.sarif").is_file()
    (tiny / "cicd" / "core.py").write_text("import os\ndef double(x: int) -> int:\n    return 2*x\n")
    with pytest.raises(StepFailed, match="ruff check found problems; files need `ruff format`"):
        checks.lint(make_ctx(root=tiny, step="lint"))


def test_typecheck_passes_typed_code_and_counts_errors(
    tiny: Path, make_ctx: Callable[..., StepContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # as the GitHub adapter sets it: mypy would colour what is counted
    ctx = make_ctx(root=tiny, step="typecheck")
    assert checks.typecheck(ctx).status is Status.PASSED
    # mypy's cache trusts size and mtime, which a container's file system may keep coarse: start it afresh
    shutil.rmtree(tiny / ".mypy_cache", ignore_errors=True)
    (tiny / "cicd" / "core.py").write_text('def double(x: int) -> int:\n    return "twice"\n')
    with pytest.raises(StepFailed, match=r"mypy found 1 error\(s\)"):
        checks.typecheck(make_ctx(root=tiny, step="typecheck"))


def test_each_tier_runs_its_own_tests_and_the_gate_is_on_both_together(
    tiny: Path, make_ctx: Callable[..., StepContext]
) -> None:
    unit = checks.unit_test(make_ctx(root=tiny, step="unit-test"))  # every step of one run writes into one folder
    assert unit.status is Status.PASSED and unit.reason == "1 passed, 0 skipped"
    component = checks.component_test(make_ctx(root=tiny, step="component-test"))
    assert component.status is Status.PASSED and component.reason == "2 passed, 0 skipped"
    reports = tiny.parent / "run" / "reports"
    made = {p.name for p in reports.iterdir()}
    assert {"unit-junit.xml", "component-junit.xml"} <= made
    assert {f"coverage-{tier}.{kind}" for tier in ("unit", "component") for kind in ("json", "key")} <= made
    # Neither tier covers functions/ and cicd/ alone; together they cover every line.
    gate = checks.coverage_gate(make_ctx(root=tiny, step="coverage"))
    assert gate.status is Status.PASSED and gate.reason == "100.0% of cicd, functions covered (gate 85%)"
    assert (reports / "coverage.xml").is_file()
    (tiny / "functions" / "big.py").write_text("".join(f"def f{i}() -> int:\n    return {i}\n\n\n" for i in range(40)))
    checks.unit_test(make_ctx(root=tiny, step="unit-test"))
    with pytest.raises(StepFailed, match=r"^coverage \d+\.\d% of cicd, functions is below the 85% gate"):
        checks.coverage_gate(make_ctx(root=tiny, step="coverage"))


def test_a_failing_test_fails_its_tier(tiny: Path, make_ctx: Callable[..., StepContext]) -> None:
    (tiny / "tests" / "unit" / "test_core.py").write_text(
        "from cicd.core import double\n\n\ndef test_it() -> None:\n    assert double(2) == 5\n"
    )
    with pytest.raises(StepFailed, match="1 of 1 unit tests failed"):
        checks.unit_test(make_ctx(root=tiny, step="unit-test"))
    (tiny / "tests" / "unit" / "test_tool.py").write_text(
        "import pytest\n\npytestmark = pytest.mark.component\n\n\ndef test_tool() -> None:\n    assert False\n"
    )
    with pytest.raises(StepFailed, match="1 of 1 component tests failed"):
        checks.component_test(make_ctx(root=tiny, step="component-test"))
