"""The glue between ``tasks.py`` and the library: argument checks, running selections, the error boundary.

Kept light on purpose: ``inv --list`` imports this module, so the runner, rich, boto3 and aws_cdk load only when a
task actually runs.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from cicd import pipeline
from cicd.errors import CicdError, UsageError

if TYPE_CHECKING:
    from cicd.reports import RunReport

P = ParamSpec("P")
R = TypeVar("R")
ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("local", "aws")


def model() -> pipeline.Model:
    return pipeline.MODEL


def boundary(fn: Callable[P, R]) -> Callable[P, R]:
    """Catch every :class:`CicdError` once: one line on stderr, the contract's exit code, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from invoke.exceptions import Exit

        try:
            return fn(*args, **kwargs)
        except CicdError as err:
            from cicd.command import scrubber

            raise Exit(scrubber()(f"error: {err}"), code=err.return_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=1) from None

    return wrapper


def usage_errors_exit_2() -> None:
    """invoke exits 1 on a bad task argument; the contract says usage errors exit 2. Patched in one place."""
    from invoke.exceptions import Exit, ParseError
    from invoke.program import Program

    if getattr(Program.parse_tasks, "_cicd_patched", False):
        return
    original = Program.parse_tasks

    def parse_tasks(self: Program) -> None:
        try:
            original(self)
        except ParseError as err:
            raise Exit(f"error: {err} (see `inv --list` and `inv --help TASK`)", code=2) from None

    parse_tasks._cicd_patched = True  # type: ignore[attr-defined]
    Program.parse_tasks = parse_tasks  # type: ignore[method-assign]


TARGET_ENV = "CICD_TARGET"


def check_target(target: str | None) -> str:
    """``target``, else ``$CICD_TARGET``, else ``local``; a :class:`UsageError` for anything but local or aws."""
    target = target or os.environ.get(TARGET_ENV) or "local"
    if target not in TARGETS:
        raise UsageError(f"unknown target '{target}'", hint=f"choose one of: {', '.join(TARGETS)}")
    return target


def check_env(env: str | None, flag: str = "env") -> str:
    if not env:
        raise UsageError(f"this task needs --{flag}", hint=f"choose one of: {', '.join(pipeline.ENVIRONMENTS)}")
    if env not in pipeline.ENVIRONMENTS:
        raise UsageError(f"unknown environment '{env}'", hint=f"choose one of: {', '.join(pipeline.ENVIRONMENTS)}")
    return env


def parse_jobs(jobs: int | str | None) -> int | None:
    if jobs is None or jobs == "":
        return None
    try:
        value = int(jobs)
    except (TypeError, ValueError):
        raise UsageError(
            f"--jobs must be a whole number, got '{jobs}'", hint="e.g. --jobs 2, or omit it to use one job per core"
        ) from None
    if value < 1:
        raise UsageError(f"--jobs must be at least 1, got {value}", hint="omit it to use one job per core")
    return value


def _run(
    nodes: Sequence[pipeline.Node], trigger: str, target: str, jobs: int | None, *, use_cache: bool = True
) -> RunReport:
    from cicd.runner import RunOptions, run_nodes

    options = RunOptions(trigger=trigger, target=target, jobs=jobs, use_cache=use_cache)
    report = run_nodes(ROOT, pipeline.MODEL, nodes, options)
    if report.status != "passed":
        from invoke.exceptions import Exit

        from cicd.errors import EXIT_MISSING_TOOL, EXIT_STEP_FAILED, EXIT_USAGE

        # A missing tool or service (3) outranks bad configuration (2), which outranks a failed check (1).
        codes = {s.details.get("exit_code") for s in report.steps}
        code = next((c for c in (EXIT_MISSING_TOOL, EXIT_USAGE) if c in codes), EXIT_STEP_FAILED)
        raise Exit(code=code)
    return report


def preflight(target: str, nodes: Sequence[pipeline.Node]) -> None:
    """Checks before anything is built: ``[tool.cicd]`` is valid; the aws target has accounts, regions, credentials."""
    from cicd import config

    check_target(target)
    config.load_config(ROOT)
    envs = tuple(sorted({n.env for n in nodes if n.env}, key=pipeline.ENVIRONMENTS.index))
    needs_target = any(pipeline.MODEL.step(n.step).stage in ("deploy", "verify") for n in nodes)
    if target == "aws" and (envs or needs_target):
        from cicd.steps.deploy import check_aws_target

        check_aws_target(ROOT, os.environ, envs or pipeline.ENVIRONMENTS)


