"""invoke tasks: the pipeline's command line. Each task parses its arguments and calls ``cicd``; nothing else.

`inv --list` shows them; `inv --help TASK` explains one. Exit codes: 0 passed, 1 a step failed, 2 bad usage or
configuration, 3 a required tool or service is missing.
"""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import Task, task

from cicd import cli
from cicd.pipeline import Step

cli.usage_errors_exit_2()

NO_CACHE = "run even if the step's inputs are unchanged (ignore the step cache)"
SELECTION_HELP = {
    "jobs": "steps to run at once (default: one per core)",
    "from_": "start from this step (and run what needs it)",
    "no_cache": NO_CACHE,
}


def step_task(step: Step) -> Task[Any]:
    """One task per step of the model that runs outside environments: ``inv lint``, ``inv sast``..."""

    def body(c: Context, no_cache: bool = False) -> None:
        cli.run_step(step.name, use_cache=not no_cache)

    body.__name__ = body.__qualname__ = step.name.replace("-", "_")
    body.__doc__ = f"{step.doc}."
    made: Task[Any] = task(help={"no_cache": NO_CACHE})(cli.boundary(body))
    return made


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


ns = Collection(pr_checks, rerun, graph, report)
for _step in cli.model().steps:
    if not _step.per_env:
        ns.add_task(step_task(_step))
ns.add_collection(Collection("cache", cache_clear))
