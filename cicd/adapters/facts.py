"""What a rendered adapter actually says, read back from its files, and the checks run over it.

Each adapter module parses its own output into :class:`AdapterFacts` (jobs, their ``inv`` calls, needs, triggers,
environment, lock, guard, credentials, ...). Two families of checks then run on the facts, the same for every
tool, so a renderer that drops a guard or a lock fails here whatever the tool:

* :func:`parity` - the ``inv`` calls per trigger are exactly the model's selection, and every dependency of the
  model is kept (same job earlier, or a job that runs before);
* :func:`properties` - the "better than the anchors" list: pinning, federated credentials with valid session
  names, branch guards, build once, locks, environments and gates, timeouts, caches, reports, header, path filters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cicd import pipeline
from cicd.adapters.common import GENERATOR, SESSION_NAME_RE
from cicd.adapters.plan import CHANGE_SET_SUFFIX, Plan, is_approval, present_needs, task_command
from cicd.pipeline import Model

INV_RE: Final = re.compile(r"uv run inv ([a-z][\w.-]*(?: --?[\w-]+(?: [\w.-]+)?)*)")
FORBIDDEN_REFS: Final = (
    (re.compile(r"@v\d+(\.\d+)?\b(?!\.\d)"), "a floating action/orb major tag (@vN)"),
    (re.compile(r"@(main|master|latest)\b"), "a moving ref (@main/@master/@latest)"),
    (re.compile(r":latest\b"), "a :latest image tag"),
    (re.compile(r"\bpull_request_target\b"), "pull_request_target (gives fork PRs secrets)"),
    (re.compile(r"aws[-_]secret[-_]access[-_]key", re.IGNORECASE), "a long-lived AWS secret key"),
    (re.compile(r"export \$\("), "export $(...) (carries on with empty values)"),
)
SYNTH_IN_DEPLOY: Final = re.compile(r"\b(inv synth|cdk synth|cdk bootstrap|inv package)\b")


@dataclass(frozen=True)
class Handoff:
    """Files one job hands to later ones by the tool's own mechanism (artifact, workspace, stash, output artifact).

    ``name`` is what the tool calls it; ``paths`` are workspace-relative files, folders or globs (what is handed on),
    kept relative to ``root`` (GitHub keeps them relative to their common folder, CircleCI to the workspace root it
    names; most tools to the project folder); ``dest`` is where a receiving job puts them, relative to its
    workspace."""

    name: str
    paths: tuple[str, ...] = ()
    dest: str = "."
    root: str = "."


@dataclass
class JobFacts:
    id: str
    commands: list[str]
    needs: list[str] = field(default_factory=list)
    triggers: set[str] = field(default_factory=set)
    env: str | None = None
    """The tool's native environment (GitHub environment, GitLab environment, Azure deployment, ...)."""
    lock: str | None = None
    """The tool's native one-at-a-time lock for this job (concurrency group, resource_group, ...)."""
    guard: bool = False
    timeout: int | None = None
    credentials: str | None = None
    """How the job gets AWS credentials: ``oidc`` (a federated token), ``role`` (an instance/service role), None."""
    session_names: list[str] = field(default_factory=list)
    gate: bool = False
    """A manual approval holds this job (the tool's own mechanism)."""
    reports: bool = False
    """The job's JUnit (or, on GitHub, its summary) reaches the tool's test report UI."""
    caches: bool = False
    step_cache: bool = False
    """The step cache (``.cicd/cache``) is saved after the job and restored by the next run of it."""
    keeps_run_folder: bool = False
    """The run folder (reports, logs, stack outputs) is kept as an artifact."""
    downloads: bool = False
    uploads: bool = False
    script: str = ""
    """Every shell line of the job, joined (for text checks)."""
    receives: list[Handoff] = field(default_factory=list)
    """What the tool puts into the job's fresh workspace before its commands run, in order (later ones overwrite)."""
    hands_on: list[Handoff] = field(default_factory=list)
    """What the tool keeps of the job's workspace for later jobs, when the job succeeds."""
    variables: dict[str, str] = field(default_factory=dict)
    """Variables the file sets for the job (pipeline level, then job level), e.g. ``CICD_TARGET``."""
    restores: tuple[str, ...] = ()
    """Every cache the job restores (the tool's cache names, keys or paths; tool-action caches included)."""
    trusted_cache: bool = False
    """On ``main``, the step cache this job restores is one only ``main`` can write (the tool scopes caches per
    branch), or the job verifies its entries (``CICD_CACHE_VERIFY``, signed with a secret only ``main`` holds)."""
    shared_on_main: tuple[str, ...] = ()
    """The dependency caches (not the step cache) this check restores when it runs on ``main`` from a cache store
    every branch can write (CircleCI, Bitbucket); must be empty: a poisoned tool would pass main's checks."""
    locked: bool = False
    """The job installs its Python packages from ``requirements.lock`` with every hash checked (:data:`~cicd.adapters
    .common.LOCKED_INSTALL`) and ``uv run`` does not re-resolve (``UV_NO_SYNC=1``)."""
    approvers: str = ""
    """Who may release the manual gate that holds this job, as the file names them (users, groups, a variable, or
    the setting its header says to configure); empty: anyone who may run the pipeline."""
    credential_env: str | None = None
    """The environment named by what the job's AWS credentials come from (its environment, audience, context,
    service connection, deployment or credential ids); None: no credentials."""