def run_selection(
    trigger: str,
    *,
    start: str | None = None,
    jobs: int | str | None = None,
    target: str = "",
    use_cache: bool = True,
) -> RunReport:
    njobs = parse_jobs(jobs)
    target = check_target(target)
    nodes = pipeline.select(pipeline.MODEL, trigger, start=start or None)
    preflight(target, nodes)
    return _run(nodes, trigger, target, njobs, use_cache=use_cache)


def run_step(name: str, *, env: str | None = None, target: str = "", use_cache: bool = True) -> None:
    target = check_target(target)
    if env and env not in pipeline.ENVIRONMENTS:
        check_env(env)
    step = pipeline.MODEL.step(name)
    if step.per_env:
        env = check_env(env)
        if env not in step.envs:
            raise UsageError(f"step '{name}' does not run in '{env}'", hint=f"it runs in: {', '.join(step.envs)}")
        nodes = [pipeline.Node(name, env)]
    else:
        nodes = [pipeline.Node(name)]
    preflight(target, nodes)
    _run(nodes, "manual", target, 1, use_cache=use_cache)


def rerun(*, jobs: int | str | None = None) -> None:
    """Rerun the failed (and therefore not-run) steps of the last run, in dependency order."""
    from cicd import reports

    data = reports.load_report(ROOT / reports.RUNS_DIR / reports.LATEST / "report.json")
    wanted: list[pipeline.Node] = []
    for row in data["steps"]:
        if not isinstance(row, dict) or "name" not in row or "status" not in row:
            raise UsageError("the last run report is malformed", hint="start a new run")
        if row["status"] in ("failed", "not-run"):
            wanted.append(pipeline.Node(str(row["name"]), row.get("env")))
    if not wanted:
        print("Nothing to rerun: every step of the last run passed.")
        return
    for node in wanted:
        pipeline.MODEL.step(node.step)
    trigger = data.get("trigger") if data.get("trigger") in ("pr", "main") else "manual"
    target = data.get("target") or "local"
    nodes = pipeline.MODEL.ordered(wanted)
    preflight(str(target), nodes)
    _run(nodes, str(trigger), str(target), parse_jobs(jobs))


def pipeline_epilogue(target: str) -> str:
    """What `inv pipeline` prints at the end: where each environment answers and how to stop the local AWS."""
    if target != "local":
        return ""
    from cicd import local_aws

    state = local_aws.status(ROOT)
    if not state.running:
        return ""
    lines = ["", "Environments on the local target:"]
    for api in sorted(state.apis, key=lambda a: pipeline.ENVIRONMENTS.index(a.env)):
        lines.append(f"  {api.env:<8} {api.url}health   {api.url}apk/latest")
    lines.append("Inspect with `uv run inv local.status`; stop everything with `uv run inv local.down`.")
    return "\n".join(lines)


def approve(env: str, target: str) -> str:
    """Record a manual approval for the artifact that passed the environment before ``env``."""
    import getpass
    import io

    from cicd.context import StepContext
    from cicd.steps.deploy import grant_approval

    target = check_target(target)
    env = check_env(env)
    ctx = StepContext(ROOT, ROOT / ".cicd", "approve", env, target, io.StringIO(), ROOT / ".cicd" / "approve.log")
    return grant_approval(ctx, getpass.getuser())


def adapters_run(tool: str, event: str, *, release: bool = False, keep: bool = False) -> str:
    """``inv adapters.run``: the tool's local runner on this checkout (output streamed); a summary of its jobs."""
    from cicd.adapters import localrun

    if not tool:
        raise UsageError("this task needs --tool", hint=f"choose one of: {', '.join(localrun.TOOLS)}")
    localrun.check_choice(tool, event)
    result = localrun.run(ROOT, tool, event, release=release, keep=keep, log=sys.stdout)
    verdicts = ", ".join(f"{job} {verdict}" for job, verdict in result.jobs.items()) or "no job ran"
    lines = [f"{tool} ({event}): {verdicts}"]
    if result.stand_in_flutter:
        lines.append("no Flutter SDK on PATH: the stand-in flutter wrote a placeholder APK and web build")
    if keep:
        home = localrun.job_environment(ROOT, result.project.parent)["CICD_LOCAL_HOME"]
        lines.append(f"the run's local AWS keeps running: CICD_LOCAL_HOME={home} uv run inv local.down stops it")
    lines.append(f"workspace: {result.project.parent}")
    if result.returncode != 0:
        from invoke.exceptions import Exit

        print("\n".join(lines))
        raise Exit(f"error: the {tool} runner failed (exit {result.returncode}); see its output above", code=1)
    return "\n".join(lines)


