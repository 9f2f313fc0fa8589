"""The coverage gate: the two tiers' coverage data combined, from this run, an earlier run or a run of the tier."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cicd import reports
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
    write_tier(run / "reports", tier, lines, key or checks.inputs_key(ctx, tier))


def write_tier(folder: Path, tier: checks.Tier, lines: set[int], key: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"arcs": False, "files": {"cicd/core.py": sorted(lines)}}  # paths relative to the checkout
    (folder / tier.data).write_text(json.dumps(data))
    (folder / tier.stamp).write_text(key)


def gate_running_tiers(ctx: StepContext, monkeypatch: pytest.MonkeyPatch) -> tuple[Outcome, list[str]]:
    """The gate's outcome, and the tiers it ran itself (each leaving data that covers TRIPLE)."""
    ran: list[str] = []

    def run_tests(ctx: StepContext, tier: checks.Tier) -> Outcome:
        ran.append(tier.name)
        leave(ctx, ctx.run_dir, tier, TRIPLE)
        return Outcome.passed()

    monkeypatch.setattr(checks, "run_tests", run_tests)
    return checks.coverage_gate(ctx), ran


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
    outcome, ran = gate_running_tiers(ctx, monkeypatch)
    assert outcome.status is Status.PASSED and outcome.reason is not None and outcome.reason.startswith("100.0%")
    assert ran == ["component"]
    assert "no coverage data of component-test for these files" in ctx.log_path.read_text()
    assert checks.inputs_key(ctx, checks.UNIT) != checks.inputs_key(ctx, checks.COMPONENT)  # one key per step
    (project / "cicd" / "core.py").write_text(SOURCE + "\n")
    assert checks.inputs_key(ctx, checks.UNIT) != (runs / "1-unit" / "reports" / checks.UNIT.stamp).read_text()


def test_the_tiers_data_handed_on_from_other_ci_jobs_is_taken_where_it_was_made_on_the_same_files(
    project: Path, tmp_path: Path, make_ctx: Callable[..., StepContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CI each tier runs in a job of its own, in a checkout at another path; the tool hands ``.cicd/handoff/``
    to the coverage job. The data (relative paths) is used there without running the tier again, unless it was made
    on other files."""
    other = tmp_path / "unit-test-job"
    shutil.copytree(project, other)
    made_there = make_ctx(root=other, step="unit-test")
    for tier, lines, key in ((checks.UNIT, DOUBLE, None), (checks.COMPONENT, TRIPLE, "other files")):
        write_tier(other / reports.HANDOFF_DIR / tier.step, tier, lines, key or checks.inputs_key(made_there, tier))
    shutil.copytree(other / reports.HANDOFF_DIR, project / reports.HANDOFF_DIR)  # what the CI tool hands on
    outcome, ran = gate_running_tiers(make_ctx(root=project, step="coverage"), monkeypatch)
    assert ran == ["component"]  # the unit tier's hand-off fits these files; the component tier's does not
    assert outcome.status is Status.PASSED and outcome.reason is not None and outcome.reason.startswith("100.0%")


def test_unreadable_tier_data_fails_the_gate_in_one_line(project: Path, make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(root=project, step="coverage")
    leave(ctx, ctx.run_dir, checks.UNIT, DOUBLE)
    leave(ctx, ctx.run_dir, checks.COMPONENT, TRIPLE)
    (ctx.run_dir / "reports" / checks.COMPONENT.data).write_text("[1, 2]")
    with pytest.raises(StepFailed, match=r"^coverage-component\.json is not coverage data of a test tier$"):
        checks.coverage_gate(ctx)