@dataclass
class AdapterFacts:
    tool: str
    files: dict[str, str]
    jobs: list[JobFacts]
    path_filters: list[str] | None = None
    """The PR trigger's path filter, when the tool has one (None: the tool has no such filter)."""
    main_file: str = ""

    def job(self, job_id: str) -> JobFacts:
        return next(j for j in self.jobs if j.id == job_id)

    def for_trigger(self, trigger: str) -> list[JobFacts]:
        return [j for j in self.jobs if trigger in j.triggers]


def inv_calls(lines: Iterable[str]) -> list[str]:
    """The ``inv`` task commands in shell text, in order (``uv run inv lint`` -> ``lint``)."""
    found: list[str] = []
    for line in lines:
        found.extend(m.group(1).strip() for m in INV_RE.finditer(line))
    return found


def upstream(facts: AdapterFacts, job: JobFacts, trigger: str) -> set[str]:
    return reachable({j.id: j for j in facts.for_trigger(trigger)}, job)


def reachable(by_id: Mapping[str, JobFacts], job: JobFacts) -> set[str]:
    """The ids of every job ``job`` needs, directly or not, among ``by_id``."""
    seen: set[str] = set()
    todo = list(job.needs)
    while todo:
        current = todo.pop()
        if current in by_id and current not in seen:
            seen.add(current)
            todo.extend(by_id[current].needs)
    return seen


def parity(plan: Plan, facts: AdapterFacts) -> list[str]:
    """Problems with the adapter's ``inv`` calls per trigger versus the plan's selections (empty: in parity): the
    model's selection, less the approval step when the approval switch is off (no approval job is rendered)."""
    model = plan.model
    planned = {n for job in plan.jobs for n in job.nodes}
    problems: list[str] = []
    for trigger in pipeline.TRIGGERS:
        if not any(trigger in s.triggers for s in model.steps):
            continue
        expected = {task_command(model, n): n for n in pipeline.select(model, trigger) if n in planned}
        where: dict[str, tuple[JobFacts, int]] = {}
        for job in facts.for_trigger(trigger):
            for index, command in enumerate(job.commands):
                if command in where:
                    problems.append(
                        f"{facts.tool} {trigger}: `{command}` runs twice ({where[command][0].id}, {job.id})"
                    )
                where[command] = (job, index)
        for command in sorted(set(where) - set(expected)):
            problems.append(f"{facts.tool} {trigger}: runs `{command}`, which the {trigger} selection does not")
        for command in sorted(set(expected) - set(where)):
            problems.append(f"{facts.tool} {trigger}: never runs `{command}`")
        for command, node in expected.items():
            if command not in where:
                continue
            job, index = where[command]
            before = upstream(facts, job, trigger)
            for dep in present_needs(model, node, dict.fromkeys(planned, "")):
                dep_command = task_command(model, dep)
                if dep_command not in where:
                    continue
                dep_job, dep_index = where[dep_command]
                ordered = dep_job.id in before or (dep_job.id == job.id and dep_index < index)
                if not ordered:
                    problems.append(
                        f"{facts.tool} {trigger}: `{command}` ({job.id}) "
                        f"can start before `{dep_command}` ({dep_job.id})"
                    )
    return problems


