"""The job plan: the pipeline model cut into CI jobs, the one intermediate form every renderer reads.

The model (:mod:`cicd.pipeline`) knows steps, environments, needs and triggers; a CI tool knows jobs. The plan maps
one to the other, the same way for every tool, so the adapters differ only in syntax:

* **checks** - every step that runs on pull requests is its own job (they fan out in parallel on the tool's
  runners). A check that needs exactly one other check and nothing else joins that check's job (``synth`` then
  ``iac-scan`` share a job, so the scan reads the assembly synthesized in the same workspace), and a check naming
  another in ``ci_job`` runs in that one's job (``api-contract``, seconds long, after ``lint``);
* **build** - steps that run only on ``main`` and in no environment (``flutter-build``, ``package``). They build
  once and hand ``.cicd/artifact/`` to later jobs through the tool's artifact mechanism (``flutter-build`` hands on
  ``.cicd/artifact/flutter/``, which ``package`` puts into the one artifact);
* **approval** - a per-environment step whose name starts with ``approve`` (``approve:prod``), rendered only when
  the approval switch is on: its job runs the step's task (``change-set``: what prod would get) and the tool's own
  manual gate holds the next environment job. With the switch off there is no approval job at all;
* **hand-offs between checks** - a check that needs checks of other jobs is a job of its own after them
  (``coverage``, after ``unit-test`` and ``component-test``). When a step it needs declares a hand-off
  (:attr:`~cicd.pipeline.Step.handoff`: the tiers' coverage data), that step's job hands ``.cicd/handoff/<step>/``
  on through the tool's artifact mechanism and the later job receives it into the same place;
* **deploy** - every other per-environment step, grouped into one job per environment in model order
  (``deploy:dev``, ``integration-test:dev``, ``publish:dev``). These jobs get short-lived credentials, a branch
  guard, a per-environment lock and the tool's environment feature, and hand ``.cicd/artifact/`` on again: it now
  carries the evidence that the artifact passed this environment, which the next environment's ``promote`` checks.

Every task reads its target from ``CICD_TARGET``, which each adapter sets once (``aws``, see :data:`TARGET_VARS`);
the credential step runs only when it says ``aws``, so the same file runs against the embedded AWS with
``CICD_TARGET=local``. A job's needs are the jobs of its nodes' needs; a cycle between jobs is a
:class:`~cicd.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any, Final, Literal

from cicd import pipeline, reports
from cicd.config import PipelineConfig
from cicd.errors import ConfigError
from cicd.pipeline import Model, Node, Step

Kind = Literal["check", "build", "approval", "deploy"]

ARTIFACT_DIR: Final = ".cicd/artifact"
RUNS_DIR: Final = ".cicd/runs"
HANDOFF_DIR: Final = reports.HANDOFF_DIR.as_posix()
"""Where a step keeps its hand-off (``<step>/``, :data:`cicd.reports.HANDOFF_DIR`) for a later job."""
LATEST: Final = ".cicd/runs/latest"
JUNIT_GLOB: Final = ".cicd/runs/[0-9]*/junit.xml"
"""Every run folder's JUnit report (a job may run several tasks; ``latest`` is a symlink and is left out)."""
SARIF_DIR: Final = ".cicd/runs/latest/reports"
SUMMARY: Final = ".cicd/runs/latest/summary.md"
STEP_CACHE: Final = ".cicd/cache"
"""The step cache (:mod:`cicd.cache`). Each adapter persists it per job with the tool's own cache, keyed so that a
pull request restores the entries ``main`` saved (and ``main`` never restores a pull request's)."""
CACHE_DIRS: Final = ("~/.cache/uv", STEP_CACHE, ".cicd/tools", "node_modules")
LOCK_FILES: Final = ("requirements.lock", "package-lock.json", "cicd/toolenvs/*.txt")
MAIN_BRANCH: Final = "main"
TARGET_VAR: Final = "CICD_TARGET"
TARGET: Final = "aws"
TARGET_VARS: Final = {TARGET_VAR: TARGET}
"""Set once per adapter, at the pipeline level: every task reads its target from it."""
TIMEOUT_CHECK: Final = 20
TIMEOUT_BUILD: Final = 30
TIMEOUT_DEPLOY: Final = 45
TIMEOUT_APPROVAL: Final = 10
CHANGE_SET_SUFFIX: Final = "-change-set"
"""The approval job's identity is ``<env>-change-set``: the read-only role that shows the change set of ``<env>``."""
APPROVAL_WAIT_MINUTES: Final = 1440
"""How long a manual gate waits before the run gives up (one day)."""


