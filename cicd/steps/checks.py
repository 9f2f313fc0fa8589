"""Code-quality steps: lint, typecheck, unit-test, api-contract."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # nosec B405 # parses only the JUnit file our own pytest run wrote

from cicd.context import StepContext
from cicd.errors import StepFailed
from cicd.results import Outcome

COVERAGE_GATE = 85
# Every layer's fast tests (slow ones, which run real deploys and CI runners, belong to the full suite).
UNIT_TEST_PATHS = ("tests/unit", "tests/infra", "tests/adapters")
COMPONENT_MARKER = "component"


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
    """pytest over the unit tests on every core, JUnit into the run folder, coverage gate on cicd/ and functions/."""
    junit = ctx.out("reports", "unit-junit.xml")
    cov_xml = ctx.out("reports", "coverage.xml")
    result = ctx.run(
        [
            "pytest",
            *[p for p in UNIT_TEST_PATHS if (ctx.root / p).is_dir()],
            "-q",
            "-m",
            "not slow",
            "-p",
            "no:cacheprovider",
            "-n",  # pytest-xdist, one worker per core; a module's tests stay in one worker (tests/conftest.py)
            "auto",
            f"--junitxml={junit}",
            "--cov=cicd",
            "--cov=functions",
            "--cov-report=term",
            f"--cov-report=xml:{cov_xml}",
            f"--cov-fail-under={COVERAGE_GATE}",
        ],
        env={"COVERAGE_FILE": str(ctx.out("reports", ".coverage"))},
        check=False,
    )
    if not junit.exists():
        raise StepFailed(f"pytest exited with {result.returncode} before writing a report")
    tests, failed, skipped = _junit_counts(str(junit))
    if result.returncode != 0:
        if failed:
            raise StepFailed(f"{failed} of {tests} unit tests failed")
        raise StepFailed(f"coverage below the {COVERAGE_GATE}% gate (or pytest exited {result.returncode})")
    if tests == 0:
        raise StepFailed("no unit tests were collected")
    return Outcome.passed(
        f"{tests - skipped} passed, {skipped} skipped; coverage >= {COVERAGE_GATE}%", junit=ctx.rel(junit)
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