@dataclass(frozen=True)
class Budget:
    """Line budget: the anchor's size for this tool (None: no generated anchor to compare with)."""

    anchor: str
    lines: int | None


def line_count(facts: AdapterFacts) -> int:
    return sum(len(text.splitlines()) for text in facts.files.values())


def properties(plan: Plan, facts: AdapterFacts, budget: Budget) -> list[str]:  # noqa: PLR0912, PLR0915 - one check per line of the list
    """Problems with the "better than the anchors" list (empty: every property holds)."""
    model = plan.model
    problems: list[str] = []
    tool = facts.tool
    for path, text in facts.files.items():
        if GENERATOR not in "\n".join(text.splitlines()[:3]) or "do not edit" not in "\n".join(text.splitlines()[:3]):
            problems.append(f"{tool} {path}: no 'generated - do not edit' header in its first lines")
        for pattern, what in FORBIDDEN_REFS:
            match = pattern.search(text)
            if match:
                problems.append(f"{tool} {path}: {what}: '{match.group(0)}'")
    if budget.lines is not None and line_count(facts) >= budget.lines:
        problems.append(f"{tool}: {line_count(facts)} lines, not below the anchor's {budget.lines} ({budget.anchor})")
    if facts.path_filters is not None and facts.main_file not in facts.path_filters:
        problems.append(f"{tool}: the path filter {facts.path_filters} leaves out the adapter file {facts.main_file}")
    deploy_envs = {j.env for j in plan.jobs if j.kind == "deploy"}
    approval_envs = {j.env for j in plan.jobs if j.kind == "approval"}
    seen_envs: set[str] = set()
    for job in facts.jobs:
        if job.timeout is None:
            problems.append(f"{tool} {job.id}: no timeout")
        if "pr" in job.triggers:  # only checks keep caches (see deploy_path for the jobs after them)
            if not job.caches:
                problems.append(f"{tool} {job.id}: no lock-file-keyed cache")
            if not job.step_cache and any(_cacheable(model, c) for c in job.commands):
                problems.append(f"{tool} {job.id}: its step cache (.cicd/cache) is not persisted for the next run")
        if not job.reports:
            problems.append(f"{tool} {job.id}: its test report does not reach the tool's report UI")
        if not job.keeps_run_folder:
            problems.append(f"{tool} {job.id}: the run folder (reports, stack outputs) is not kept as an artifact")
        deploys = [c for c in job.commands if _is_env_command(model, c) and not _is_approval_command(model, c)]
        if not deploys:
            # the approval job reads the environment (its change set) with that environment's credentials
            if job.credentials and not any(_is_approval_command(model, c) for c in job.commands):
                problems.append(f"{tool} {job.id}: gets AWS credentials but deploys nothing")
            continue
        if "pr" in job.triggers:
            problems.append(f"{tool} {job.id}: a deploy job runs on pull requests")
        if not job.guard:
            problems.append(f"{tool} {job.id}: no branch guard inside the deploy job")
        if job.credentials is None:
            problems.append(f"{tool} {job.id}: no federated credentials")
        for name in job.session_names:
            if not re.match(SESSION_NAME_RE, _sample(name)):
                problems.append(f"{tool} {job.id}: session name '{name}' is not valid for STS")
        if SYNTH_IN_DEPLOY.search(job.script) or any(c.split()[0] in ("synth", "package") for c in job.commands):
            problems.append(f"{tool} {job.id}: a deploy job synthesizes or packages (build once)")
        if not job.downloads:
            problems.append(f"{tool} {job.id}: does not take the packaged artifact")
        if not job.lock:
            problems.append(f"{tool} {job.id}: no native lock (one deploy at a time per environment)")
        if not job.env:
            problems.append(f"{tool} {job.id}: no native environment")
        else:
            seen_envs.add(job.env)
        env_of = _env_of(model, deploys)
        if env_of in approval_envs and not job.gate:
            problems.append(f"{tool} {job.id}: {env_of} needs an approval, but no manual gate holds this job")
    missing = sorted(e for e in deploy_envs if e and not any(e in s for s in seen_envs))
    if missing:
        problems.append(f"{tool}: no native environment for {', '.join(missing)}")
    return problems


