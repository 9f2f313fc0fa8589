"""invoke tasks: the pipeline's command line. Each task parses its arguments and calls ``cicd``; nothing else.

`inv --list` shows them; `inv --help TASK` explains one. Exit codes: 0 passed, 1 a step failed, 2 bad usage or
configuration, 3 a required tool or service is missing.
"""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import Task, task

from cicd import bytecode

bytecode.keep_in_process()  # before the pipeline's modules: their bytecode is kept in .cicd/pycache

from cicd import cli  # noqa: E402 - after keep_in_process
from cicd.pipeline import Step  # noqa: E402

cli.usage_errors_exit_2()

TARGET = "local (embedded moto) or aws (a real account); default: $CICD_TARGET, else local"
NO_CACHE = "run even if the step's inputs are unchanged (ignore the step cache)"
SELECTION_HELP = {
    "jobs": "steps to run at once (default: one per core)",
    "from_": "start from this step (and run what needs it)",
    "no_cache": NO_CACHE,
}


def sentence(doc: str) -> str:
    return f"{doc[0].upper()}{doc[1:]}."


def step_task(step: Step) -> Task[Any]:
    """One task per step of the model that runs outside environments: ``inv lint``, ``inv sast``..."""

    def body(c: Context, no_cache: bool = False, target: str = "") -> None:
        cli.run_step(step.name, use_cache=not no_cache, target=target)

    body.__name__ = body.__qualname__ = step.name.replace("-", "_")
    body.__doc__ = sentence(step.doc)
    made: Task[Any] = task(help={"no_cache": NO_CACHE, "target": TARGET})(cli.boundary(body))
    return made


@task(help={**SELECTION_HELP, "target": TARGET})
@cli.boundary
def pr_checks(c: Context, from_: str = "", jobs: str = "", no_cache: bool = False, target: str = "") -> None:
    """Run the pull-request selection of the pipeline (fast checks, in parallel)."""
    cli.run_selection("pr", start=from_, jobs=jobs, target=target, use_cache=not no_cache)


@task(help={**SELECTION_HELP, "target": TARGET})
@cli.boundary
def pipeline(c: Context, from_: str = "", jobs: str = "", no_cache: bool = False, target: str = "") -> None:
    """Run the trunk pipeline: checks, package once, deploy dev, test, promote to preprod and prod, smoke test."""
    try:
        cli.run_selection("main", start=from_, jobs=jobs, target=target, use_cache=not no_cache)
    finally:
        epilogue = cli.pipeline_epilogue(cli.check_target(target))
        if epilogue:
            print(epilogue)


def env_step_task(step: Step, flag: str = "env", default: str = "") -> Task[Any]:
    """One task per step that runs in an environment: ``inv deploy --env dev``, ``inv promote --to prod``..."""

    def by_env(c: Context, env: str = default, target: str = "") -> None:
        cli.run_step(step.name, env=cli.check_env(env), target=target)

    def by_to(c: Context, to: str = default, target: str = "") -> None:
        cli.run_step(step.name, env=cli.check_env(to, "to"), target=target)

    body = by_to if flag == "to" else by_env  # `inv promote --to prod` reads better than `--env prod`
    name = step.task.split()[0] if step.task else step.name  # the approve step runs as `inv change-set`
    body.__name__ = body.__qualname__ = name.replace("-", "_")
    body.__doc__ = sentence(step.doc)
    made: Task[Any] = task(help={flag: ", ".join(step.envs), "target": TARGET})(cli.boundary(body))
    return made


@task(help={"env": "the environment to approve (prod)", "target": TARGET})
@cli.boundary
def approve(c: Context, env: str = "prod", target: str = "") -> None:
    """Approve the artifact handed on from preprod for production (when [tool.cicd] approval is on)."""
    print(cli.approve(env, target))


@task(name="up")
@cli.boundary
def local_up(c: Context) -> None:
    """Start the embedded local AWS (moto) if it is not running."""
    print(cli.local_up())


@task(name="down")
@cli.boundary
def local_down(c: Context) -> None:
    """Stop the local AWS and every local API."""
    print(cli.local_down())


