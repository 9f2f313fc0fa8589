"""invoke tasks: the pipeline's command line. Each task parses its arguments and calls ``cicd``; nothing else.

`inv --list` shows them; `inv --help TASK` explains one. Exit codes: 0 passed, 1 a step failed, 2 bad usage or
configuration, 3 a required tool or service is missing.
"""

from __future__ import annotations

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from cicd import cli

cli.usage_errors_exit_2()

NO_CACHE = "run even if the step's inputs are unchanged (ignore the step cache)"
SELECTION_HELP = {
    "jobs": "steps to run at once (default: one per core)",
    "from_": "start from this step (and run what needs it)",
    "no_cache": NO_CACHE,
}


@task(help={"no_cache": NO_CACHE})
@cli.boundary
def lint(c: Context, no_cache: bool = False) -> None:
    """ruff check and ruff format --check."""
    cli.run_step("lint", use_cache=not no_cache)


@task(help={"no_cache": NO_CACHE})
@cli.boundary
def typecheck(c: Context, no_cache: bool = False) -> None:
    """mypy in strict mode."""
    cli.run_step("typecheck", use_cache=not no_cache)


@task(help={"no_cache": NO_CACHE})
@cli.boundary
def unit_test(c: Context, no_cache: bool = False) -> None:
    """pytest unit tests with the 85% coverage gate; JUnit into the run folder."""
    cli.run_step("unit-test", use_cache=not no_cache)


@task(help={"no_cache": NO_CACHE})
@cli.boundary
def sast(c: Context, no_cache: bool = False) -> None:
    """bandit and semgrep with the project's rules; SARIF into the run folder."""
    cli.run_step("sast", use_cache=not no_cache)


@task(help={"no_cache": NO_CACHE})
@cli.boundary
def secrets_scan(c: Context, no_cache: bool = False) -> None:
    """gitleaks over the git history and the working tree."""
    cli.run_step("secrets-scan", use_cache=not no_cache)


@task(help={"no_cache": NO_CACHE})
@cli.boundary
def sca(c: Context, no_cache: bool = False) -> None:
    """pip-audit --strict on the locked dependencies (skipped with the reason when offline)."""
    cli.run_step("sca", use_cache=not no_cache)


@task(help={"no_cache": NO_CACHE})
@cli.boundary
def sbom(c: Context, no_cache: bool = False) -> None:
    """CycloneDX JSON SBOM of the locked dependencies."""
    cli.run_step("sbom", use_cache=not no_cache)


@task(help=SELECTION_HELP)
@cli.boundary
def pr_checks(c: Context, from_: str = "", jobs: str = "", no_cache: bool = False) -> None:
    """Run the pull-request selection of the pipeline (fast checks, in parallel)."""
    cli.run_selection("pr", start=from_, jobs=jobs, use_cache=not no_cache)


@task(help={"jobs": SELECTION_HELP["jobs"]})
@cli.boundary
def rerun(c: Context, jobs: str = "") -> None:
    """Rerun the failed steps (and what they blocked) of the last run."""
    cli.rerun(jobs=jobs)


@task
@cli.boundary
def graph(c: Context) -> None:
    """Print the pipeline graph as a mermaid flowchart."""
    print(cli.graph())


@task
@cli.boundary
def report(c: Context) -> None:
    """Print the last run's summary (table, failures, mermaid timeline)."""
    print(cli.last_summary())


@task(name="clear")
@cli.boundary
def cache_clear(c: Context) -> None:
    """Empty the step cache (.cicd/cache/steps)."""
    print(cli.clear_cache())


ns = Collection(lint, typecheck, unit_test, sast, secrets_scan, sca, sbom, pr_checks, rerun, graph, report)
ns.add_collection(Collection("cache", cache_clear))
