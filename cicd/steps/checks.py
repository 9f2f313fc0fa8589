"""Code-quality steps: lint, typecheck, unit-test, component-test, coverage, api-contract."""

from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET  # nosec B405 # parses only the JUnit file our own pytest run wrote
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cicd.context import StepContext
from cicd.errors import StepFailed
from cicd.results import Outcome

COVERAGE_GATE = 85
UNIT_TEST_PATHS = ("tests/unit", "tests/infra", "tests/adapters")
"""Where every layer's fast tests live (slow ones, which run real deploys and CI runners, belong to the full suite).
The fast tests come in two tiers, each a step of its own: see :data:`UNIT` and :data:`COMPONENT`."""
COMPONENT_MARKER = "component"
GATED = ("cicd", "functions")
"""What the coverage gate covers."""
COVERAGE_SOURCES = (*GATED, "infra", "tests", "tasks")
"""What the test steps measure: every project package, so each test's executed files are known (cicd.testselect)."""
NO_TESTS_RAN = 5  # pytest's exit status when every test was deselected


@dataclass(frozen=True)
class Tier:
    """One tier of the fast tests: its step, the pytest marker expression that selects it, and its reports."""

    name: str
    step: str
    markers: str

    @property
    def junit(self) -> str:
        return f"{self.name}-junit.xml"

    @property
    def data(self) -> str:
        """The tier's coverage, with paths relative to the checkout (so another CI job's checkout, wherever it is,
        can use it), which the ``coverage`` step combines with the other's."""
        return f"coverage-{self.name}.json"

    @property
    def stamp(self) -> str:
        """Beside the data: the step-cache key of the files the tier ran on (:func:`inputs_key`)."""
        return f"coverage-{self.name}.key"


UNIT = Tier("unit", "unit-test", f"not slow and not {COMPONENT_MARKER}")
"""In-process tests: tests/unit_tier.py fails one that starts a process or opens a project file."""
COMPONENT = Tier("component", "component-test", f"{COMPONENT_MARKER} and not slow")
"""Tests that run the project's tools, servers or CLI as processes, or check the project's own files."""
TIERS = (UNIT, COMPONENT)


def lint(ctx: StepContext) -> Outcome:
    """ruff check (with SARIF for code scanning) and ruff format --check."""
    sarif = ctx.out("reports", "ruff.sarif")
    check = ctx.run(["ruff", "check", "--output-format=full", "."], check=False)
    ctx.run(["ruff", "check", "--exit-zero", "--output-format=sarif", f"--output-file={sarif}", "."])
    fmt = ctx.run(["ruff", "format", "--check", "."], check=False)
    problems = []
    if check.returncode != 0:
        problems.append("ruff check found problems")
    if fmt.returncode != 0:
        problems.append("files need `ruff format`")
    if problems:
        raise StepFailed("; ".join(problems))
    return Outcome.passed(sarif=ctx.rel(sarif))


def typecheck(ctx: StepContext) -> Outcome:
    """mypy in strict mode over the files configured in pyproject.toml."""
    junit = ctx.out("reports", "mypy-junit.xml")
    # No colour, whatever the job sets (FORCE_COLOR): the errors are counted in its output.
    result = ctx.run(["mypy", "--no-color-output", f"--junit-xml={junit}"], check=False)
    if result.returncode != 0:
        errors = [line for line in result.output.splitlines() if ": error:" in line]
        if not errors:  # mypy itself failed (a crash, a bad configuration): say what it said last
            last = next((line for line in reversed(result.output.splitlines()) if line.strip()), "no output")
            raise StepFailed(f"mypy exited with {result.returncode}: {last.strip()[:300]}")
        raise StepFailed(f"mypy found {len(errors)} error(s)")
    return Outcome.passed(junit=ctx.rel(junit))


def _junit_counts(path_text: str) -> tuple[int, int, int]:
    root = ET.parse(path_text).getroot()  # noqa: S314  # nosec B314 # the JUnit file our own pytest run wrote
    suites = [root] if root.tag == "testsuite" else list(root)
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return tests, failed, skipped


def unit_test(ctx: StepContext) -> Outcome:
    """pytest over the in-process tests on every core (one process for a short affected-only run): JUnit and
    coverage data into the run folder."""
    return run_tests(ctx, UNIT)


