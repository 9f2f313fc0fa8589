"""Azure Pipelines: ``azure-pipelines.yml``.

Stages: ``checks`` (one job per check, generated with a compile-time ``${{ each }}`` over a parameter list),
``build`` (publishes ``.cicd/artifact/`` as pipeline artifacts), then one stage per environment with a
``deployment`` job on the Azure DevOps environment of that name (``lockBehavior: sequential`` plus the
environment's Exclusive Lock check keep one deploy at a time). AWS credentials come from workload identity
federation: the built-in ``AzureCLI`` task with a federated service connection ``aws-<env>`` exposes its ID token
(``addSpnToEnvironment``), which the AWS SDKs exchange for the environment's role (no stored keys). The gate is
a ``ManualValidation`` task in an agentless job. Azure Pipelines has no YAML anchors: every job is written out.
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml

from cicd.adapters import pins
from cicd.adapters.common import Rendered, flutter_clone, guard, header, inputs_with, web_identity
from cicd.adapters.facts import AdapterFacts, JobFacts, as_list, inv_calls, text_of
from cicd.adapters.plan import (
    APPROVAL_WAIT_MINUTES,
    ARTIFACT_DIR,
    JUNIT_GLOB,
    MAIN_BRANCH,
    STEP_CACHE,
    SUMMARY,
    Job,
    Plan,
)
from cicd.adapters.yamltext import Flow, dump
from cicd.errors import ConfigError

PATH: Final = "azure-pipelines.yml"
ON_MAIN: Final = (
    "and(succeeded(), eq(variables['Build.SourceBranch'], 'refs/heads/main'), "
    "ne(variables['Build.Reason'], 'PullRequest'))"
)
SOURCES: Final = "$(Build.SourcesDirectory)"
SUMMARY_SCRIPT: Final = f'test ! -f {SUMMARY} || echo "##vso[task.uploadsummary]{SOURCES}/{SUMMARY}"'


def _name(job_id: str) -> str:
    return job_id.replace("-", "_")


def _setup(job: Job, plan: Plan) -> list[object]:
    steps: list[object] = [
        Flow({"checkout": "self", "fetchDepth": "0"}),
        Flow({"task": "UsePythonVersion@0", "inputs": {"versionSpec": "3.11"}}),
        Flow(
            {"task": "Cache@2", "inputs": {"key": 'uv | "$(Agent.OS)" | requirements.lock', "path": "$(UV_CACHE_DIR)"}}
        ),
        Flow(
            {
                "task": "Cache@2",
                "inputs": {
                    "key": 'tools | "$(Agent.OS)" | requirements.lock | package-lock.json',
                    "path": ".cicd/tools",
                },
            }
        ),
        Flow({"script": pins.uv_install()}),
    ]
    if job.cached:
        # The step cache: keyed per job and commit; a pull request restores the newest entry of its target branch.
        steps.insert(
            -1,
            {
                "task": "Cache@2",
                "displayName": "Step cache",
                "inputs": {
                    "key": f'cicd | "$(Agent.OS)" | "{job.id}" | "$(Build.SourceVersion)"',
                    "restoreKeys": f'cicd | "$(Agent.OS)" | "{job.id}"',
                    "path": STEP_CACHE,
                },
            },
        )
    if job.flutter:
        steps.append(
            {
                "script": flutter_clone().replace(
                    " && export PATH", ' && echo "##vso[task.prependpath]$HOME/flutter/bin" && export PATH'
                ),
                "displayName": "Flutter SDK",
            }
        )
    builds = [j.id for j in plan.jobs if j.kind == "build" and j.id in plan.upstream(job)]
    for build in builds:
        steps.append(
            {
                "task": "DownloadPipelineArtifact@2",
                "inputs": Flow({"artifactName": f"artifact-{build}", "targetPath": f"{SOURCES}/{ARTIFACT_DIR}"}),
            }
        )
    return steps


def _finish(job: Job) -> list[object]:
    steps: list[object] = []
    if job.uploads:
        steps.append(Flow({"publish": ARTIFACT_DIR, "artifact": f"artifact-{job.id}"}))
    steps += [
        Flow(
            {
                "task": "PublishTestResults@2",
                "condition": "succeededOrFailed()",
                "inputs": {"testResultsFiles": JUNIT_GLOB, "testRunTitle": job.id},
            }
        ),
        Flow({"script": SUMMARY_SCRIPT, "condition": "always()"}),
        Flow({"publish": ".cicd/runs", "artifact": f"runs-{job.id}-$(System.JobAttempt)", "condition": "always()"}),
    ]
    return steps


def _run_steps(job: Job, plan: Plan) -> list[object]:
    env = Flow({"CICD_REQUIRE_FLUTTER": "1"}) if job.flutter else None
    if job.kind != "deploy":
        step: dict[str, object] = {"script": "\n".join(job.inv()), "displayName": job.title}
        if env:
            step["env"] = env
        return [Flow(step) if len(job.inv()) == 1 else step]
    if job.env is None:  # deploy jobs have an environment
        raise ConfigError("pipeline model: deploy jobs have an environment, but job.env is missing")
    return [
        {"script": guard("BUILD_SOURCEBRANCH", f"refs/heads/{MAIN_BRANCH}"), "displayName": "Branch guard"},
        {
            "task": "AzureCLI@2",
            "displayName": job.title,
            "inputs": {
                "azureSubscription": f"aws-{job.env}",
                "addSpnToEnvironment": True,
                "scriptType": "bash",
                "scriptLocation": "inlineScript",
                "inlineScript": "\n".join(
                    [
                        *web_identity("$idToken", f"azure-$(Build.BuildId)-{job.env}"),
                        f"export AWS_REGION={plan.region(job.env)}",
                        *job.inv(),
                    ]
                ),
            },
        },
    ]


def _job(plan: Plan, job: Job) -> dict[str, object]:
    steps = [*_setup(job, plan), *_run_steps(job, plan), *_finish(job)]
    if job.kind == "deploy":
        return {
            "deployment": _name(job.id),
            "environment": job.env,
            "timeoutInMinutes": str(job.timeout),
            "strategy": {"runOnce": {"deploy": {"steps": steps}}},
        }
    return {"job": _name(job.id), "displayName": job.id, "timeoutInMinutes": str(job.timeout), "steps": steps}


def _stage_of(job: Job) -> str:
    if job.kind == "check":
        return "checks"
    if job.kind == "build":
        return "build"
    return _name(job.id)


def render(plan: Plan) -> list[Rendered]:
    checks = plan.checks
    stages: list[object] = []
    if checks:
        stages.append({"stage": "checks", "jobs": [_job(plan, j) for j in checks]})
    builds = [j for j in plan.order(plan.jobs) if j.kind == "build"]
    if builds:
        jobs = []
        for job in builds:
            body = _job(plan, job)
            deps = [_name(n) for n in job.needs if plan.job(n).kind == "build"]
            if deps:
                body = {"job": body.pop("job"), "dependsOn": deps, **body}
            jobs.append(body)
        stages.append({"stage": "build", "dependsOn": ["checks"], "condition": ON_MAIN, "jobs": jobs})
    for job in plan.order(plan.jobs):
        if job.kind in ("check", "build"):
            continue
        needs = list(dict.fromkeys(_stage_of(plan.job(n)) for n in job.needs))
        stage: dict[str, object] = {"stage": _name(job.id), "dependsOn": needs, "condition": ON_MAIN}
        if job.kind == "deploy":
            stage["lockBehavior"] = "sequential"
        jobs_of_stage: list[object] = [_job(plan, job)]
        if job.kind == "approval":
            jobs_of_stage.append(
                {
                    "job": "gate",
                    "dependsOn": _name(job.id),
                    "pool": "server",
                    "timeoutInMinutes": str(APPROVAL_WAIT_MINUTES),
                    "steps": [
                        {
                            "task": "ManualValidation@1",
                            "timeoutInMinutes": APPROVAL_WAIT_MINUTES,
                            "inputs": Flow(
                                {
                                    "notifyUsers": "",
                                    "instructions": f"Review the change set in {job.id}, then resume to deploy.",
                                    "onTimeout": "reject",
                                }
                            ),
                        }
                    ],
                }
            )
        stage["jobs"] = jobs_of_stage
        stages.append(stage)
    filters = inputs_with(plan, "pr", PATH)
    doc: dict[str, object] = {
        "trigger": {"branches": Flow({"include": [MAIN_BRANCH]}), "paths": Flow({"include": filters})},
        "pr": {"branches": Flow({"include": [MAIN_BRANCH]}), "paths": Flow({"include": filters})},
        "variables": Flow(
            {"UV_CACHE_DIR": "$(Pipeline.Workspace)/.cache/uv", "CICD_BUILD_COMMIT": "$(Build.SourceVersion)"}
        ),
        "pool": Flow({"vmImage": "ubuntu-24.04"}),
        "stages": stages,
    }
    extra = (
        "Per environment: an Azure DevOps environment (Exclusive Lock, branch control = main), a workload-identity",
        "service connection aws-<env> and a variable AWS_ROLE_ARN (infra/ci). The gate is ManualValidation.",
    )
    text = dump(doc, header=header("Azure Pipelines", PATH, plan, extra=extra), gap_keys=("stages",))
    return [Rendered(PATH, text)]


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read ``azure-pipelines.yml`` back, expanding the ``${{ each }}`` loop (see :mod:`cicd.adapters.facts`)."""
    doc: dict[str, Any] = yaml.safe_load(files[PATH])
    params = {p["name"]: p.get("default") for p in doc.get("parameters", [])}
    jobs: list[JobFacts] = []
    stage_jobs: dict[str, list[str]] = {}
    stage_needs: dict[str, list[str]] = {}
    for stage in doc.get("stages", []):
        name = str(stage["stage"])
        condition = str(stage.get("condition", ""))
        triggers = {"main"} if "'PullRequest'" in condition and "ne(" in condition else {"pr", "main"}
        stage_needs[name] = [str(s) for s in as_list(stage.get("dependsOn"))]
        members: list[str] = []
        for raw in stage.get("jobs", []):
            loop = next((k for k in raw if str(k).startswith("${{ each ")), None)
            expanded = []
            if loop:
                variable, _, source = str(loop)[len("${{ each ") : -3].partition(" in parameters.")
                for item in params.get(source.strip(), []) or []:
                    body = yaml.safe_dump(raw[loop])
                    for key, value in item.items():
                        ref = f"{variable.strip()}.{key}"
                        body = body.replace(f"${{{{ {ref} }}}}", str(value))
                        body = body.replace(f"${{{{ replace({ref}, '-', '_') }}}}", str(value).replace("-", "_"))
                    expanded.extend(yaml.safe_load(body))
            else:
                expanded.append(raw)
            for job in expanded:
                jobs.append(_job_facts(job, triggers, name, stage.get("lockBehavior") == "sequential"))
                members.append(jobs[-1].id)
        stage_jobs[name] = members
    gates = {
        str(stage["stage"])
        for stage in doc.get("stages", [])
        for job in stage.get("jobs", [])
        if job.get("pool") == "server"
        and any(str(s.get("task", "")).startswith("ManualValidation@") for s in job.get("steps", []))
    }
    for job in jobs:
        stage, *within = job.needs
        upstream = [m for s in stage_needs[stage] for m in stage_jobs.get(s, [])]
        job.gate = any(s in gates for s in stage_needs[stage])
        job.needs = [n for n in [*upstream, *within] if n != "gate"]
    trigger_paths = (doc.get("pr") or {}).get("paths", {}).get("include")
    return AdapterFacts(
        "azure", dict(files), [j for j in jobs if j.id != "gate"], path_filters=trigger_paths, main_file=PATH
    )


