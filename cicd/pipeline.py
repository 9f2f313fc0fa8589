"""The pipeline model: the single source of truth for tasks, the runner, the CI adapters and the docs.

A :class:`Step` is data: its name, the function that runs it, the files it reads, what it needs first, which
triggers include it, which environments it runs in, and whether (and when) it may be skipped. A step that runs in
environments expands to one :class:`Node` per environment (``deploy:dev``). ``pr`` and ``main`` are *selections* of
the one model (:func:`select`), never hand-written lists.

Dependencies are written as step names and resolved per node:

- ``"unit-test"``: that step (in the same environment when it is per-environment and runs there);
- ``"integration-test:dev"``: that step in an explicit environment;
- ``"integration-test:<previous>"``: that step in the environment before this node's one in promotion order;
- ``"deploy|promote"``: the first of these steps that runs in this node's environment (dev is deployed, later
  environments are promoted to).

This module is imported by ``tasks.py`` at start-up: it must stay light (standard library only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter

from cicd.errors import ConfigError, UsageError

ENVIRONMENTS: tuple[str, ...] = ("dev", "preprod", "prod")
TRIGGERS: tuple[str, ...] = ("pr", "main")
PREVIOUS = "<previous>"

PY_SOURCES = (
    "cicd/**/*.py",
    "functions/**/*.py",
    "infra/**/*.py",
    "tasks.py",
    "tests/**/*.py",
    "benchmarks/**/*.py",
)
PROJECT_CONFIG = ("pyproject.toml", "requirements.lock")


@dataclass(frozen=True)
class Step:
    """One step of the pipeline.

    ``run`` is ``"module:function"``, imported only when the step runs (keeps ``inv --list`` fast). ``task`` is the
    invoke task that runs the step alone (``{env}`` is replaced per environment). ``may_skip`` says when the step may
    honestly report *skipped* (a skip from a step without it is a failure). ``stage`` groups steps for the CI adapters
    and the graph.

    The cache key (``cicd/cache.py``) is built from ``inputs`` (file globs), ``tools`` (exact versions),
    ``env_vars`` (values) and ``key_extras`` (``git-head``: the commit, for history scans; ``utc-date``: results
    valid for a day, for advisories that change without our files changing; ``assembly``: what the scanners read
    in the cloud assembly the step scans, the run's or the synth step's cached one, asset hashes masked, or the synth
    step's key when there is neither). ``outputs`` are paths inside the run folder restored on a cache hit.
    ``cacheable`` is False for deploys and post-deploy tests.

    ``envs`` are the environments the step *can* run in (its task accepts them); ``pipeline_envs`` narrows the ones
    the trigger selections include (``deploy`` runs in any environment by hand, but the pipeline deploys only dev
    and *promotes* to the others). A step with no triggers is a manual task (``rollback``).
    """

    name: str
    run: str
    doc: str
    stage: str
    inputs: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    triggers: frozenset[str] = frozenset(TRIGGERS)
    envs: tuple[str, ...] = ()
    may_skip: str | None = None
    cacheable: bool = True
    task: str | None = None
    tools: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    env_vars: tuple[str, ...] = ()
    key_extras: tuple[str, ...] = ()
    pipeline_envs: tuple[str, ...] | None = None
    ci_job: str | None = None
    """For a check: the earlier check whose CI job also runs it (a check of seconds is not worth a runner of its
    own). Locally it stays its own step."""
    handoff: tuple[str, ...] = ()
    """Outputs (files of the run folder) that a step in another CI job reads: after each pass, served from the cache
    or not, the runner copies them to ``.cicd/handoff/<step>/``, the folder the CI adapters hand on to the jobs that
    need this one (the tiers' coverage data, which the ``coverage`` job combines)."""
    reads: tuple[str, ...] = ()
    """Steps of ``needs`` whose hand-off this step reads (its CI job receives their jobs' hand-offs)."""

    @property
    def per_env(self) -> bool:
        return bool(self.envs)

    def task_command(self, env: str | None) -> str:
        template = self.task or (f"{self.name} --env {{env}}" if self.per_env else self.name)
        return template.format(env=env) if env else template


@dataclass(frozen=True, order=True)
class Node:
    """One runnable instance of a step: the step itself, or the step in one environment."""

    step: str
    env: str | None = None

    @property
    def id(self) -> str:
        return self.step if self.env is None else f"{self.step}:{self.env}"

    def __str__(self) -> str:
        return self.id


def parse_node_id(text: str) -> Node:
    name, _, env = text.partition(":")
    return Node(name, env or None)


@dataclass(frozen=True)
class Model:
    steps: tuple[Step, ...]
    environments: tuple[str, ...] = ENVIRONMENTS
    _by_name: dict[str, Step] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Step] = {}
        for step in self.steps:
            if step.name in by_name:
                raise ConfigError(f"pipeline model: step '{step.name}' is defined twice")
            unknown_triggers = step.triggers - set(TRIGGERS)
            if unknown_triggers:
                raise ConfigError(f"pipeline model: step '{step.name}' has unknown trigger {sorted(unknown_triggers)}")
            bad_envs = [e for e in step.envs if e not in self.environments]
            if bad_envs:
                raise ConfigError(f"pipeline model: step '{step.name}' runs in unknown environment {bad_envs}")
            host = by_name.get(step.ci_job) if step.ci_job else None
            if step.ci_job and (host is None or host.per_env or host.triggers != step.triggers):
                raise ConfigError(
                    f"pipeline model: step '{step.name}' shares the CI job of '{step.ci_job}', which must be an "
                    "earlier check with the same triggers"
                )
            loose = [h for h in step.handoff if h not in step.outputs]
            names = [h.rsplit("/", 1)[-1] for h in step.handoff]  # the hand-off folder holds them side by side
            if loose or (step.handoff and step.per_env) or len(set(names)) != len(names):
                raise ConfigError(
                    f"pipeline model: step '{step.name}' hands on {loose or list(step.handoff)}: a hand-off is "
                    "outputs of a step that runs in no environment, each with a name of its own"
                )
            by_name[step.name] = step
        for step in self.steps:
            bad = [r for r in step.reads if r not in step.needs or r not in by_name or not by_name[r].handoff]
            if bad:
                raise ConfigError(
                    f"pipeline model: step '{step.name}' reads the hand-off of {bad}: each must be a step it needs "
                    "that declares a hand-off"
                )
        object.__setattr__(self, "_by_name", by_name)
        self.graph()  # validates dependencies and cycles up front

    def step(self, name: str) -> Step:
        try:
            return self._by_name[name]
        except KeyError:
            raise UsageError(f"unknown step '{name}'", hint=f"choose one of: {', '.join(self._by_name)}") from None

    def nodes(self) -> list[Node]:
        result: list[Node] = []
        for step in self.steps:
            if step.per_env:
                result.extend(Node(step.name, env) for env in step.envs)
            else:
                result.append(Node(step.name))
        return result

    def resolve_need(self, node: Node, need: str) -> Node:
        if "|" in need:
            for alternative in need.split("|"):
                try:
                    found = self.resolve_need(node, alternative)
                except ConfigError:
                    continue
                wanted = self._by_name[found.step].pipeline_envs
                if wanted is None or found.env in wanted:  # prefer what the pipeline really runs there
                    return found
            raise ConfigError(f"pipeline model: '{node.id}' needs one of '{need}', but none runs in {node.env}")
        name, _, env_ref = need.partition(":")
        if name not in self._by_name:
            raise ConfigError(f"pipeline model: step '{node.step}' needs unknown step '{name}'")
        target = self._by_name[name]
        if not target.per_env:
            if env_ref:
                raise ConfigError(f"pipeline model: '{node.step}' needs '{need}', but '{name}' has no environments")
            return Node(name)
        if env_ref == PREVIOUS:
            if node.env is None or node.env not in self.environments:
                raise ConfigError(f"pipeline model: '{node.step}' uses {PREVIOUS} but runs in no environment")
            index = self.environments.index(node.env)
            if index == 0:
                raise ConfigError(
                    f"pipeline model: '{node.id}' needs '{need}', but {node.env} is the first environment"
                )
            env: str | None = self.environments[index - 1]
        else:
            env = env_ref or node.env
        if env is None or env not in target.envs:
            raise ConfigError(f"pipeline model: '{node.id}' needs '{name}' in environment {env}, where it does not run")
        return Node(name, env)

    def needs_of(self, node: Node) -> tuple[Node, ...]:
        return tuple(self.resolve_need(node, need) for need in self._by_name[node.step].needs)

    def graph(self) -> dict[Node, tuple[Node, ...]]:
        """Every node with what it needs; raises :class:`ConfigError` on a cycle or an unknown dependency."""
        graph = {node: self.needs_of(node) for node in self.nodes()}
        try:
            tuple(TopologicalSorter(graph).static_order())
        except CycleError as err:
            cycle = " -> ".join(str(n) for n in err.args[1])
            raise ConfigError(f"pipeline model: dependency cycle {cycle}") from None
        return graph

    def ordered(self, nodes: Iterable[Node]) -> list[Node]:
        """``nodes`` in a stable dependency order (model order among independent nodes)."""
        wanted = set(nodes)
        position = {node: i for i, node in enumerate(self.nodes())}
        graph = {n: tuple(d for d in self.needs_of(n) if d in wanted) for n in wanted}
        sorter = TopologicalSorter(graph)
        sorter.prepare()
        result: list[Node] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.__getitem__)
            result.extend(ready)
            sorter.done(*ready)
        return result

    def descendants(self, roots: Iterable[Node]) -> set[Node]:
        graph = self.graph()
        found = set(roots)
        changed = True
        while changed:
            changed = False
            for node, deps in graph.items():
                if node not in found and any(d in found for d in deps):
                    found.add(node)
                    changed = True
        return found

    def find(self, text: str) -> list[Node]:
        """Nodes named by ``text``: ``lint``, ``deploy`` (every environment) or ``deploy:dev``."""
        node = parse_node_id(text)
        step = self.step(node.step)
        if node.env is None:
            return [Node(step.name, e) for e in step.envs] if step.per_env else [Node(step.name)]
        if node.env not in step.envs:
            raise UsageError(
                f"step '{step.name}' does not run in environment '{node.env}'",
                hint=f"it runs in: {', '.join(step.envs) or 'no environment'}",
            )
        return [node]