def is_approval(step: Step) -> bool:
    """Approval steps are rendered as the tool's own manual gate (after running their task)."""
    return step.per_env and (step.name.startswith("approve") or step.stage in ("approve", "approval"))


def is_flutter(step: Step) -> bool:
    return step.stage == "flutter" or step.name.startswith("flutter")


@dataclass(frozen=True)
class Job:
    """One CI job of the plan."""

    id: str
    kind: Kind
    nodes: tuple[Node, ...]
    commands: tuple[str, ...]
    """The task commands, in order (``lint``, ``deploy --env dev --target aws``): each runs as ``uv run inv ...``."""
    needs: tuple[str, ...]
    env: str | None
    triggers: frozenset[str]
    stage: str
    flutter: bool
    inputs: tuple[str, ...]
    docs: tuple[str, ...]
    downloads: bool = False
    """True when a build job upstream produced ``.cicd/artifact/`` that this job needs."""
    gated: bool = False
    """True for the environment job that the manual gate (after the approval job) holds."""
    cached: bool = False
    """True when a step of this job can be served from the step cache (so the job persists :data:`STEP_CACHE`)."""
    handoff: tuple[str, ...] = ()
    """The steps of this job whose hand-off (``.cicd/handoff/<step>/``) a later job takes: the job hands those
    folders on as :attr:`handoff_name`."""
    takes: tuple[str, ...] = ()
    """The jobs whose hand-off this job receives into ``.cicd/handoff/``, before its commands run."""

    @property
    def on_pr(self) -> bool:
        return "pr" in self.triggers

    @property
    def main_only(self) -> bool:
        return self.triggers == frozenset({"main"})

    @property
    def uploads(self) -> bool:
        """Builds hand on what they built; environment jobs hand the artifact on with their evidence."""
        return self.kind in ("build", "deploy")

    @property
    def credentials(self) -> bool:
        """Environment jobs, and the approval job (it diffs against the environment), get cloud credentials;
        checks and builds never do."""
        return self.kind in ("deploy", "approval")

    @property
    def identity(self) -> str:
        """Whose AWS credentials the job uses: its environment's (an environment job), or ``<env>-change-set``, the
        read-only identity of the approval job (each tool's environment, audience, context, connection or
        credentials of that name hold the change-set role of ``infra/ci``)."""
        if self.env is None or not self.credentials:
            raise ConfigError(f"pipeline model: {self.id} gets no AWS credentials")
        return f"{self.env}{CHANGE_SET_SUFFIX}" if self.kind == "approval" else self.env

    @property
    def artifact_name(self) -> str:
        """The name under which this job hands on ``.cicd/artifact/`` (tools that name artifacts)."""
        return f"artifact-{self.id}"

    @property
    def handoff_name(self) -> str:
        """The name under which this job hands on its steps' ``.cicd/handoff/`` folders."""
        return f"handoff-{self.id}"

    @property
    def handoff_paths(self) -> tuple[str, ...]:
        """The folders this job hands on, one per step (two jobs never hand on the same path)."""
        return tuple(f"{HANDOFF_DIR}/{step}" for step in self.handoff)

    @property
    def title(self) -> str:
        return ", ".join(c.split(" --")[0] for c in self.commands) if len(self.commands) > 1 else self.commands[0]

    @property
    def timeout(self) -> int:
        return {"check": TIMEOUT_CHECK, "build": TIMEOUT_BUILD, "deploy": TIMEOUT_DEPLOY}.get(
            self.kind, TIMEOUT_APPROVAL
        )

    def inv(self) -> tuple[str, ...]:
        return tuple(f"uv run inv {c}" for c in self.commands)