def _job_facts(job: dict[str, Any], triggers: set[str], stage: str, sequential: bool) -> JobFacts:
    deployment = "deployment" in job
    name = str(job.get("deployment") or job.get("job")).replace("_", "-")
    steps = job["strategy"]["runOnce"]["deploy"]["steps"] if deployment else job.get("steps", [])
    scripts = [str(s.get("script", "")) for s in steps] + [
        str((s.get("inputs") or {}).get("inlineScript", ""))
        for s in steps
        if str(s.get("task", "")).startswith("AzureCLI@")
    ]
    script = "\n".join(scripts)
    tasks = [str(s.get("task", "")) for s in steps]
    aws = next((s for s in steps if str(s.get("task", "")).startswith("AzureCLI@")), None)
    return JobFacts(
        id="gate" if job.get("pool") == "server" else name,
        commands=inv_calls(script.splitlines()),
        needs=[stage, *(str(d).replace("_", "-") for d in as_list(job.get("dependsOn")))],
        triggers=set(triggers),
        env=job.get("environment") if deployment else None,
        lock=f"lockBehavior sequential on environment {job.get('environment')}" if deployment and sequential else None,
        guard=f'test "${{BUILD_SOURCEBRANCH:-}}" = refs/heads/{MAIN_BRANCH}' in script,
        timeout=int(job["timeoutInMinutes"]) if job.get("timeoutInMinutes") else None,
        credentials="oidc"
        if aws and (aws.get("inputs") or {}).get("addSpnToEnvironment") and "AWS_WEB_IDENTITY_TOKEN_FILE" in script
        else None,
        session_names=re.findall(r'AWS_ROLE_SESSION_NAME="([^"]+)"', script),
        reports=any(t.startswith("PublishTestResults@") for t in tasks),
        caches=any(
            t.startswith("Cache@") and "requirements.lock" in text_of(s.get("inputs"))
            for t, s in zip(tasks, steps, strict=True)
        ),
        step_cache=any(
            t.startswith("Cache@")
            and (s.get("inputs") or {}).get("path") == STEP_CACHE
            and s["inputs"].get("restoreKeys")
            for t, s in zip(tasks, steps, strict=True)
        ),
        keeps_run_folder=any(s.get("publish") == ".cicd/runs" and s.get("condition") == "always()" for s in steps),
        downloads=any(t.startswith("DownloadPipelineArtifact@") for t in tasks),
        uploads=any(s.get("publish") == ARTIFACT_DIR for s in steps),
        script=script,
    )
