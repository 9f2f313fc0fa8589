"""Code-quality steps: lint, typecheck, unit-test, api-contract."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET  # nosec B405 # parses only the JUnit file our own pytest run wrote

from cicd.context import StepContext
from cicd.errors import StepFailed
from cicd.results import Outcome

COVERAGE_GATE = 85
GATED = ("cicd/*", "functions/*")
# What the tests execute is measured in every project package (to know each test's inputs); the gate covers GATED.
COVERAGE_SOURCES = ("cicd", "functions", "infra", "tests", "tasks")
NO_TESTS_RAN = 5  # pytest's exit status when every test was deselected
# Every layer's fast tests (slow ones, which run real deploys and CI runners, belong to the full suite).
UNIT_TEST_PATHS = ("tests/unit", "tests/infra", "tests/adapters")


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
    result = ctx.run(["mypy", f"--junit-xml={junit}"], check=False)
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
    """pytest over the unit tests on every core, affected-only (:mod:`cicd.testselect`), JUnit into the run folder,
    coverage gate on cicd/ and functions/ over the combined data."""
    return run_tests(ctx, [p for p in UNIT_TEST_PATHS if (ctx.root / p).is_dir()], "not slow", "unit")


def plugin_path(ctx: StepContext) -> str:
    """``PYTHONPATH`` with the selection plugin's folder first (it imports nothing of the project under test)."""
    from cicd import testselect

    return os.pathsep.join(p for p in (str(testselect.PLUGIN_DIR), ctx.environ.get("PYTHONPATH", "")) if p)


def run_tests(ctx: StepContext, paths: list[str], marker: str, name: str) -> Outcome:
    """One test step: pytest over ``paths`` with ``-m marker``, only the tests whose recorded inputs changed (every
    test when there is no usable record, and the step says why), then the coverage gate on the combined data."""
    from cicd import testselect
    from cicd.cache import StepCache
    from cicd.pipeline import MODEL
    from cicd.runner import CACHE_OFF

    junit = ctx.out("reports", f"{name}-junit.xml")
    cov_xml = ctx.out("reports", "coverage.xml")
    work = ctx.out("select")
    args = [*paths, "-m", marker]
    inputs = StepCache(ctx.root, environ=ctx.environ).matched_inputs(MODEL.step(ctx.step))
    if CACHE_OFF in ctx.options:  # nothing read from earlier runs, nothing kept for later ones
        store = work / "data"
        selection = testselect.Plan(True, "the run keeps no cache (--no-cache)")
    else:
        store = ctx.root / testselect.SELECT_DIR / ctx.step
        selection = testselect.plan(ctx.root, store, args, inputs, ctx.environ)
    testselect.write_plan(work, selection)
    ctx.note(selection.describe())
    coverage_file = ctx.out("reports", ".coverage")
    result = ctx.run(
        [
            "pytest",
            *args,
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            testselect.PLUGIN,
            f"--cicd-select={work}",
            "-n",  # pytest-xdist, one worker per core; a module's tests stay in one worker (tests/conftest.py)
            "auto",
            f"--junitxml={junit}",
            *[f"--cov={source}" for source in COVERAGE_SOURCES],
            "--cov-report=",
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
        raise StepFailed(f"{failed} of {tests} {name} tests failed" if failed else f"pytest exited {result.returncode}")
    if tests == 0 and selection.run_all:
        raise StepFailed(f"no {name} tests were collected")
    percent, table = testselect.coverage_report(
        ctx.root, recorded.coverage, ctx.out("reports", ".coverage.combined"), cov_xml, GATED
    )
    ctx.log.write(table)
    if percent < COVERAGE_GATE:
        raise StepFailed(f"coverage {percent:.1f}% is below the {COVERAGE_GATE}% gate on {', '.join(GATED)}")
    ran = f"{tests - skipped} passed, {skipped} skipped" if tests else "no test affected"
    if not selection.run_all:
        ran += f", {len(selection.unaffected)} unaffected left out"
    return Outcome.passed(
        f"{ran}; coverage {percent:.1f}% >= {COVERAGE_GATE}%",
        junit=ctx.rel(junit),
        selected=recorded.ran,
        selection=selection.describe(),
    )


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