SHARED_ON_MAIN_ACCEPTED: Final[dict[str, str]] = {
    "bitbucket": "main's check steps reuse the pull-request steps' anchors; an override of their caches (a YAML merge "
    "key, which Bitbucket documents) is not read by bb-run, the local runner the tests run this file with. The "
    "checks on main hold no credentials and trust no step-cache entry; builds and environment steps restore nothing."
}
"""Tools whose checks on main still restore dependency caches another branch can write, and why (docs/security.md
lists the same limit)."""


def deploy_path(plan: Plan, facts: AdapterFacts) -> list[str]:
    """Problems on the way to an environment (empty: none), read from the rendered files:

    * a build, approval or environment job restores no cache (any cache a branch could have written) and installs
      from the hash-locked files; on ``main`` a check trusts only a step cache ``main`` alone writes, or verifies it;
    * with the approval switch on, the gate names who may release it (people, groups, or the setting the header
      says to configure);
    * only environment and approval jobs get AWS credentials: an environment job those of its own environment, the
      approval job those of ``<env>-change-set`` (the read-only role), never the environment's deploy role."""
    model = plan.model
    tool = facts.tool
    problems: list[str] = []
    approval_envs = {j.env for j in plan.jobs if j.kind == "approval"}
    for job in facts.jobs:
        if "pr" not in job.triggers:  # a build, approval or environment job
            if job.restores:
                problems.append(
                    f"{tool} {job.id}: a build/approval/deploy job restores caches a branch can write: "
                    f"{', '.join(job.restores)}"
                )
            if not job.locked:
                problems.append(f"{tool} {job.id}: does not install from the hash-locked requirements.lock")
        elif "main" in job.triggers and job.step_cache and not job.trusted_cache:
            problems.append(f"{tool} {job.id}: on main it trusts a step cache another branch can write")
        if "main" in job.triggers and job.shared_on_main and tool not in SHARED_ON_MAIN_ACCEPTED:
            problems.append(
                f"{tool} {job.id}: on main it restores dependency caches another branch can write: "
                f"{', '.join(job.shared_on_main)}"
            )
        env_commands = [c for c in job.commands if _is_env_command(model, c)]
        if (job.credentials or job.credential_env is not None) and not env_commands:
            problems.append(f"{tool} {job.id}: gets AWS credentials but runs in no environment")
        if not env_commands:
            continue
        env_of = _env_of(model, env_commands)
        # The approval job reads its environment only through the read-only <env>-change-set identity.
        approval = _is_approval_command(model, env_commands[0])
        expected = f"{env_of}{CHANGE_SET_SUFFIX}" if approval else env_of
        if job.credentials and job.credential_env != expected:
            whose = "the read-only change-set identity" if approval else "its environment"
            problems.append(f"{tool} {job.id}: its credentials name {job.credential_env}, not {whose} {expected}")
        if env_of in approval_envs and not _is_approval_command(model, env_commands[0]) and not job.approvers:
            problems.append(f"{tool} {job.id}: the gate before {env_of} names no approvers")
    return problems


def _sample(name: str) -> str:
    """A session-name template with its variables replaced by typical values."""
    return re.sub(r"\$\{\{[^}]*\}\}|\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_]\w*|<<[^>]*>>|#\{[^}]*\}", "12345", name)


def _is_env_command(model: Model, command: str) -> bool:
    step = _step_of(model, command)
    return step is not None and step.per_env


def _cacheable(model: Model, command: str) -> bool:
    step = _step_of(model, command)
    return step is not None and step.cacheable


def _is_approval_command(model: Model, command: str) -> bool:
    step = _step_of(model, command)
    return step is not None and is_approval(step)


def _step_of(model: Model, command: str) -> pipeline.Step | None:
    for node in model.nodes():
        if task_command(model, node) == command:
            return model.step(node.step)
    return None


def _env_of(model: Model, commands: list[str]) -> str | None:
    for node in model.nodes():
        if task_command(model, node) in commands and node.env:
            return node.env
    return None


def as_list(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def text_of(value: object) -> str:
    """Every string inside ``value`` (a parsed YAML node), joined by newlines."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "\n".join(text_of(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(text_of(v) for v in value)
    return ""