def component_test(ctx: StepContext) -> Outcome:
    """pytest over the tests that run the project's tools, servers and CLI, on every core (one process for a short
    affected-only run): JUnit and coverage data into the run folder."""
    return run_tests(ctx, COMPONENT)


def plugin_path(ctx: StepContext) -> str:
    """``PYTHONPATH`` with the selection plugin's folder first (it imports nothing of the project under test)."""
    from cicd import testselect

    return os.pathsep.join(p for p in (str(testselect.PLUGIN_DIR), ctx.environ.get("PYTHONPATH", "")) if p)


def run_tests(ctx: StepContext, tier: Tier) -> Outcome:
    """pytest over one tier of the fast tests in :data:`UNIT_TEST_PATHS`, affected-only (:mod:`cicd.testselect`:
    only the tests whose recorded inputs changed; every test when there is no usable record, and the step says
    why), measuring :data:`COVERAGE_SOURCES`. The tier's coverage data (this run's, plus the recorded run's for the
    files that did not change) is what the ``coverage`` step gates."""
    from cicd import testselect
    from cicd.cache import StepCache
    from cicd.pipeline import MODEL
    from cicd.runner import CACHE_OFF

    junit = ctx.out("reports", tier.junit)
    work = ctx.out("select", tier.name)
    args = [*[p for p in UNIT_TEST_PATHS if (ctx.root / p).is_dir()], "-m", tier.markers]
    inputs = StepCache(ctx.root, environ=ctx.environ).matched_inputs(MODEL.step(tier.step))
    if CACHE_OFF in ctx.options:  # nothing read from earlier runs, nothing kept for later ones
        store = work / "data"
        selection = testselect.Plan(True, "the run keeps no cache (--no-cache)")
    else:
        store = ctx.root / testselect.SELECT_DIR / tier.step
        selection = testselect.plan(ctx.root, store, args, inputs, ctx.environ)
    testselect.write_plan(work, selection)
    ctx.note(selection.describe())
    coverage_file = ctx.out("reports", f".coverage-{tier.name}")
    result = ctx.run(
        [  # one pytest-xdist worker per core (one process for a short affected-only run); a module's tests stay in
            # one worker (tests/conftest.py)
            "pytest",
            *args,
            *testselect.pytest_options(work, workers=testselect.workers(selection), sources=COVERAGE_SOURCES),
            f"--junitxml={junit}",
        ],
        env={"COVERAGE_FILE": str(coverage_file), "PYTHONPATH": plugin_path(ctx)},
        check=False,
    )
    if not junit.exists():
        raise StepFailed(f"pytest exited with {result.returncode} before writing a report")
    tests, failed, skipped = _junit_counts(str(junit))
    # Recorded even when tests failed: a failed test reruns next time, the passing ones keep their record.
    recorded = testselect.record(
        ctx.root,
        work,
        store,
        selection=selection,
        args=args,
        step_inputs=inputs,
        coverage_file=coverage_file,
        environ=ctx.environ,
    )
    if result.returncode not in (0, NO_TESTS_RAN) or failed:
        raise StepFailed(
            f"{failed} of {tests} {tier.name} tests failed" if failed else f"pytest exited with {result.returncode}"
        )
    if tests == 0 and selection.run_all:
        raise StepFailed(f"no {tier.name} tests were collected")
    ctx.out("reports", tier.data).write_text(json.dumps(recorded.coverage, sort_keys=True), encoding="utf-8")
    ctx.out("reports", tier.stamp).write_text(inputs_key(ctx, tier), encoding="utf-8")
    ran = f"{tests - skipped} passed, {skipped} skipped" if tests else "no test affected"
    if not selection.run_all:
        ran += f", {len(selection.unaffected)} unaffected left out"
    return Outcome.passed(ran, junit=ctx.rel(junit), selected=recorded.ran, selection=selection.describe())


def inputs_key(ctx: StepContext, tier: Tier) -> str:
    """The step-cache key of the tier's step for the files as they are now: its data is current if it was made
    under this key."""
    from cicd.cache import StepCache
    from cicd.pipeline import MODEL, Node

    return StepCache(ctx.root, environ=ctx.environ).key(MODEL.step(tier.step), Node(tier.step), ctx.target)