def select(model: Model, trigger: str, *, start: str | None = None) -> list[Node]:
    """The nodes a trigger runs, in dependency order; with ``start``, that step and everything after it needs it."""
    if trigger not in TRIGGERS:
        raise UsageError(f"unknown trigger '{trigger}'", hint=f"choose one of: {', '.join(TRIGGERS)}")
    chosen = [n for n in model.nodes() if _in_selection(model.step(n.step), n, trigger)]
    chosen_set = set(chosen)
    for node in chosen:
        for dep in model.needs_of(node):
            if dep not in chosen_set:
                raise ConfigError(f"pipeline model: '{node.id}' runs on {trigger} but needs '{dep.id}', which does not")
    if start is not None:
        roots = [n for n in model.find(start) if n in chosen_set]
        if not roots:
            raise UsageError(f"step '{start}' is not part of the {trigger} selection", hint="see `inv graph`")
        keep = model.descendants(roots)
        chosen = [n for n in chosen if n in keep]
    return model.ordered(chosen)


def _in_selection(step: Step, node: Node, trigger: str) -> bool:
    if trigger not in step.triggers:
        return False
    return step.pipeline_envs is None or node.env in step.pipeline_envs


def subset(model: Model, names: Sequence[str]) -> list[Node]:
    """Nodes for an explicit list of step names (``inv lint``, ``inv rerun``), in dependency order."""
    nodes: list[Node] = []
    for name in names:
        nodes.extend(n for n in model.find(name) if n not in nodes)
    return model.ordered(nodes)