@dataclass(frozen=True)
class Plan:
    model: Model
    config: PipelineConfig
    jobs: tuple[Job, ...]
    _by_id: dict[str, Job] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {j.id: j for j in self.jobs})

    def job(self, job_id: str) -> Job:
        return self._by_id[job_id]

    def for_trigger(self, trigger: str) -> tuple[Job, ...]:
        return tuple(j for j in self.jobs if trigger in j.triggers)

    @property
    def checks(self) -> tuple[Job, ...]:
        return tuple(j for j in self.jobs if j.kind == "check")

    @property
    def first_checks(self) -> tuple[Job, ...]:
        """The checks that need no other job (they fan out together); the others run after what they need."""
        return tuple(j for j in self.checks if not j.needs)

    @property
    def environments(self) -> tuple[str, ...]:
        return tuple(e for e in self.model.environments if any(j.env == e and j.kind == "deploy" for j in self.jobs))

    def env_job(self, env: str) -> Job:
        return next(j for j in self.jobs if j.env == env and j.kind == "deploy")

    def approval_for(self, job: Job) -> Job | None:
        """The approval job whose gate holds ``job`` (an environment job), if any."""
        return next((self.job(n) for n in job.needs if self.job(n).kind == "approval"), None)

    def handed_from(self, job: Job) -> Job | None:
        """The job whose ``.cicd/artifact/`` ``job`` takes: the last job upstream that hands it on (the flutter build
        for ``package``, the package for dev, the dev job's artifact with its evidence for preprod, ...)."""
        uploaders = [self.job(j) for j in self.upstream(job) if self.job(j).uploads and "main" in self.job(j).triggers]
        last = [u for u in uploaders if not any(u.id in self.upstream(other) for other in uploaders)]
        position = {j.id: i for i, j in enumerate(self.jobs)}
        return max(last, key=lambda u: position[u.id]) if last else None  # the one the model builds last

    def levels(self, jobs: Sequence[Job]) -> list[list[Job]]:
        """``jobs`` grouped by dependency level (a stage each, for tools that run stages in order), in plan order
        within a level."""
        ids = {j.id for j in jobs}
        level: dict[str, int] = {}
        for job in self.order(jobs):
            level[job.id] = 1 + max((level[n] for n in job.needs if n in ids), default=-1)
        grouped: list[list[Job]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for job in self.order(jobs):
            grouped[level[job.id]].append(job)
        return grouped

    def upstream(self, job: Job) -> set[str]:
        seen: set[str] = set()
        todo = list(job.needs)
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.job(current).needs)
        return seen

    def region(self, env: str) -> str:
        for e in self.config.environments:
            if e.name == env and e.region:
                return e.region
        return "eu-west-1"

    def inputs(self, trigger: str) -> tuple[str, ...]:
        """Every file glob the jobs of ``trigger`` read (for the tools' path filters), sorted, de-duplicated."""
        found: set[str] = set()
        for job in self.for_trigger(trigger):
            found.update(job.inputs)
        return tuple(sorted(found))

    def order(self, jobs: Sequence[Job]) -> list[Job]:
        """Jobs in a stable dependency order."""
        wanted = {j.id for j in jobs}
        sorter = TopologicalSorter({j.id: [n for n in j.needs if n in wanted] for j in jobs})
        position = {j.id: i for i, j in enumerate(self.jobs)}
        sorter.prepare()
        out: list[Job] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.__getitem__)
            out.extend(self.job(r) for r in ready)
            sorter.done(*ready)
        return out


def task_command(model: Model, node: Node) -> str:
    """The ``inv`` task of ``node``; its target comes from ``CICD_TARGET``, which the adapter sets."""
    return model.step(node.step).task_command(node.env)


def _kind(model: Model, node: Node) -> Kind:
    step = model.step(node.step)
    if node.env is not None:
        return "approval" if is_approval(step) else "deploy"
    return "check" if "pr" in step.triggers else "build"


