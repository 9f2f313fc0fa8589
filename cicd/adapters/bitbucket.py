"""Bitbucket Pipelines: ``bitbucket-pipelines.yml``.

Bitbucket runs a list of steps and ``parallel`` groups, not a graph: the plan's jobs are laid out by dependency
level (every job of a level runs in parallel after the level before it). Pull requests run the checks; ``main``
runs them again (the same steps, YAML anchors) and then builds and deploys. Named artifacts carry
``.cicd/artifact/``; each environment step has ``deployment:`` (its variables hold ``AWS_ROLE_ARN``),
``oidc: true``, a ``concurrency-group`` and a branch guard; the gate is ``trigger: manual`` on the gated step.
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml

from cicd.adapters import pins
from cicd.adapters.common import Rendered, collect_junit, guard, header, web_identity
from cicd.adapters.facts import AdapterFacts, JobFacts, as_list, inv_calls
from cicd.adapters.plan import ARTIFACT_DIR, MAIN_BRANCH, RUNS_DIR, STEP_CACHE, TIMEOUT_CHECK, Job, Plan
from cicd.adapters.yamltext import Flow, Reuse, dump
from cicd.errors import ConfigError

PATH: Final = "bitbucket-pipelines.yml"
CACHES: Final = ["uv", "cicd-tools", "npm-tools"]
REQUIRE: Final = "export CICD_REQUIRE_FLUTTER=1"
NO_INPUTS: Final = ["pyproject.toml", "requirements.lock"]
"""The key files of a step cache whose job declares no input files (its configuration and tool versions)."""


def step_cache_name(job: Job) -> str:
    """The job's step cache: keyed by the job's input files, so a new key (and a fresh save) follows every change
    to them, and a pull request whose inputs equal main's restores main's entries."""
    return f"steps-{job.id}"


def levels(plan: Plan, jobs: tuple[Job, ...]) -> list[list[Job]]:
    """Jobs grouped by dependency level, in plan order within a level."""
    ids = {j.id for j in jobs}
    level: dict[str, int] = {}
    for job in plan.order(jobs):
        level[job.id] = 1 + max((level[n] for n in job.needs if n in ids), default=-1)
    grouped: list[list[Job]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for job in plan.order(jobs):
        grouped[level[job.id]].append(job)
    return grouped


def _step(plan: Plan, job: Job, reuse: Reuse) -> dict[str, object]:
    step: dict[str, object] = {"name": job.id}
    if job.flutter:
        step["image"] = pins.image("instrumentisto/flutter")
    script: list[str] = []
    if job.kind == "deploy":
        if job.env is None:  # deploy jobs have an environment
            raise ConfigError("pipeline model: deploy jobs have an environment, but job.env is missing")
        step["deployment"] = job.env
        step["oidc"] = True
        step["concurrency-group"] = f"deploy-{job.env}"
        if job.gated:
            step["trigger"] = "manual"
        script += [guard("BITBUCKET_BRANCH")]
        script += web_identity("$BITBUCKET_STEP_OIDC_TOKEN", f"bitbucket-${{BITBUCKET_BUILD_NUMBER}}-{job.env}")
        script += [f"export AWS_REGION={plan.region(job.env)}"]
    if job.timeout != TIMEOUT_CHECK:
        step["max-time"] = job.timeout
    step["caches"] = Flow([*CACHES, step_cache_name(job)]) if job.cached else reuse("caches", CACHES)
    if job.flutter:
        script += [
            "apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null",
            "export PIP_BREAK_SYSTEM_PACKAGES=1",
        ]
        # A check honours the repository variable CICD_REQUIRE_FLUTTER=0 (a runner without the SDK); a build never.
        script += ['export CICD_REQUIRE_FLUTTER="${CICD_REQUIRE_FLUTTER:-1}"' if job.kind == "check" else REQUIRE]
    script += [pins.uv_install(), *job.inv()]
    step["script"] = script
    step["after-script"] = reuse("junit", [collect_junit("test-results")])
    upload: list[object] = [Flow({"name": f"runs-{job.id}", "paths": [f"{RUNS_DIR}/**"], "capture-on": "always"})]
    if job.uploads:
        upload.insert(0, Flow({"name": f"artifact-{job.id}", "paths": [f"{ARTIFACT_DIR}/**"]}))
    builds = [j.id for j in plan.jobs if j.kind == "build" and j.id in plan.upstream(job)]
    download: object = [f"artifact-{b}" for b in builds] if builds else False
    step["artifacts"] = {"download": download, "upload": upload}
    return step


def render(plan: Plan) -> list[Rendered]:
    reuse = Reuse()

    def item(job: Job) -> object:
        if job.on_pr and "main" in job.triggers:
            return {"step": reuse(job.id, job.id) if job.id in reuse.seen else reuse(job.id, _step(plan, job, reuse))}
        return {"step": _step(plan, job, reuse)}

    def sequence(trigger: str) -> list[object]:
        out: list[object] = []
        for group in levels(plan, plan.for_trigger(trigger)):
            out.append({"parallel": [item(j) for j in group]} if len(group) > 1 else item(group[0]))
        return out

    pipelines: dict[str, object] = {}
    pr = sequence("pr")
    if pr:
        pipelines["pull-requests"] = {"**": pr}
    main = sequence("main")
    if main:
        pipelines["branches"] = {MAIN_BRANCH: main}
    doc: dict[str, object] = {
        "image": pins.image("python"),
        "clone": Flow({"depth": "full"}),
        "options": Flow({"max-time": TIMEOUT_CHECK}),
        "definitions": {
            "caches": {
                "uv": Flow({"key": Flow({"files": ["requirements.lock"]}), "path": "~/.cache/uv"}),
                "cicd-tools": Flow(
                    {"key": Flow({"files": ["requirements.lock", "package-lock.json"]}), "path": ".cicd/tools"}
                ),
                "npm-tools": Flow({"key": Flow({"files": ["package-lock.json"]}), "path": "node_modules"}),
                **{
                    step_cache_name(j): Flow({"key": Flow({"files": list(j.inputs) or NO_INPUTS}), "path": STEP_CACHE})
                    for j in plan.order(plan.jobs)
                    if j.cached
                },
            }
        },
        "pipelines": pipelines,
    }
    extra = (
        "Per deployment environment (Repository settings > Deployments): variable AWS_ROLE_ARN (infra/ci); restrict",
        f"deployments to {MAIN_BRANCH}. The gate is the manual step after an approval step.",
    )
    text = dump(doc, header=header("Bitbucket Pipelines", PATH, plan, extra=extra), gap_keys=("pipelines",))
    return [Rendered(PATH, text)]


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read ``bitbucket-pipelines.yml`` back (see :mod:`cicd.adapters.facts`)."""
    doc: dict[str, Any] = yaml.safe_load(files[PATH])
    pipelines = doc.get("pipelines") or {}
    caches = (doc.get("definitions") or {}).get("caches") or {}
    default_time = (doc.get("options") or {}).get("max-time")
    jobs: dict[str, JobFacts] = {}
    for trigger, items in (
        ("pr", (pipelines.get("pull-requests") or {}).get("**", [])),
        ("main", (pipelines.get("branches") or {}).get(MAIN_BRANCH, [])),
    ):
        before: list[str] = []
        for entry in items:
            steps = [s["step"] for s in entry["parallel"]] if "parallel" in entry else [entry["step"]]
            names = [str(s["name"]) for s in steps]
            for step in steps:
                name = str(step["name"])
                if name in jobs:
                    jobs[name].triggers.add(trigger)
                    continue
                script = "\n".join(str(s) for s in as_list(step.get("script")))
                after = "\n".join(str(s) for s in as_list(step.get("after-script")))
                artifacts = step.get("artifacts") or {}
                uploads = [u for u in as_list(artifacts.get("upload")) if isinstance(u, dict)]
                used = [c for c in as_list(step.get("caches")) if isinstance(caches.get(c), dict)]
                jobs[name] = JobFacts(
                    id=name,
                    commands=inv_calls(script.splitlines()),
                    needs=list(before),
                    triggers={trigger},
                    env=step.get("deployment"),
                    lock=step.get("concurrency-group"),
                    guard=f'test "${{BITBUCKET_BRANCH:-}}" = {MAIN_BRANCH}' in script,
                    timeout=step.get("max-time", default_time),
                    credentials="oidc" if step.get("oidc") is True and "BITBUCKET_STEP_OIDC_TOKEN" in script else None,
                    session_names=re.findall(r'AWS_ROLE_SESSION_NAME="([^"]+)"', script),
                    gate=step.get("trigger") == "manual",
                    reports="test-results" in after,
                    caches=bool(used) and all(caches[c].get("key", {}).get("files") for c in used),
                    step_cache=any(caches[c].get("path") == STEP_CACHE for c in used),
                    keeps_run_folder=any(
                        f"{RUNS_DIR}/**" in as_list(u.get("paths")) and u.get("capture-on") == "always" for u in uploads
                    ),
                    downloads=bool(artifacts.get("download")),
                    uploads=any(f"{ARTIFACT_DIR}/**" in as_list(u.get("paths")) for u in uploads),
                    script=script,
                )
            before = names
    return AdapterFacts("bitbucket", dict(files), list(jobs.values()), path_filters=None, main_file=PATH)