# --------------------------------------------------------------------------------------------------------------------
# The project's pipeline
# --------------------------------------------------------------------------------------------------------------------

PR_AND_MAIN = frozenset(TRIGGERS)

PY_CODE = ("cicd/**/*.py", "functions/**/*.py", "infra/**/*.py", "tasks.py")
TEST_INPUTS = (
    "cicd/**/*",
    "functions/**/*",
    "infra/**/*",
    "tests/**/*",
    "semgrep/**/*",
    "flutter/**/*",
    "tasks.py",
    "cdk.json",
    "package.json",
    "package-lock.json",
    ".gitleaks.toml",
    *PROJECT_CONFIG,
)

STEPS: tuple[Step, ...] = (
    Step(
        "lint",
        "cicd.steps.checks:lint",
        "ruff check and ruff format --check",
        stage="checks",
        inputs=(*PY_SOURCES, "pyproject.toml"),
        tools=("ruff",),
        outputs=("reports/ruff.sarif",),
    ),
    Step(
        "typecheck",
        "cicd.steps.checks:typecheck",
        "mypy (strict) over cicd, functions, infra, tasks.py, benchmarks, tests",
        stage="checks",
        inputs=(*PY_SOURCES, *PROJECT_CONFIG),
        tools=("mypy",),
        outputs=("reports/mypy-junit.xml",),
    ),
    Step(
        "unit-test",
        "cicd.steps.checks:unit_test",
        "pytest: the in-process tests of every layer, with coverage",
        stage="checks",
        inputs=TEST_INPUTS,
        tools=("pytest", "coverage"),
        outputs=("reports/unit-junit.xml", "reports/coverage-unit.json", "reports/coverage-unit.key"),
        handoff=("reports/coverage-unit.json", "reports/coverage-unit.key"),
    ),
    Step(
        "component-test",
        "cicd.steps.checks:component_test",
        "pytest: the fast tests that run the project's tools, servers and CLI or check its own files, with coverage",
        stage="checks",
        inputs=TEST_INPUTS,
        tools=("pytest", "coverage"),
        outputs=("reports/component-junit.xml", "reports/coverage-component.json", "reports/coverage-component.key"),
        handoff=("reports/coverage-component.json", "reports/coverage-component.key"),
    ),
    Step(
        "coverage",
        "cicd.steps.checks:coverage_gate",
        "the 85% coverage gate on cicd/ and functions/, over unit-test and component-test together",
        stage="checks",
        inputs=TEST_INPUTS,
        needs=("unit-test", "component-test"),
        reads=("unit-test", "component-test"),
        tools=("pytest", "coverage"),
        outputs=("reports/coverage.xml",),
    ),
    Step(
        "api-contract",
        "cicd.steps.checks:api_contract",
        "openapi.yaml is valid OpenAPI 3.1; what is rendered from it (README table, Flutter fixture) is current",
        stage="checks",
        inputs=(
            "openapi.yaml",
            "README.md",
            "flutter/test/fixtures/api_examples.json",
            "cicd/contract.py",
            *PROJECT_CONFIG,
        ),
        tools=("openapi-spec-validator",),
        ci_job="lint",
    ),
    Step(
        "sast",
        "cicd.steps.security:sast",
        "bandit and semgrep (rules kept in semgrep/) with SARIF out",
        stage="security",
        inputs=(*PY_CODE, "semgrep/python/**", "pyproject.toml"),
        tools=("bandit", "semgrep"),
        outputs=("reports/bandit.sarif", "reports/semgrep.sarif"),
    ),
    Step(
        "secrets-scan",
        "cicd.steps.security:secrets_scan",
        "gitleaks over the git history and the working tree",
        stage="security",
        inputs=("**",),
        tools=("gitleaks",),
        outputs=("reports/gitleaks-history.sarif", "reports/gitleaks-tree.sarif"),
        key_extras=("git-head",),
    ),
    Step(
        "sca",
        "cicd.steps.security:sca",
        "pip-audit --strict on the locked dependencies",
        stage="security",
        inputs=PROJECT_CONFIG,
        may_skip="the vulnerability advisory service cannot be reached",
        tools=("pip-audit",),
        outputs=("reports/pip-audit.json", "reports/sca-requirements.txt"),
        key_extras=("utc-date",),
    ),
    Step(
        "sbom",
        "cicd.steps.security:sbom",
        "CycloneDX JSON SBOM of the locked dependencies",
        stage="security",
        inputs=PROJECT_CONFIG,
        tools=("cyclonedx-py",),
        outputs=("sbom.cdx.json", "reports/sbom-requirements.txt"),
    ),
)