def build_plan(model: Model, config: PipelineConfig | None = None) -> Plan:
    """Cut ``model`` into jobs (see the module docstring). Raises :class:`ConfigError` on a job-level cycle."""
    config = config or PipelineConfig()
    main = set(pipeline.select(model, "main")) if any("main" in s.triggers for s in model.steps) else set()
    pr = set(pipeline.select(model, "pr")) if any("pr" in s.triggers for s in model.steps) else set()
    nodes = model.ordered(_selected(model, config, main | pr))
    group_of: dict[Node, str] = {}
    members: dict[str, list[Node]] = {}

    def add(node: Node, group: str) -> None:
        group_of[node] = group
        members.setdefault(group, []).append(node)

    for node in nodes:
        add(node, _group(model, node, group_of))

    jobs: list[Job] = []
    for group, group_nodes in members.items():
        first = group_nodes[0]
        steps = [model.step(n.step) for n in group_nodes]
        needs: list[str] = []
        for node in group_nodes:
            for dep in present_needs(model, node, group_of):
                other = group_of[dep]
                if other != group and other not in needs:
                    needs.append(other)
        triggers = frozenset.intersection(*(s.triggers for s in steps))
        inputs = tuple(dict.fromkeys(g for s in steps for g in s.inputs))
        jobs.append(
            Job(
                id=group,
                kind=_kind(model, first),
                nodes=tuple(group_nodes),
                commands=tuple(task_command(model, n) for n in group_nodes),
                needs=tuple(needs),
                env=first.env,
                triggers=triggers,
                stage=steps[0].stage,
                flutter=any(is_flutter(s) for s in steps),
                inputs=inputs,
                docs=tuple(s.doc for s in steps),
                cached=any(s.cacheable for s in steps),
            )
        )
    _check_acyclic(jobs)
    jobs = _with_handoffs(model, jobs, group_of)
    by_id = {j.id: j for j in jobs}
    builds = {j.id for j in jobs if j.kind == "build"}
    final: list[Job] = []
    for job in jobs:
        up = _upstream(by_id, job)
        gated = any(by_id[n].kind == "approval" for n in job.needs) and job.kind == "deploy"
        final.append(_with(job, downloads=bool(up & builds), gated=gated))
    return Plan(model, config, tuple(final))


def _with_handoffs(model: Model, jobs: list[Job], group_of: dict[Node, str]) -> list[Job]:
    """Who hands what to whom: a job takes the hand-off of each other job holding a step one of its steps reads."""
    takes: dict[str, list[str]] = {}
    handed: dict[str, list[str]] = {}
    for job in jobs:
        for node in job.nodes:
            for dep in present_needs(model, node, group_of):
                giver = group_of[dep]
                if giver != job.id and dep.step in model.step(node.step).reads:
                    if giver not in takes.setdefault(job.id, []):
                        takes[job.id].append(giver)
                    if dep.step not in handed.setdefault(giver, []):
                        handed[giver].append(dep.step)
    return [
        _with(j, handoff=tuple(handed.get(j.id, ())), takes=tuple(takes.get(j.id, ())))
        if j.id in takes or j.id in handed
        else j
        for j in jobs
    ]


def _selected(model: Model, config: PipelineConfig, nodes: set[Node]) -> set[Node]:
    """``nodes`` less the approval step when the switch is off (no approval job; the step passes by itself)."""
    if config.approval_before_prod:
        return nodes
    return {n for n in nodes if not (n.env is not None and is_approval(model.step(n.step)))}


def present_needs(model: Model, node: Node, present: dict[Node, str]) -> tuple[Node, ...]:
    """``node``'s needs, with a need left out of the plan (the approval, switch off) replaced by its own needs."""
    found: list[Node] = []
    for dep in model.needs_of(node):
        for real in (dep,) if dep in present else present_needs(model, dep, present):
            if real not in found:
                found.append(real)
    return tuple(found)


def _with(job: Job, **changes: object) -> Job:
    values: dict[str, Any] = {f: getattr(job, f) for f in job.__dataclass_fields__}
    values.update(changes)
    return Job(**values)


def _upstream(by_id: dict[str, Job], job: Job) -> set[str]:
    seen: set[str] = set()
    todo = list(job.needs)
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(by_id[current].needs)
    return seen


def _group(model: Model, node: Node, group_of: dict[Node, str]) -> str:
    """The job ``node`` runs in (see the module docstring); nodes come in model order, so a host is placed first."""
    kind = _kind(model, node)
    step = model.step(node.step)
    if kind == "deploy":
        if node.env is None:  # deploy nodes are per-environment by definition
            raise ConfigError("pipeline model: deploy nodes are per-environment by definition, but node.env is missing")
        return node.env
    if kind == "approval":
        return f"{node.step}-{node.env}"
    if kind == "check" and step.ci_job is not None:
        return group_of[Node(step.ci_job)]
    deps = present_needs(model, node, group_of)
    if (
        kind == "check"
        and len(deps) == 1
        and _kind(model, deps[0]) == "check"
        and model.step(deps[0].step).triggers == step.triggers
    ):
        return group_of[deps[0]]
    return node.step


def _check_acyclic(jobs: Iterable[Job]) -> None:
    try:
        tuple(TopologicalSorter({j.id: j.needs for j in jobs}).static_order())
    except CycleError as err:
        raise ConfigError(
            f"pipeline model: the CI jobs form a cycle ({' -> '.join(map(str, err.args[1]))})",
            hint="a per-environment step and a step without environments need each other",
        ) from None
