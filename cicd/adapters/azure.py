"""Azure Pipelines: ``azure-pipelines.yml``.

Stages: ``checks`` (one job per check), ``build`` (``flutter-build`` publishes ``.cicd/artifact/`` as the pipeline
artifact ``artifact-flutter-build``, ``package`` downloads it and publishes ``artifact-package``), then one stage per
environment with a ``deployment`` job on the Azure DevOps environment of that name (``lockBehavior: sequential`` plus
the environment's Exclusive Lock check keep one deploy at a time). Every environment job downloads the artifact the
job before it published (``PublishPipelineArtifact@1`` / ``DownloadPipelineArtifact@2`` by name; ``download: none``
stops a deployment job's automatic download of every artifact) and publishes ``.cicd/artifact/`` again, with its
evidence, under its own name.

``CICD_TARGET`` is a pipeline variable (``aws``). Only when it says ``aws`` does the credential step run: the
built-in ``AzureCLI@2`` task with the workload-identity service connection ``aws-<env>`` exposes its ID token
(``addSpnToEnvironment``), which it writes to a file and hands, with the session name and region, to the later
steps as ``AWS_WEB_IDENTITY_TOKEN_FILE`` etc.; the AWS SDKs exchange it for the role in ``AWS_ROLE_ARN``, which
comes from the stage's variable group ``aws-<env>`` (no stored keys). With the approval switch on, an approval stage
runs ``change-set`` with the service connection and variable group ``aws-prod-change-set`` (the read-only role,
whose trust names that connection's subject, which prod's role refuses) and a ``ManualValidation@1`` task in an
agentless job of the same stage holds prod (its approvers: ``APPROVERS`` of that group).
Azure runs a multi-line script without ``errexit``, so every multi-line script starts with ``set -e``. Azure
Pipelines has no YAML anchors: every job is written out.
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml

from cicd.adapters import pins, yamltext
from cicd.adapters.common import (
    NO_SYNC,
    TOKEN_FILE,
    Rendered,
    flutter_clone,
    guard,
    header,
    inputs_with,
    installs_locked,
    locked_install,
    web_identity,
)
from cicd.adapters.facts import AdapterFacts, Handoff, JobFacts, as_list, inv_calls, reachable, text_of
from cicd.adapters.plan import (
    APPROVAL_WAIT_MINUTES,
    ARTIFACT_DIR,
    HANDOFF_DIR,
    JUNIT_GLOB,
    MAIN_BRANCH,
    STEP_CACHE,
    SUMMARY,
    TARGET,
    TARGET_VAR,
    TARGET_VARS,
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
ON_TARGET: Final = f"and(succeeded(), eq(variables['{TARGET_VAR}'], '{TARGET}'))"
"""The credential step's condition: only when the pipeline targets AWS."""
SOURCES: Final = "$(Build.SourcesDirectory)"
WORKSPACE: Final = "$(Pipeline.Workspace)"
SUMMARY_SCRIPT: Final = f'test ! -f {SUMMARY} || echo "##vso[task.uploadsummary]{SOURCES}/{SUMMARY}"'
APPROVERS: Final = "APPROVERS"
"""The variable (in the approval stage's variable group, ``aws-<env>-change-set``) naming who may resume the
``ManualValidation`` gate."""
APPROVERS_SET: Final = (
    f': "${{{APPROVERS}:?set {APPROVERS} in the variable group of this stage: who may resume the gate}}"'
)
AZURE_TOKEN_FILE: Final = "$(Agent.TempDirectory)/aws-web-identity-token"  # noqa: S105 - a path, not a secret


def _name(job_id: str) -> str:
    return job_id.replace("-", "_")


def _group(env: str) -> str:
    """The variable group of an environment (``AWS_ROLE_ARN``; ``APPROVERS`` for a gated one)."""
    return f"aws-{env}"


