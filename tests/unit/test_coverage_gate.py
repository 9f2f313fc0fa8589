"""The coverage gate: the two tiers' coverage data combined, from this run, an earlier run or a run of the tier."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import coverage
import pytest

from cicd.context import StepContext
from cicd.errors import StepFailed
from cicd.results import Outcome, Status
from cicd.steps import checks

SOURCE = "def double(x):\n    return 2 * x\n\n\ndef triple(x):\n    return 3 * x\n"
DOUBLE, TRIPLE = {1, 2, 5}, {1, 5, 6}  # the lines each function's test runs (the def lines run on import)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fixture project: one module in cicd/, coverage measured over cicd/ (no git, no tools)."""
    root = tmp_path / "project"
    (root / "cicd").mkdir(parents=True)
    (root / "cicd" / "core.py").write_text(SOURCE)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "0"\n\n[tool.coverage.run]\nsource = ["cicd"]\n'
    )
    return root


def leave(ctx: StepContext, run: Path, tier: checks.Tier, lines: set[int], key: str | None = None) -> None:
    """What ``tier``'s step leaves in the run folder ``run``: its coverage data (``lines`` of cicd/core.py run) and
    the key of the files it ran on (the current one unless ``key`` is given)."""
    (run / "reports").mkdir(parents=True, exist_ok=True)
    data = coverage.CoverageData(basename=str(run / "reports" / tier.data))
    data.add_lines({str(ctx.root / "cicd" / "core.py"): sorted(lines)})
    data.write()
    (run / "reports" / tier.stamp).write_text(key or checks.inputs_key(ctx, tier))


def test_the_gate_is_on_both_tiers_together(project: Path, make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(root=project, step="coverage")
    leave(ctx, ctx.run_dir, checks.UNIT, DOUBLE)  # 3 of 4 lines each, all 4 together
    leave(ctx, ctx.run_dir, checks.COMPONENT, TRIPLE)
    outcome = checks.coverage_gate(ctx)
    assert outcome.status is Status.PASSED and outcome.reason == "100.0% of cicd, functions covered (gate 85%)"
    xml = ctx.run_dir / "reports" / "coverage.xml"
    assert outcome.details["xml"] == ctx.rel(xml) and 'line-rate="1"' in xml.read_text()
    assert "TOTAL" in ctx.log_path.read_text()  # the table is in the step log


def test_below_the_gate_fails_saying_the_figure(project: Path, make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(root=project, step="coverage")
    leave(ctx, ctx.run_dir, checks.UNIT, DOUBLE)
    leave(ctx, ctx.run_dir, checks.COMPONENT, DOUBLE)
    with pytest.raises(StepFailed, match=r"^coverage 75\.0% of cicd, functions is below the 85% gate \(the step log"):
        checks.coverage_gate(ctx)


def test_data_of_an_earlier_run_is_taken_only_for_the_same_files(
    project: Path, make_ctx: Callable[..., StepContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier command of the same CI job (``inv unit-test``) left its data in its run folder; a tier whose
    newest data was made on other files runs here."""
    ctx = make_ctx(root=project, step="coverage")
    runs = ctx.run_dir.parent
    leave(ctx, runs / "1-unit", checks.UNIT, DOUBLE)
    leave(ctx, runs / "2-component", checks.COMPONENT, TRIPLE, key="other files")
    os.utime(runs / "1-unit" / "reports" / checks.UNIT.stamp, (1, 1))  # the older of the two
    ran: list[str] = []

    def run_tests(ctx: StepContext, tier: checks.Tier) -> Outcome:
        ran.append(tier.name)
        leave(ctx, ctx.run_dir, tier, TRIPLE)
        return Outcome.passed()

    monkeypatch.setattr(checks, "run_tests", run_tests)
    outcome = checks.coverage_gate(ctx)
    assert outcome.status is Status.PASSED and outcome.reason is not None and outcome.reason.startswith("100.0%")
    assert ran == ["component"]
    assert "no coverage data of component-test for these files" in ctx.log_path.read_text()
    assert checks.inputs_key(ctx, checks.UNIT) != checks.inputs_key(ctx, checks.COMPONENT)  # one key per step
    (project / "cicd" / "core.py").write_text(SOURCE + "\n")
    assert checks.inputs_key(ctx, checks.UNIT) != (runs / "1-unit" / "reports" / checks.UNIT.stamp).read_text()