def local_up() -> str:
    from cicd import config, local_aws

    conf = config.load_config(ROOT)
    server = local_aws.up(ROOT, port=conf.local_port, region=conf.local_region)
    return f"local AWS (moto) answers at {server.endpoint} (pid {server.pid}); stop it with `uv run inv local.down`"


def local_down() -> str:
    from cicd import local_aws

    return "local AWS and its APIs stopped" if local_aws.down(ROOT) else "local AWS was not running"


def local_status() -> str:
    """The server, and per environment what is deployed (build version, artifact digest) and its local API URL."""
    from botocore.exceptions import ClientError

    from cicd import config, local_aws
    from cicd import state as pipeline_state

    state = local_aws.status(ROOT)
    if not state.running or state.server is None:
        return f"local AWS is not running ({state.note}); `uv run inv pipeline` or `uv run inv local.up` starts it"
    server = state.server
    cfn = server.session().client("cloudformation", endpoint_url=server.endpoint)
    apis = {a.env: a for a in state.apis}
    conf = config.load_config(ROOT)
    lines = [f"local AWS (moto) {server.endpoint} · pid {server.pid} · since {server.started_at}"]
    for env in pipeline.ENVIRONMENTS:
        try:
            stack = cfn.describe_stacks(StackName=conf.environment(env).stack_name)["Stacks"][0]
        except ClientError:
            lines.append(f"  {env:<8} nothing deployed")
            continue
        outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
        digest = outputs.get("DeployedArtifactDigest", "?")
        verdict = pipeline_state.open_store(ROOT, env, "local").tested(digest)
        tested = "not tested" if verdict is None else "passed" if verdict else "FAILED"
        api = apis.get(env)
        url = api.url if api and api.alive else "API not served (redeploy to serve it)"
        lines.append(
            f"  {env:<8} version {outputs.get('DeployedBuildVersion', '?')} · artifact {digest[:12]} · "
            f"tests {tested} · {stack['StackStatus']} · {url}"
        )
    return "\n".join(lines)


def adapters_generate() -> str:
    from cicd.adapters import cli as adapters

    written = adapters.generate(ROOT)
    return f"Rendered {len(written)} files from the pipeline model (ci-adapters/, docs/ci-comparison.md, ...)."


def adapters_bump(name: str, version: str, sha: str, digest: str = "", hashes: str = "") -> str:
    """``digest``: an image's new ``sha256:...`` (``none`` for explicitly none); ``hashes``: uv's wheel hashes,
    comma-separated."""
    from cicd.adapters import cli as adapters

    if not name or not version:
        raise UsageError("adapters.bump needs --name and --version", hint="see cicd/adapters/pins.py for the names")
    new_digest = "" if digest == "none" else digest or None
    new_hashes = tuple(h.strip() for h in hashes.split(",") if h.strip()) or None
    written = adapters.bump(name, version, sha, ROOT, digest=new_digest, hashes=new_hashes)
    return f"Bumped {name} to {version} in cicd/adapters/pins.py and regenerated {len(written)} files."


def lock_tool(name: str, version: str) -> str:
    from cicd import tools

    if name not in tools.ISOLATED:
        raise UsageError(f"unknown tool '{name}'", hint=f"choose one of: {', '.join(tools.ISOLATED)}")
    tool = tools.ISOLATED[name]
    tools.lock(tool, version or None)
    return (
        f"Locked {name} {tool.version} in {tool.lock_file.relative_to(ROOT)}; its environment is rebuilt on next use."
    )


def lock_dependencies() -> str:
    from cicd import deps

    count = deps.lock(ROOT)
    return f"Locked {count} packages in {deps.LOCK}; run `uv sync` to apply."


def api_render() -> str:
    from cicd import contract

    changed = contract.render(ROOT)
    return f"Rendered from {contract.CONTRACT}: " + (", ".join(changed) + " updated" if changed else "already current")


def clear_cache() -> str:
    from cicd.cache import StepCache

    count = StepCache(ROOT).clear()
    return f"Removed {count} cached step result(s)."


def last_summary() -> str:
    """The last run's summary.md (table, failures, mermaid timeline)."""
    from cicd import reports

    path = ROOT / reports.RUNS_DIR / reports.LATEST / "summary.md"
    if not path.exists():
        raise UsageError("no run yet", hint="run `inv pr-checks` or `inv pipeline` first")
    return path.read_text(encoding="utf-8")


def graph(*, write: bool = False) -> str:
    """The pipeline graph as mermaid, rendered from the model; ``write`` refreshes the README's copy."""
    from cicd.graph import mermaid, replace_block

    text = mermaid(pipeline.MODEL)
    if write:
        readme = ROOT / "README.md"
        readme.write_text(replace_block(readme.read_text(encoding="utf-8"), text), encoding="utf-8")
    return text