def _script(lines: tuple[str, ...] | list[str]) -> str:
    """One shell step: Azure runs it without ``errexit``, so a multi-line script stops at its first failure only
    with ``set -e`` (else the step's result is the last command's)."""
    return "\n".join(["set -e", *lines]) if len(lines) > 1 else "\n".join(lines)


def _download(plan: Plan, job: Job) -> list[object]:
    """The artifact the nearest upstream job handed on (flutter build -> package -> dev -> preprod -> prod), and the
    hand-offs of the checks ``job`` takes (a folder per step in ``.cicd/handoff/``)."""
    takes: list[object] = [
        {
            "task": "DownloadPipelineArtifact@2",
            "inputs": Flow({"artifactName": plan.job(giver).handoff_name, "targetPath": f"{SOURCES}/{HANDOFF_DIR}"}),
        }
        for giver in job.takes
    ]
    source = plan.handed_from(job)
    if source is None:
        if job.downloads:
            raise ConfigError(f"pipeline model: {job.id} takes the artifact, but no job upstream hands it on")
        return takes
    return [
        {
            "task": "DownloadPipelineArtifact@2",
            "inputs": Flow({"artifactName": source.artifact_name, "targetPath": f"{SOURCES}/{ARTIFACT_DIR}"}),
        },
        *takes,
    ]


