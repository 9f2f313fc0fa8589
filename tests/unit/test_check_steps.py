"""lint, typecheck and unit-test against a tiny project: they pass on good code and fail, saying why, on bad."""

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
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    for pkg in ("cicd", "functions"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "cicd" / "core.py").write_text("def double(x: int) -> int:\n    return 2 * x\n")
    (root / "functions" / "core.py").write_text("def triple(x: int) -> int:\n    return 3 * x\n")
    (root / "tests" / "unit").mkdir(parents=True)
    (root / "tests" / "unit" / "test_core.py").write_text(
        "from cicd.core import double\nfrom functions.core import triple\n\n\n"
        "def test_it() -> None:\n    assert double(2) == 4\n    assert triple(2) == 6\n"
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


def test_typecheck_passes_typed_code_and_counts_errors(tiny: Path, make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(root=tiny, step="typecheck")
    assert checks.typecheck(ctx).status is Status.PASSED
    # mypy's cache trusts size and mtime, which a container's file system may keep coarse: start it afresh
    shutil.rmtree(tiny / ".mypy_cache", ignore_errors=True)
    (tiny / "cicd" / "core.py").write_text('def double(x: int) -> int:\n    return "twice"\n')
    with pytest.raises(StepFailed, match=r"mypy found 1 error\(s\)"):
        checks.typecheck(make_ctx(root=tiny, step="typecheck"))


def test_unit_test_passes_and_reports_counts(tiny: Path, make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(root=tiny, step="unit-test")
    outcome = checks.unit_test(ctx)
    assert outcome.status is Status.PASSED and "1 passed" in (outcome.reason or "")
    assert (ctx.run_dir / "reports" / "unit-junit.xml").is_file()


def test_unit_test_fails_on_a_failing_test(tiny: Path, make_ctx: Callable[..., StepContext]) -> None:
    (tiny / "tests" / "unit" / "test_core.py").write_text(
        "from cicd.core import double\nfrom functions.core import triple\n\n\n"
        "def test_it() -> None:\n    assert double(2) == 5\n    assert triple(1) == 3\n"
    )
    with pytest.raises(StepFailed, match="1 of 1 unit tests failed"):
        checks.unit_test(make_ctx(root=tiny, step="unit-test"))


def test_unit_test_enforces_the_coverage_gate(tiny: Path, make_ctx: Callable[..., StepContext]) -> None:
    (tiny / "functions" / "big.py").write_text("".join(f"def f{i}() -> int:\n    return {i}\n\n\n" for i in range(40)))
    with pytest.raises(StepFailed, match="coverage below the 85% gate"):
        checks.unit_test(make_ctx(root=tiny, step="unit-test"))
