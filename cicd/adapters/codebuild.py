"""AWS CodePipeline with CodeBuild: one buildspec per job (``buildspecs/<job>.yml``) and the pipeline layout
(``pipeline.json``) that the CDK stack in ``infra/ci`` builds.

Two V2 pipelines: ``pull-request`` (a pull-request trigger with file-path filters) runs the checks, ``main`` (a push
trigger, ``QUEUED`` execution mode, so deploys never overlap) runs everything. Every job is a CodeBuild action;
actions of one stage with the same run order run in parallel. Output artifacts carry ``.cicd/artifact/``; each
environment stage runs on a CodeBuild project whose service role is that environment's deploy role (no keys); the
gate is a ``ManualApproval`` action after the approval job. The branch reaches the buildspecs as ``CICD_BRANCH``
(the source action's ``BranchName`` variable) for the guard.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import yaml

from cicd.adapters import pins
from cicd.adapters.bitbucket import levels
from cicd.adapters.common import GENERATOR, Rendered, flutter_clone, guard, header, inputs_with
from cicd.adapters.facts import AdapterFacts, JobFacts, as_list, inv_calls
from cicd.adapters.plan import ARTIFACT_DIR, MAIN_BRANCH, STEP_CACHE, Job, Plan
from cicd.adapters.yamltext import Flow, dump

FOLDER: Final = "buildspecs"
LAYOUT: Final = "pipeline.json"
HASHED_CACHE: Final = "cicd-$(codebuild-hash-files requirements.lock package-lock.json)"


def buildspec_path(job_id: str) -> str:
    return f"{FOLDER}/{job_id}.yml"


def artifact_name(job_id: str) -> str:
    return f"artifact_{job_id.replace('-', '_')}"


def runs_name(job_id: str) -> str:
    return f"runs_{job_id.replace('-', '_')}"


def layout(plan: Plan) -> dict[str, Any]:
    """The two pipelines as data: stages, actions (buildspec, run order, inputs, outputs, environment, timeout)."""
    pipelines: dict[str, Any] = {}
    for trigger, name in (("pr", "pull-request"), ("main", "main")):
        jobs = plan.for_trigger(trigger)
        if not jobs:
            continue
        stages: list[dict[str, Any]] = []
        for group in levels(plan, jobs):
            env = group[0].env if all(j.kind == "deploy" for j in group) and len(group) == 1 else None
            stage_name = env or "-".join(sorted({j.kind for j in group})) + f"-{len(stages) + 1}"
            actions: list[dict[str, Any]] = []
            for job in group:
                if job.gated:
                    actions.append({"name": f"gate-{job.env}", "type": "approval", "run_order": 1})
                builds = [j.id for j in plan.jobs if j.kind == "build" and j.id in plan.upstream(job)]
                outputs = [runs_name(job.id)] + ([artifact_name(job.id)] if job.uploads else [])
                actions.append(
                    {
                        "name": job.id,
                        "type": "build",
                        "run_order": 2 if job.gated else 1,
                        "buildspec": buildspec_path(job.id),
                        "environment": job.env if job.kind == "deploy" else None,
                        "timeout_minutes": job.timeout,
                        "inputs": ["source", *(artifact_name(b) for b in builds)],
                        "outputs": outputs,
                        "flutter": job.flutter,
                    }
                )
            stages.append({"name": stage_name, "actions": actions})
        trig: dict[str, Any] = {"type": "pull_request" if trigger == "pr" else "push", "branches": [MAIN_BRANCH]}
        if trigger == "pr":
            trig["file_paths"] = inputs_with(plan, "pr", f"{FOLDER}/**")
        pipelines[name] = {
            "execution_mode": "SUPERSEDED" if trigger == "pr" else "QUEUED",
            "trigger": trig,
            "stages": stages,
        }
    return pipelines


def _buildspec(plan: Plan, job: Job) -> str:
    install = [pins.uv_install()]
    if job.flutter:
        install.append(flutter_clone())
    pre: list[str] = []
    if job.kind == "deploy":
        pre.append(guard("CICD_BRANCH"))
    builds = [j.id for j in plan.jobs if j.kind == "build" and j.id in plan.upstream(job)]
    for build in builds:
        pre.append(f'mkdir -p {ARTIFACT_DIR} && cp -R "$CODEBUILD_SRC_DIR_{artifact_name(build)}/." {ARTIFACT_DIR}/')
    variables: dict[str, str] = {"CICD_BUILD_COMMIT": "$CODEBUILD_RESOLVED_SOURCE_VERSION"}
    if job.flutter:
        variables["CICD_REQUIRE_FLUTTER"] = "1"
    phases: dict[str, object] = {
        "install": {"runtime-versions": Flow({"python": "3.11"}), "commands": install},
    }
    if pre:
        phases["pre_build"] = {"commands": pre}
    phases["build"] = {"commands": list(job.inv())}
    secondary: dict[str, object] = {
        runs_name(job.id): Flow({"base-directory": ".cicd/runs", "files": ["**/*"]}),
    }
    if job.uploads:
        secondary[artifact_name(job.id)] = Flow({"base-directory": ARTIFACT_DIR, "files": ["**/*"]})
    doc: dict[str, object] = {
        "version": 0.2,
        "env": {"shell": "bash", "variables": Flow(variables)},
        "phases": phases,
        "reports": {
            f"junit-{job.id}": Flow(
                {"files": ["*/junit.xml"], "base-directory": ".cicd/runs", "file-format": "JUNITXML"}
            )
        },
        "artifacts": {"files": [".cicd/runs/**/*"], "secondary-artifacts": secondary},
        "cache": _cache(job),
    }
    path = buildspec_path(job.id)
    extra = (f"Job {job.id} of the CodePipeline built by infra/ci (see pipeline.json next to this folder).",)
    return dump(doc, header=header("AWS CodeBuild", path, plan, extra=extra))


def _cache(job: Job) -> dict[str, object]:
    """One cache per buildspec. A job with cacheable steps adds the step cache and keys it per job and commit (a key
    is never updated once saved); its fallback, the job's prefix, restores the newest entry another commit saved."""
    paths = ["/root/.cache/uv/**/*", ".cicd/tools/**/*", "node_modules/**/*"]
    if not job.cached:
        return {"key": HASHED_CACHE, "fallback-keys": ["cicd-"], "paths": paths}
    prefix = f"cicd-{job.id}-"
    return {
        "key": prefix + HASHED_CACHE.removeprefix("cicd-") + "-$CODEBUILD_RESOLVED_SOURCE_VERSION",
        "fallback-keys": [prefix, "cicd-"],
        "paths": [*paths, f"{STEP_CACHE}/**/*"],
    }