INFRA_INPUTS = ("infra/**", "functions/**", "cicd/config.py", "cicd/versioning.py", "cdk.json", "pyproject.toml")

IAC_STEPS: tuple[Step, ...] = (
    Step(
        "synth",
        "cicd.steps.iac:synth",
        "CDK synth of dev, preprod and prod into one cloud assembly in the run folder",
        stage="iac",
        inputs=INFRA_INPUTS,
        tools=("aws-cdk-lib", "cdk-nag"),
        outputs=("cdk.out",),
    ),
    Step(
        "iac-scan",
        "cicd.steps.iac:iac_scan",
        "cdk-nag AwsSolutions and checkov on the cloud assembly; every waiver has a written reason",
        stage="iac",
        # What it scans is the assembly (the waivers too are in it): keyed on what the scanners read there, so a
        # change that only changes the function's code (its asset hash) does not rerun it.
        key_extras=("assembly",),
        needs=("synth",),
        tools=("aws-cdk-lib", "cdk-nag", "checkov"),
        outputs=(
            "reports/cdk-nag.sarif",
            "reports/cdk-nag.junit.xml",
            "reports/checkov.sarif",
            "reports/checkov.junit.xml",
        ),
    ),
)

FLUTTER_STEPS: tuple[Step, ...] = (
    Step(
        "flutter-check",
        "cicd.steps.flutter:flutter_check",
        "Dart syntax (tree-sitter), pubspec schema, semgrep Dart rules; flutter analyze/test when the SDK is present",
        stage="flutter",
        inputs=("flutter/**", "semgrep/dart/**", "cicd/schemas/pubspec.schema.json"),
        tools=("tree-sitter-dart", "semgrep", "flutter"),
        outputs=("reports/semgrep-dart.sarif", "reports/dart-rules.sarif", "reports/flutter-junit.xml"),
        env_vars=("CICD_REQUIRE_FLUTTER",),
    ),
    Step(
        "flutter-build",
        "cicd.steps.flutter:flutter_build",
        "flutter build web and apk, versioned by the pipeline, built once",
        stage="build",
        inputs=("flutter/**", "pyproject.toml"),
        needs=("flutter-check",),
        triggers=frozenset({"main"}),
        may_skip="the Flutter SDK is not on PATH",
        tools=("flutter",),
        cacheable=False,  # it hands its build on in .cicd/artifact/flutter, which a cache hit would not write
    ),
)