def coverage_gate(ctx: StepContext) -> Outcome:
    """The coverage gate: the fast tests, both tiers together, cover at least :data:`COVERAGE_GATE` percent of
    cicd/ and functions/ (lines and branches). Writes the combined report, ``reports/coverage.xml``."""
    import coverage

    from cicd import testselect

    combined = ctx.out("reports", "coverage.data")
    combined.unlink(missing_ok=True)
    parts = []
    for tier in TIERS:  # each tier's relative paths made this checkout's, then combined by coverage.py
        part = ctx.out("reports", f".coverage-gate-{tier.name}")
        testselect.write_coverage(ctx.root, _read_json(_tier_data(ctx, tier)), part)
        parts.append(str(part))
    config = ctx.root / "pyproject.toml"
    cov = coverage.Coverage(data_file=str(combined), config_file=str(config) if config.is_file() else False)
    cov.combine(parts)
    cov.save()
    xml = ctx.out("reports", "coverage.xml")
    table = io.StringIO()
    gated = [str(ctx.root / source / "*") for source in GATED]  # the tiers measure every package, for selection
    try:
        total = cov.report(file=table, show_missing=False, skip_covered=True, include=gated)
        cov.xml_report(outfile=str(xml), include=gated)
    except coverage.exceptions.NoDataError as err:
        raise StepFailed(f"no coverage data to report: {err}") from err
    ctx.note(table.getvalue())
    shown = f"{total:.1f}%"
    if total < COVERAGE_GATE:
        raise StepFailed(
            f"coverage {shown} of {', '.join(GATED)} is below the {COVERAGE_GATE}% gate",
            hint="the step log has the table of the files not fully covered",
        )
    return Outcome.passed(f"{shown} of {', '.join(GATED)} covered (gate {COVERAGE_GATE}%)", xml=ctx.rel(xml))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StepFailed(f"cannot read the coverage data {path.name}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise StepFailed(f"{path.name} is not coverage data of a test tier")
    return data


def _tier_data(ctx: StepContext, tier: Tier) -> Path:
    """A tier's coverage data made on the files as they are now: from this run (the tier's step ran, or was served
    from the step cache, in it), else from the newest earlier run of this checkout that has it (an earlier command of
    the same CI job, ``inv unit-test``), else from the tier's hand-off (``.cicd/handoff/<step>/``: its CI job ran it,
    and the tool handed the folder to this job), else made here by running the tier (as ``iac-scan`` synthesizes
    when it finds no assembly)."""
    from cicd.reports import HANDOFF_DIR

    key = inputs_key(ctx, tier)
    earlier = sorted(ctx.run_dir.parent.glob(f"*/reports/{tier.stamp}"), key=lambda p: p.stat().st_mtime)
    handed = ctx.root / HANDOFF_DIR / tier.step / tier.stamp
    for stamp in (ctx.run_dir / "reports" / tier.stamp, *reversed(earlier), handed):
        if stamp.is_file() and stamp.read_text(encoding="utf-8") == key and (stamp.parent / tier.data).is_file():
            return stamp.parent / tier.data
    ctx.note(f"no coverage data of {tier.step} for these files (it did not pass since they changed): running it here")
    run_tests(ctx, tier)
    return ctx.run_dir / "reports" / tier.data


def api_contract(ctx: StepContext) -> Outcome:
    """openapi-spec-validator on ``openapi.yaml``; what is rendered from it is current; no environment may sign
    download URLs for longer than the contract's maximum."""
    from cicd import contract
    from cicd.config import load_config

    spec = contract.load(ctx.root)
    contract.validate(spec)
    stale = contract.stale(ctx.root, spec)
    if stale:
        raise StepFailed(f"out of date with {contract.CONTRACT}: {', '.join(stale)}", hint="run `inv api.render`")
    maximum = contract.ttl_maximum(spec)
    over = [e.name for e in load_config(ctx.root).environments if e.url_ttl_max > maximum]
    if over:
        raise StepFailed(
            f"url_ttl_max of {', '.join(over)} is above the contract's maximum for expires ({maximum} s)",
            hint=f"lower it in [tool.cicd.environments.*] or raise the maximum in {contract.CONTRACT}",
        )
    operations = sum(1 for _ in contract.operations(spec))
    return Outcome.passed(
        f"valid OpenAPI {spec['openapi']}, {operations} operations; the README table and Flutter fixture are current"
    )