def render(plan: Plan) -> list[Rendered]:
    files = [Rendered(buildspec_path(j.id), _buildspec(plan, j)) for j in plan.order(plan.jobs)]
    data = {
        "//": f"GENERATED by `{GENERATOR}` from cicd/pipeline.py - do not edit; infra/ci builds these pipelines.",
        "pipelines": layout(plan),
    }
    files.append(Rendered(LAYOUT, json.dumps(data, indent=2) + "\n"))
    return files


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read the layout and every buildspec back (see :mod:`cicd.adapters.facts`)."""
    data = json.loads(files[LAYOUT])
    jobs: dict[str, JobFacts] = {}
    path_filters: list[str] | None = None
    for name, pipeline in data.get("pipelines", {}).items():
        trigger = "pr" if pipeline["trigger"]["type"] == "pull_request" else "main"
        if trigger == "pr":
            path_filters = pipeline["trigger"].get("file_paths")
        earlier: list[str] = []
        for stage in pipeline["stages"]:
            gate = any(a["type"] == "approval" for a in stage["actions"])
            level: list[str] = []
            for action in stage["actions"]:
                if action["type"] != "build":
                    continue
                spec: dict[str, Any] = yaml.safe_load(files[action["buildspec"]])
                phases = spec.get("phases") or {}
                script = "\n".join(str(c) for phase in phases.values() for c in as_list((phase or {}).get("commands")))
                build = "\n".join(str(c) for c in as_list((phases.get("build") or {}).get("commands")))
                cache = spec.get("cache") or {}
                secondary = (spec.get("artifacts") or {}).get("secondary-artifacts") or {}
                job_id = str(action["name"])
                if job_id in jobs:
                    jobs[job_id].triggers.add(trigger)
                    if trigger == "main":
                        jobs[job_id].needs = list(earlier)
                    level.append(job_id)
                    continue
                jobs[job_id] = JobFacts(
                    id=job_id,
                    commands=inv_calls(build.splitlines()),
                    needs=list(earlier),
                    triggers={trigger},
                    env=action.get("environment"),
                    lock=f"pipeline {name} execution mode QUEUED" if pipeline["execution_mode"] == "QUEUED" else None,
                    guard=f'test "${{CICD_BRANCH:-}}" = {MAIN_BRANCH}' in script,
                    timeout=action.get("timeout_minutes"),
                    credentials="role" if action.get("environment") else None,
                    gate=gate,
                    reports=any(r.get("file-format") == "JUNITXML" for r in (spec.get("reports") or {}).values()),
                    caches="codebuild-hash-files" in str(cache.get("key", "")),
                    step_cache=f"{STEP_CACHE}/**/*" in as_list(cache.get("paths")) and bool(cache.get("fallback-keys")),
                    keeps_run_folder=any(
                        isinstance(v, dict) and v.get("base-directory") == ".cicd/runs" for v in secondary.values()
                    ),
                    downloads=any(re.match(r"artifact_", i) for i in action.get("inputs", [])),
                    uploads=any(
                        isinstance(v, dict) and v.get("base-directory") == ARTIFACT_DIR for v in secondary.values()
                    ),
                    script=script,
                )
                level.append(job_id)
            earlier = earlier + level
    return AdapterFacts(
        "codebuild", dict(files), list(jobs.values()), path_filters=path_filters, main_file=f"{FOLDER}/**"
    )