ADAPTER_STEPS: tuple[Step, ...] = (
    Step(
        "adapters-check",
        "cicd.adapters.cli:adapters_check",
        "the eight CI adapters match what the model renders, and pass each tool's validators",
        stage="checks",
        inputs=(
            "cicd/**",
            "ci-adapters/**",
            "docs/ci-comparison.md",
            ".pre-commit-config.yaml",
            ".github/dependabot.yml",
            "renovate.json",
            "pyproject.toml",
        ),
        tools=("check-jsonschema", "actionlint", "node-lock"),
        task="adapters.check",
    ),
)

CHECKS = tuple(s.name for s in (*STEPS, *IAC_STEPS, *FLUTTER_STEPS, *ADAPTER_STEPS) if "pr" in s.triggers)
MAIN = frozenset({"main"})

DELIVERY_STEPS: tuple[Step, ...] = (
    Step(
        "package",
        "cicd.steps.deploy:package",
        "build once: the cloud assembly of every environment, the Lambda code and the Flutter builds, digested",
        stage="build",
        needs=(*CHECKS, "flutter-build"),
        triggers=MAIN,
        cacheable=False,
    ),
    Step(
        "deploy",
        "cicd.steps.deploy:deploy",
        "deploy the packaged artifact to one environment (a no-op when it already runs it)",
        stage="deploy",
        needs=("package",),
        triggers=MAIN,
        envs=ENVIRONMENTS,
        pipeline_envs=("dev",),
        cacheable=False,
    ),
    Step(
        "integration-test",
        "cicd.steps.verify:integration_test",
        "integration tests against the deployed API; a failure rolls the environment back",
        stage="verify",
        needs=("promote|deploy",),
        triggers=MAIN,
        envs=ENVIRONMENTS,
        pipeline_envs=("dev", "preprod"),
        cacheable=False,
    ),
    Step(
        "dast",
        "cicd.steps.verify:dast",
        "schemathesis against the deployed API from openapi.yaml (bounded); a failure rolls the environment back",
        stage="verify",
        needs=("integration-test",),
        triggers=MAIN,
        envs=ENVIRONMENTS,
        pipeline_envs=("dev", "preprod"),
        cacheable=False,
    ),
    Step(
        "approve",
        "cicd.steps.deploy:approve",
        "show what production would get (cdk diff) and wait for approval when [tool.cicd] approval is on",
        stage="deploy",
        needs=("dast:<previous>",),
        triggers=MAIN,
        envs=("prod",),
        may_skip="production approval is pending",
        cacheable=False,
        task="change-set --env {env}",
    ),
    Step(
        "promote",
        "cicd.steps.deploy:promote",
        "deploy exactly the artifact that passed the previous environment, verified by digest",
        stage="deploy",
        needs=("approve|dast:<previous>",),
        triggers=MAIN,
        envs=("preprod", "prod"),
        task="promote --to {env}",
        cacheable=False,
    ),
    Step(
        "publish",
        "cicd.steps.deploy:publish",
        "upload the artifact's APK and web build to the environment",
        stage="deploy",
        needs=("integration-test|promote",),
        triggers=MAIN,
        envs=ENVIRONMENTS,
        may_skip="the artifact has no Flutter build",
        cacheable=False,
    ),
    Step(
        "smoke-test",
        "cicd.steps.verify:smoke_test",
        "read-only smoke test of production: /health and /apk/latest answer with the deployed build",
        stage="verify",
        needs=("publish",),
        triggers=MAIN,
        envs=("prod",),
        cacheable=False,
    ),
    Step(
        "rollback",
        "cicd.steps.deploy:rollback",
        "redeploy the last artifact that passed its tests in the environment",
        stage="deploy",
        triggers=frozenset(),
        envs=ENVIRONMENTS,
        cacheable=False,
    ),
)

MODEL = Model((*STEPS, *IAC_STEPS, *FLUTTER_STEPS, *ADAPTER_STEPS, *DELIVERY_STEPS))
