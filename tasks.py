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

JOBS_HELP = {
    "jobs": "steps to run at once (default: one per core)",
    "from_": "start from this step (and what needs it)",
}


@task
@cli.boundary
def lint(c: Context) -> None:
    """ruff check and ruff format --check."""
    cli.run_step("lint")


@task
@cli.boundary
def typecheck(c: Context) -> None:
    """mypy in strict mode."""
    cli.run_step("typecheck")


@task
@cli.boundary
def unit_test(c: Context) -> None:
    """pytest unit tests with the 85% coverage gate; JUnit into the run folder."""
    cli.run_step("unit-test")


@task
@cli.boundary
def sast(c: Context) -> None:
    """bandit and semgrep with the project's rules; SARIF into the run folder."""
    cli.run_step("sast")


@task
@cli.boundary
def secrets_scan(c: Context) -> None:
    """gitleaks over the git history and the working tree."""
    cli.run_step("secrets-scan")


@task
@cli.boundary
def sca(c: Context) -> None:
    """pip-audit --strict on the locked dependencies (skipped with the reason when offline)."""
    cli.run_step("sca")


@task
@cli.boundary
def sbom(c: Context) -> None:
    """CycloneDX JSON SBOM of the locked dependencies."""
    cli.run_step("sbom")


@task(help=JOBS_HELP)
@cli.boundary
def pr_checks(c: Context, from_: str = "", jobs: str = "") -> None:
    """Run the pull-request selection of the pipeline (fast checks, in parallel)."""
    cli.run_selection("pr", start=from_, jobs=jobs)


@task(help={"jobs": JOBS_HELP["jobs"]})
@cli.boundary
def rerun(c: Context, jobs: str = "") -> None:
    """Rerun the failed steps (and what they blocked) of the last run."""
    cli.rerun(jobs=jobs)


@task
@cli.boundary
def graph(c: Context) -> None:
    """Print the pipeline graph as a mermaid flowchart."""
    print(cli.graph())


ns = Collection(lint, typecheck, unit_test, sast, secrets_scan, sca, sbom, pr_checks, rerun, graph)