@task(name="status")
@cli.boundary
def local_status(c: Context) -> None:
    """Show per environment the deployed build version, artifact digest and local API URL."""
    print(cli.local_status())


@task(name="generate")
@cli.boundary
def adapters_generate(c: Context) -> None:
    """Render every CI adapter, the comparison guide and the pre-commit/Dependabot/Renovate files from the model."""
    print(cli.adapters_generate())


@task(name="check", help={"no_cache": NO_CACHE})
@cli.boundary
def adapters_check(c: Context, no_cache: bool = False) -> None:
    """Fail when a committed adapter differs from the model's rendering; run each tool's validators."""
    cli.run_step("adapters-check", use_cache=not no_cache)


@task(
    name="bump",
    help={
        "name": "action/orb/image name in cicd/adapters/pins.py",
        "version": "new version",
        "sha": "full commit SHA (for actions)",
        "digest": "an image's index digest sha256:... at the new tag, or 'none' (then list why in NOT_DIGEST_PINNED)",
        "hashes": "uv only: the sha256:... of every uv wheel a job may install, comma-separated",
    },
)
@cli.boundary
def adapters_bump(  # noqa: PLR0917 - invoke maps each option to a parameter
    c: Context, name: str = "", version: str = "", sha: str = "", digest: str = "", hashes: str = ""
) -> None:
    """Bump one pinned action, orb, image or tool everywhere, then regenerate the adapters."""
    print(cli.adapters_bump(name, version, sha, digest, hashes))


@task(
    name="run",
    help={
        "tool": "github (act), gitlab (gitlab-ci-local) or bitbucket (bb-run)",
        "event": "pr (a pull request) or main (a push to main: the whole trunk pipeline)",
        "release": "release the manual approval gate when the run stops at it ([tool.cicd] approval = true)",
        "keep": "leave the run's embedded AWS running afterwards (stop it with the printed command)",
    },
)
@cli.boundary
def adapters_run(c: Context, tool: str = "", event: str = "main", release: bool = False, keep: bool = False) -> None:
    """Run a CI tool's own local runner on this checkout's adapter, against the embedded AWS."""
    print(cli.adapters_run(tool, event, release=release, keep=keep))


@task(name="lock", help={"name": "semgrep, checkov or bb-run", "version": "exact version (default: the locked one)"})
@cli.boundary
def tools_lock(c: Context, name: str = "", version: str = "") -> None:
    """Re-lock one isolated tool environment (cicd/toolenvs/NAME.txt, with hashes)."""
    print(cli.lock_tool(name, version))


@task(name="lock")
@cli.boundary
def deps_lock(c: Context) -> None:
    """Re-resolve requirements.lock (versions + hashes) and the constraints in pyproject.toml."""
    print(cli.lock_dependencies())


@task(name="render")
@cli.boundary
def api_render(c: Context) -> None:
    """Render the README's API table and the Flutter client's test fixture from openapi.yaml."""
    print(cli.api_render())


@task(help={"jobs": SELECTION_HELP["jobs"]})
@cli.boundary
def rerun(c: Context, jobs: str = "") -> None:
    """Rerun the failed steps (and what they blocked) of the last run."""
    cli.rerun(jobs=jobs)


@task(help={"write": "also refresh the graph in README.md"})
@cli.boundary
def graph(c: Context, write: bool = False) -> None:
    """Print the pipeline graph as a mermaid flowchart."""
    print(cli.graph(write=write))


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


ns = Collection(pr_checks, pipeline, approve, rerun, graph, report)
for _step in cli.model().steps:
    if _step.per_env:
        flag = "to" if _step.task and "--to" in _step.task else "env"
        ns.add_task(env_step_task(_step, flag, _step.envs[0] if len(_step.envs) == 1 else ""))
    elif _step.task is None:
        ns.add_task(step_task(_step))
ns.add_collection(Collection("local", local_up, local_down, local_status))
ns.add_collection(Collection("deps", deps_lock))
ns.add_collection(Collection("tools", tools_lock))
ns.add_collection(Collection("adapters", adapters_generate, adapters_check, adapters_bump, adapters_run))
ns.add_collection(Collection("cache", cache_clear))
ns.add_collection(Collection("api", api_render))