def _setup(job: Job, plan: Plan) -> list[object]:
    steps: list[object] = [
        Flow({"checkout": "self", "fetchDepth": "0"}),
        Flow({"task": "UsePythonVersion@0", "inputs": {"versionSpec": "3.11"}}),
    ]
    if job.kind == "check":  # only checks restore caches (Azure scopes them per branch: main reads only main's)
        steps += [
            Flow(
                {
                    "task": "Cache@2",
                    "inputs": {"key": 'uv | "$(Agent.OS)" | requirements.lock', "path": "$(UV_CACHE_DIR)"},
                }
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
        ]
    steps.append(Flow({"script": pins.uv_install()}))
    if job.kind != "check":
        steps.append(Flow({"script": locked_install(), "displayName": "Install (hash-locked)"}))
    if job.kind == "deploy":
        # A deployment job downloads every artifact of the run into $(Pipeline.Workspace) unless told not to.
        steps.insert(0, Flow({"download": "none"}))
    if job.cached and job.kind == "check":
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
    return [*steps, *_download(plan, job)]


def _credentials(plan: Plan, env: str, identity: str) -> dict[str, object]:
    """The OIDC login of ``identity`` (the environment, or the approval job's ``<env>-change-set``), only when
    ``CICD_TARGET`` is ``aws``: the service connection's ID token goes to a file, and the token file, session name
    and region reach the job's later steps as variables."""
    session = f"azure-$(Build.BuildId)-{identity}"
    lines = [line.replace(TOKEN_FILE, AZURE_TOKEN_FILE) for line in web_identity("$idToken", session)]
    lines += [
        f'echo "##vso[task.setvariable variable={name}]${name}"'
        for name in ("AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE")
    ]
    lines.append(f'echo "##vso[task.setvariable variable=AWS_REGION]{plan.region(env)}"')
    return {
        "task": "AzureCLI@2",
        "displayName": "AWS credentials (OIDC)",
        "condition": ON_TARGET,
        "inputs": {
            "azureSubscription": f"aws-{identity}",
            "addSpnToEnvironment": True,
            "scriptType": "bash",
            "scriptLocation": "inlineScript",
            "inlineScript": _script(lines),
        },
    }


def _run_steps(job: Job, plan: Plan) -> list[object]:
    step: dict[str, object] = {"script": _script(job.inv()), "displayName": job.title}
    if job.flutter:
        step["env"] = Flow({"CICD_REQUIRE_FLUTTER": "1"})
    run: list[object] = [Flow(step) if len(job.inv()) == 1 else step]
    if not job.credentials:
        return run
    if job.env is None:  # environment and approval jobs have an environment
        raise ConfigError(f"pipeline model: {job.id} gets credentials, but job.env is missing")
    return [
        {"script": guard("BUILD_SOURCEBRANCH", f"refs/heads/{MAIN_BRANCH}"), "displayName": "Branch guard"},
        _credentials(plan, job.env, job.identity),
        *run,
    ]


def _finish(job: Job) -> list[object]:
    steps: list[object] = []
    if job.uploads:
        steps.append(
            {
                "task": "PublishPipelineArtifact@1",
                "displayName": f"Hand on {ARTIFACT_DIR}",
                "inputs": Flow({"targetPath": ARTIFACT_DIR, "artifact": job.artifact_name}),
            }
        )
    if job.handoff:
        steps.append(
            {
                "task": "PublishPipelineArtifact@1",
                "displayName": f"Hand on {HANDOFF_DIR}",
                "inputs": Flow({"targetPath": HANDOFF_DIR, "artifact": job.handoff_name}),
            }
        )
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


def _job(plan: Plan, job: Job) -> dict[str, object]:
    steps = [*_setup(job, plan), *_run_steps(job, plan), *_finish(job)]
    if job.kind == "approval":
        # The gate fails closed: with APPROVERS empty, ManualValidation would let anyone resume it.
        steps.insert(0, {"script": APPROVERS_SET, "displayName": "Approvers are named"})
    variables = {"variables": Flow(dict(NO_SYNC))} if job.kind != "check" else {}
    if job.kind == "deploy":
        return {
            "deployment": _name(job.id),
            "environment": job.env,
            "timeoutInMinutes": str(job.timeout),
            **variables,
            "strategy": {"runOnce": {"deploy": {"steps": steps}}},
        }
    return {
        "job": _name(job.id),
        "displayName": job.id,
        "timeoutInMinutes": str(job.timeout),
        **variables,
        "steps": steps,
    }


def _after(body: dict[str, object], needs: list[str] | tuple[str, ...]) -> dict[str, object]:
    """A job of a stage that waits for the jobs ``needs`` of the same stage (none: it starts with the stage)."""
    if not needs:
        return body
    return {"job": body.pop("job"), "dependsOn": [_name(n) for n in needs], **body}


def _gate(job: Job) -> dict[str, object]:
    """The manual gate after the approval job: an agentless job whose ``ManualValidation@1`` only the people in
    ``APPROVERS`` can resume (not the person who started the run); it rejects after a day."""
    return {
        "job": "gate",
        "dependsOn": _name(job.id),
        "pool": "server",
        # The job must outlive the task's own timeout, or the wait is cut short.
        "timeoutInMinutes": str(APPROVAL_WAIT_MINUTES + 60),
        "steps": [
            {
                "task": "ManualValidation@1",
                "timeoutInMinutes": APPROVAL_WAIT_MINUTES,
                "inputs": {
                    "notifyUsers": f"$({APPROVERS})",
                    "approvers": f"$({APPROVERS})",
                    "allowApproversToApproveTheirOwnRuns": False,
                    "instructions": f"Review the change set in {job.id}, then resume to deploy {job.env}.",
                    "onTimeout": "reject",
                },
            }
        ],
    }


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
        # A later check (coverage) waits in the same stage for the checks it needs.
        stages.append({"stage": "checks", "jobs": [_after(_job(plan, j), j.needs) for j in checks]})
    builds = [j for j in plan.order(plan.jobs) if j.kind == "build"]
    if builds:
        jobs = [_after(_job(plan, j), [n for n in j.needs if plan.job(n).kind == "build"]) for j in builds]
        stages.append({"stage": "build", "dependsOn": ["checks"], "condition": ON_MAIN, "jobs": jobs})
    for job in plan.order(plan.jobs):
        if job.kind in ("check", "build"):
            continue
        needs = list(dict.fromkeys(_stage_of(plan.job(n)) for n in job.needs))
        stage: dict[str, object] = {"stage": _name(job.id), "dependsOn": needs, "condition": ON_MAIN}
        if job.kind == "deploy":
            stage["lockBehavior"] = "sequential"
        if job.env is not None:  # the approval stage's group is its identity's: the read-only role's ARN
            stage["variables"] = Flow([{"group": _group(job.identity)}])
        stage["jobs"] = [_job(plan, job), *([_gate(job)] if job.kind == "approval" else [])]
        stages.append(stage)
    filters = inputs_with(plan, "pr", PATH)
    doc: dict[str, object] = {
        "trigger": {"branches": Flow({"include": [MAIN_BRANCH]}), "paths": Flow({"include": filters})},
        "pr": {"branches": Flow({"include": [MAIN_BRANCH]}), "paths": Flow({"include": filters})},
        "variables": Flow(
            {
                **TARGET_VARS,
                "UV_CACHE_DIR": f"{WORKSPACE}/.cache/uv",
                "CICD_BUILD_COMMIT": "$(Build.SourceVersion)",
            }
        ),
        "pool": Flow({"vmImage": "ubuntu-24.04"}),
        "stages": stages,
    }
    gated = [j.identity for j in plan.jobs if j.kind == "approval"]
    extra = [
        "Per environment: an Azure DevOps environment (Exclusive Lock, branch control = main), a workload-identity",
        "service connection aws-<env> and a variable group aws-<env> holding AWS_ROLE_ARN (that environment's role",
        f"from infra/ci). {TARGET_VAR}={TARGET} is set once below; the credential step runs only when it is {TARGET}.",
    ]
    extra += [
        "OIDC: the service connection aws-<env> issues each environment's token; checks and builds have none.",
        f"Caches: checks only (Cache@2 scopes caches per branch; a pull request cannot write {MAIN_BRANCH}'s). Builds",
        "and environment jobs restore none and install requirements.lock with every hash checked.",
    ]
    if gated:
        extra += [
            f"Approval: service connection and variable group aws-{', aws-'.join(gated)}: AWS_ROLE_ARN = the read-only",
            f"change-set role; {APPROVERS} there names who may resume ManualValidation (users or groups; the",
            "approval job fails when it is empty; approvers may not approve their own runs).",
        ]
    text = dump(doc, header=header("Azure Pipelines", PATH, plan, extra=tuple(extra)), gap_keys=("stages",))
    return [Rendered(PATH, text)]


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read ``azure-pipelines.yml`` back, expanding a ``${{ each }}`` loop (see :mod:`cicd.adapters.facts`)."""
    doc: dict[str, Any] = yamltext.load(files[PATH])
    params = {p["name"]: p.get("default") for p in doc.get("parameters", [])}
    pipeline_vars = _variables(doc.get("variables"))
    jobs: list[JobFacts] = []
    stage_jobs: dict[str, list[str]] = {}
    stage_needs: dict[str, list[str]] = {}
    auto_download: set[str] = set()
    for stage in doc.get("stages", []):
        name = str(stage["stage"])
        condition = str(stage.get("condition", ""))
        triggers = {"main"} if "'PullRequest'" in condition and "ne(" in condition else {"pr", "main"}
        stage_needs[name] = [str(s) for s in as_list(stage.get("dependsOn"))]
        stage_vars = {**pipeline_vars, **_variables(stage.get("variables"))}
        members: list[str] = []
        for raw in stage.get("jobs", []):
            for body in _expand(raw, params):
                found = _job_facts(body, triggers, name, stage.get("lockBehavior") == "sequential")
                found.variables = {**stage_vars, **_variables(body.get("variables"))}
                jobs.append(found)
                members.append(found.id)
                if "deployment" in body and not any(s.get("download") == "none" for s in _steps(body)):
                    auto_download.add(found.id)
        stage_jobs[name] = members
    gates = {
        str(stage["stage"]): _approvers(stage)
        for stage in doc.get("stages", [])
        for job in stage.get("jobs", [])
        if job.get("pool") == "server"
        and any(str(s.get("task", "")).startswith("ManualValidation@") for s in job.get("steps", []))
    }
    for job in jobs:
        stage, *within = job.needs
        upstream = [m for s in stage_needs[stage] for m in stage_jobs.get(s, [])]
        job.gate = any(s in gates for s in stage_needs[stage])
        job.locked = installs_locked(job.script, job.variables)
        if job.gate:
            job.approvers = next((gates[s] for s in stage_needs[stage] if s in gates), "")
        job.needs = [n for n in [*upstream, *within] if n != "gate"]
    by_id = {j.id: j for j in jobs}
    for job in jobs:
        if job.id in auto_download:
            # Every artifact published so far lands in $(Pipeline.Workspace)/<name>, beside the sources folder.
            before = reachable(by_id, job)
            names = [h.name for j in jobs if j.id in before for h in j.hands_on]
            job.receives = [*(Handoff(n, dest=f"../{n}") for n in names), *job.receives]
    trigger_paths = (doc.get("pr") or {}).get("paths", {}).get("include")
    return AdapterFacts(
        "azure", dict(files), [j for j in jobs if j.id != "gate"], path_filters=trigger_paths, main_file=PATH
    )


def _approvers(stage: dict[str, Any]) -> str:
    """Who may resume the stage's ``ManualValidation``: its ``approvers`` input, counted only when the stage's agent
    job fails on an empty value first (an empty list lets anyone resume it)."""
    named = ""
    checked = False
    for job in stage.get("jobs", []):
        for step in _steps(job):
            if str(step.get("task", "")).startswith("ManualValidation@"):
                named = str((step.get("inputs") or {}).get("approvers", "")).strip()
            checked = checked or step.get("script") == APPROVERS_SET
    return named if named and checked else ""


def _connection_env(aws: dict[str, Any] | None) -> str | None:
    """The environment of the service connection (``aws-<env>``) the credential step logs in with."""
    connection = str(((aws or {}).get("inputs") or {}).get("azureSubscription", ""))
    return connection[len("aws-") :] if connection.startswith("aws-") else None


def _expand(raw: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """A job, or the jobs of a compile-time ``${{ each x in parameters.y }}`` loop."""
    loop = next((k for k in raw if str(k).startswith("${{ each ")), None)
    if not loop:
        return [raw]
    expanded: list[dict[str, Any]] = []
    variable, _, source = str(loop)[len("${{ each ") : -3].partition(" in parameters.")
    for item in params.get(source.strip(), []) or []:
        body = yaml.safe_dump(raw[loop])
        for key, value in item.items():
            ref = f"{variable.strip()}.{key}"
            body = body.replace(f"${{{{ {ref} }}}}", str(value))
            body = body.replace(f"${{{{ replace({ref}, '-', '_') }}}}", str(value).replace("-", "_"))
        expanded.extend(yamltext.load(body))
    return expanded


def _variables(value: object) -> dict[str, str]:
    """The literal variables of a ``variables:`` section (mapping, or list of ``name``/``value``); a ``group``'s
    values live in Azure DevOps, not in the file."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {str(v["name"]): str(v.get("value", "")) for v in as_list(value) if isinstance(v, dict) and "name" in v}


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = (
        job["strategy"]["runOnce"]["deploy"]["steps"] if "deployment" in job else job.get("steps", [])
    )
    return steps


def _local(path: str) -> str:
    """A path of the file as seen from the sources folder (the job's working directory)."""
    for prefix in (f"{SOURCES}/", "$(System.DefaultWorkingDirectory)/"):
        if path.startswith(prefix):
            return path[len(prefix) :]
    if path.startswith(f"{WORKSPACE}/"):
        return "../" + path[len(WORKSPACE) + 1 :]
    return path


def _receives(steps: list[dict[str, Any]]) -> list[Handoff]:
    """``DownloadPipelineArtifact@2`` (into ``targetPath``) and ``download: current`` (into the pipeline workspace)."""
    found: list[Handoff] = []
    for step in steps:
        inputs = step.get("inputs") or {}
        if str(step.get("task", "")).startswith("DownloadPipelineArtifact@"):
            name = inputs.get("artifactName") or inputs.get("artifact")
            target = inputs.get("targetPath") or inputs.get("path") or WORKSPACE
            if name:
                found.append(Handoff(str(name), dest=_local(str(target))))
        elif step.get("download") == "current" and step.get("artifact"):
            found.append(Handoff(str(step["artifact"]), dest=f"../{step['artifact']}"))
    return found


def _hands_on(steps: list[dict[str, Any]]) -> list[Handoff]:
    """What a successful job publishes: each folder's contents, under the artifact name."""
    found: list[Handoff] = []
    for step in steps:
        if step.get("condition", "succeeded()") != "succeeded()":
            continue
        inputs = step.get("inputs") or {}
        if str(step.get("task", "")).startswith("PublishPipelineArtifact@"):
            path, name = inputs.get("targetPath") or inputs.get("path"), inputs.get("artifact")
        elif "publish" in step:
            path, name = step["publish"], step.get("artifact")
        else:
            continue
        if path and name:
            local = _local(str(path)).rstrip("/")
            found.append(Handoff(str(name), (local,), root=local))
    return found


def _job_facts(job: dict[str, Any], triggers: set[str], stage: str, sequential: bool) -> JobFacts:
    deployment = "deployment" in job
    name = str(job.get("deployment") or job.get("job")).replace("_", "-")
    steps = _steps(job)
    scripts = [str(s.get("script", "")) for s in steps] + [
        str((s.get("inputs") or {}).get("inlineScript", ""))
        for s in steps
        if str(s.get("task", "")).startswith("AzureCLI@")
    ]
    script = "\n".join(scripts)
    tasks = [str(s.get("task", "")) for s in steps]
    aws = next((s for s in steps if str(s.get("task", "")).startswith("AzureCLI@")), None)
    aws_script = str(((aws or {}).get("inputs") or {}).get("inlineScript", ""))
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
        if aws
        and (aws.get("inputs") or {}).get("addSpnToEnvironment")
        and "AWS_WEB_IDENTITY_TOKEN_FILE" in aws_script
        and "$idToken" in aws_script
        else None,
        session_names=re.findall(r'AWS_ROLE_SESSION_NAME="([^"]+)"', script),
        reports=any(t.startswith("PublishTestResults@") for t in tasks),
        caches=any(
            t.startswith("Cache@") and "requirements.lock" in text_of(s.get("inputs"))
            for t, s in zip(tasks, steps, strict=True)
        ),
        restores=tuple(
            str((s.get("inputs") or {}).get("path", ""))
            for t, s in zip(tasks, steps, strict=True)
            if t.startswith("Cache@")
        ),
        trusted_cache=True,  # Azure scopes caches per branch: a main run restores only main's entries
        credential_env=_connection_env(aws),
        step_cache=any(
            t.startswith("Cache@")
            and (s.get("inputs") or {}).get("path") == STEP_CACHE
            and s["inputs"].get("restoreKeys")
            for t, s in zip(tasks, steps, strict=True)
        ),
        keeps_run_folder=any(s.get("publish") == ".cicd/runs" and s.get("condition") == "always()" for s in steps),
        downloads=any(
            t.startswith("DownloadPipelineArtifact@") or s.get("download") == "current"
            for t, s in zip(tasks, steps, strict=True)
        ),
        uploads=any(h.paths == (ARTIFACT_DIR,) for h in _hands_on(steps)),
        script=script,
        receives=_receives(steps),
        hands_on=_hands_on(steps),
    )
