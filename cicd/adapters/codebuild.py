"""AWS CodePipeline with CodeBuild: one buildspec per job (``buildspecs/<job>.yml``) and the pipeline layout
(``pipeline.json``) that the CDK stack in ``infra/ci`` builds.

Two V2 pipelines: ``pull-request`` (a pull-request trigger with file-path filters) runs the checks, ``main`` (a push
trigger, ``QUEUED`` execution mode, so deploys never overlap) runs everything. Every job is a CodeBuild action; actions
of one stage with the same run order run in parallel. The source action hands CodeBuild a clone reference
(``CODEBUILD_CLONE_REF``), so every build works in a full git clone (versions from git, the secrets scan's history).
``CICD_TARGET`` is a pipeline-level variable, passed to every action. ``.cicd/artifact/`` travels as output artifacts:
an action's secondary input lands in ``$CODEBUILD_SRC_DIR_<name>``, not in the working folder, so its buildspec copies
it into ``.cicd/artifact/`` first, and every build and environment action hands the folder on again. The test tiers'
hand-offs (``.cicd/handoff/<step>/``) reach the coverage action the same way. Each environment stage (and the approval
job) runs on a CodeBuild project whose service role is that environment's deploy role (no keys, nothing to log in to;
the role trusts only that environment's project), and the approval job's project runs on a read-only change-set role;
the gate is a ``ManualApproval`` action after the approval job, which only members of the IAM group
``apk-pipeline-prod-approvers`` may approve. Caches: each pipeline has its own CodeBuild projects (the pull-request
pipeline's are ``apk-pipeline-pr-<job>``) and its own S3 cache bucket, so nothing a pull request writes is restored on
main; build, approval and deploy jobs have no cache at all (``"cache": false`` in the layout, no ``cache:`` in their
buildspec): they install from the lock files. The Flutter jobs run on the pinned Flutter image, which carries the
Android SDK that CodeBuild's standard image lacks. The branch reaches the buildspecs as ``CICD_BRANCH`` (the source
action's ``BranchName`` variable) for the guard."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from cicd.adapters import pins, yamltext
from cicd.adapters.common import (
    GENERATOR,
    NO_SYNC,
    Rendered,
    guard,
    header,
    inputs_with,
    installs_locked,
    locked_install,
)
from cicd.adapters.facts import AdapterFacts, Handoff, JobFacts, as_list, inv_calls
from cicd.adapters.plan import ARTIFACT_DIR, HANDOFF_DIR, MAIN_BRANCH, RUNS_DIR, STEP_CACHE, TARGET_VARS, Job, Plan
from cicd.adapters.yamltext import Flow, dump

FOLDER: Final = "buildspecs"
LAYOUT: Final = "pipeline.json"
SOURCE: Final = "source"
PROJECT_PREFIX: Final = "apk-pipeline"
PR_PIPELINE: Final = "pull-request"
APPROVERS_GROUP: Final = "apk-pipeline-prod-approvers"
CLONE_REF: Final = "CODEBUILD_CLONE_REF"
"""The source action's output format that lets CodeBuild clone the repository (history included)."""
STANDARD_IMAGE: Final = pins.image("aws/codebuild/standard")
FLUTTER_IMAGE: Final = pins.image("instrumentisto/flutter")
"""The Flutter jobs' image: Flutter at the pinned release plus the Android SDK (``flutter build apk`` needs it)."""
PYTHON_ON_FLUTTER: Final = "apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null"
HASHED_CACHE: Final = "cicd-$(codebuild-hash-files requirements.lock package-lock.json)"
SRC_DIR_COPY: Final = re.compile(
    r'cp -R "\$(?P<var>CODEBUILD_SRC_DIR|CATALYST_SOURCE_DIR)_(?P<name>\w+)/(?P<sub>[^"]*)" (?P<dest>[^\s;&|]+)'
)


def buildspec_path(job_id: str) -> str:
    return f"{FOLDER}/{job_id}.yml"


def artifact_name(job_id: str) -> str:
    return f"artifact_{job_id.replace('-', '_')}"


def handoff_name(job_id: str) -> str:
    return f"handoff_{job_id.replace('-', '_')}"


def runs_name(job_id: str) -> str:
    return f"runs_{job_id.replace('-', '_')}"


def uncached(job: Job) -> bool:
    """Build, approval and deploy jobs restore nothing: what they produce or change must come from the lock files."""
    return job.kind in ("build", "approval", "deploy")


def project_name(pipeline: str, job_id: str) -> str:
    """The CodeBuild project of ``job_id`` in ``pipeline``: ``apk-pipeline-<job>``, ``apk-pipeline-pr-<job>``."""
    return f"{PROJECT_PREFIX}-pr-{job_id}" if pipeline == PR_PIPELINE else f"{PROJECT_PREFIX}-{job_id}"


def received_from(plan: Plan, job: Job) -> Job | None:
    """The job whose ``.cicd/artifact/`` this job takes (the nearest upstream one that hands it on)."""
    return plan.handed_from(job) if job.downloads else None


def layout(plan: Plan) -> dict[str, Any]:
    """The two pipelines as data: source, variables, stages, actions (buildspec, image, run order, inputs, outputs,
    environment, timeout)."""
    pipelines: dict[str, Any] = {}
    for trigger, name in (("pr", PR_PIPELINE), ("main", "main")):
        jobs = plan.for_trigger(trigger)
        if not jobs:
            continue
        stages: list[dict[str, Any]] = []
        for group in plan.levels(jobs):
            env = group[0].env if all(j.kind == "deploy" for j in group) and len(group) == 1 else None
            stage_name = env or "-".join(sorted({j.kind for j in group})) + f"-{len(stages) + 1}"
            actions: list[dict[str, Any]] = []
            for job in group:
                if job.gated:
                    actions.append({"name": f"gate-{job.env}", "type": "approval", "run_order": 1})
                source = received_from(plan, job)
                actions.append(
                    {
                        "name": job.id,
                        "type": "build",
                        "kind": job.kind,
                        "project": project_name(name, job.id),
                        "cache": not uncached(job),
                        "run_order": 2 if job.gated else 1,
                        "buildspec": buildspec_path(job.id),
                        "image": FLUTTER_IMAGE if job.flutter else STANDARD_IMAGE,
                        # whose role the project runs under: the approval job's is <env>-change-set (read-only)
                        "environment": job.identity if job.credentials else None,
                        "timeout_minutes": job.timeout,
                        "inputs": [
                            SOURCE,
                            *([artifact_name(source.id)] if source else []),
                            *(handoff_name(g) for g in job.takes),
                        ],
                        "outputs": [
                            runs_name(job.id),
                            *([artifact_name(job.id)] if job.uploads else []),
                            *([handoff_name(job.id)] if job.handoff else []),
                        ],
                    }
                )
            stages.append({"name": stage_name, "actions": actions})
        trig: dict[str, Any] = {"type": "pull_request" if trigger == "pr" else "push", "branches": [MAIN_BRANCH]}
        if trigger == "pr":
            trig["file_paths"] = inputs_with(plan, "pr", f"{FOLDER}/**")
        pipelines[name] = {
            "execution_mode": "SUPERSEDED" if trigger == "pr" else "QUEUED",
            "trigger": trig,
            "source": {"name": SOURCE, "output_artifact_format": CLONE_REF},
            "variables": dict(TARGET_VARS),
            "stages": stages,
        }
    return pipelines


def _install(job: Job) -> dict[str, object]:
    """The install phase: uv (hash-checked); a build, approval or environment job then makes its environment from
    ``requirements.lock`` with every hash checked (it restores no cache)."""
    install: dict[str, object] = {}
    commands = [pins.uv_install()]
    if job.flutter:
        # runtime-versions works only on CodeBuild's own images; the Flutter image brings Python through apt.
        commands.insert(0, PYTHON_ON_FLUTTER)
    else:
        install["runtime-versions"] = Flow({"python": "3.11"})
    if uncached(job):
        commands.append(locked_install())
    install["commands"] = commands
    return install


def _buildspec(plan: Plan, job: Job) -> str:
    install = _install(job)
    pre: list[str] = []
    if job.kind == "deploy":
        pre.append(guard("CICD_BRANCH"))
    source = received_from(plan, job)
    if source is not None:
        # A secondary input artifact is unpacked in its own folder, $CODEBUILD_SRC_DIR_<name>, not the working one.
        pre.append(
            f'mkdir -p {ARTIFACT_DIR} && cp -R "$CODEBUILD_SRC_DIR_{artifact_name(source.id)}/." {ARTIFACT_DIR}/'
        )
    pre += [  # the checks' hand-offs: a folder per step, all into .cicd/handoff/
        f'mkdir -p {HANDOFF_DIR} && cp -R "$CODEBUILD_SRC_DIR_{handoff_name(g)}/." {HANDOFF_DIR}/' for g in job.takes
    ]
    variables: dict[str, str] = {"CICD_BUILD_COMMIT": "$CODEBUILD_RESOLVED_SOURCE_VERSION"}
    if job.flutter:
        variables |= {"CICD_REQUIRE_FLUTTER": "1", "PIP_BREAK_SYSTEM_PACKAGES": "1"}
    if uncached(job):
        variables |= NO_SYNC
    phases: dict[str, object] = {"install": install}
    if pre:
        phases["pre_build"] = {"commands": pre}
    phases["build"] = {"commands": list(job.inv())}
    secondary: dict[str, object] = {
        runs_name(job.id): Flow({"base-directory": RUNS_DIR, "files": ["**/*"]}),
    }
    if job.uploads:
        secondary[artifact_name(job.id)] = Flow({"base-directory": ARTIFACT_DIR, "files": ["**/*"]})
    if job.handoff:
        secondary[handoff_name(job.id)] = Flow({"base-directory": HANDOFF_DIR, "files": ["**/*"]})
    doc: dict[str, object] = {
        "version": 0.2,
        "env": {"shell": "bash", "variables": Flow(variables)},
        "phases": phases,
        "reports": {
            f"junit-{job.id}": Flow({"files": ["*/junit.xml"], "base-directory": RUNS_DIR, "file-format": "JUNITXML"})
        },
        "artifacts": {"files": [f"{RUNS_DIR}/**/*"], "secondary-artifacts": secondary},
    }
    extra = [
        f"Job {job.id} of the CodePipeline built by infra/ci (see pipeline.json next to this folder), on "
        f"{FLUTTER_IMAGE if job.flutter else STANDARD_IMAGE}.",
        "CICD_TARGET and CICD_BRANCH come from the pipeline (its variable, the source action's branch).",
    ]
    if uncached(job):
        extra.append(
            "No cache on purpose: this job installs from the lock files and restores nothing another build wrote."
        )
    else:
        doc["cache"] = _cache(job)
        extra.append(
            "Cache: the project's own S3 bucket (pull-request projects apk-pipeline-pr-<job> and main projects "
            "each have one; main never restores what a pull request wrote)."
        )
    if job.env:
        extra.append(
            f"Runs as the CodeBuild role of {job.env} (infra/ci), which only this environment's project may assume"
            + ("; the approval job's role is read-only." if job.kind == "approval" else ".")
        )
    if job.gated or job.kind == "approval":
        extra.append(
            f"Who may approve: members of the IAM group {APPROVERS_GROUP} (infra/ci; its policy allows "
            f"codepipeline:PutApprovalResult on the gate-{job.env} action of the main pipeline only)."
        )
    path = buildspec_path(job.id)
    return dump(doc, header=header("AWS CodeBuild", path, plan, extra=tuple(extra)))


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


def copied_in(script: str, var: str) -> dict[str, str]:
    """``{artifact: dest}`` for every ``cp -R "$<var>_<artifact>/<sub>." <dest>`` line of ``script``: where a job
    copies an input artifact the tool unpacked outside its working folder. ``dest`` is where the artifact's root
    lands, so a copy of a sub-folder into the same-named folder (``<sub>`` = ``<dest>``) lands the root at ``.``; a
    copy that relocates a sub-folder elsewhere is not one the hand-off model can express, and is left out."""
    found: dict[str, str] = {}
    for match in SRC_DIR_COPY.finditer(script):
        if match["var"] != var:
            continue
        sub = match["sub"].rstrip(".").strip("/")
        dest = match["dest"].strip("/").removeprefix("./") or "."
        if not sub:
            found[match["name"]] = dest
        elif dest == sub or dest.endswith(f"/{sub}"):
            found[match["name"]] = dest[: -len(sub)].rstrip("/") or "."
    return found


def _hands_on(outputs: list[str], secondary: dict[str, Any]) -> list[Handoff]:
    """The output artifacts CodePipeline keeps: each is the buildspec's secondary artifact of that name, its files
    kept relative to its ``base-directory``."""
    kept: list[Handoff] = []
    for name in outputs:
        spec = secondary.get(name)
        if not isinstance(spec, dict):
            continue
        base = str(spec.get("base-directory", ".")).strip("/") or "."
        files = tuple(f"{base}/{f}" if base != "." else str(f) for f in as_list(spec.get("files")))
        kept.append(Handoff(name, files, root=base))
    return kept


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read the layout and every buildspec back (see :mod:`cicd.adapters.facts`)."""
    data = json.loads(files[LAYOUT])
    jobs: dict[str, JobFacts] = {}
    path_filters: list[str] | None = None
    for name, pipeline in data.get("pipelines", {}).items():
        trigger = "pr" if pipeline["trigger"]["type"] == "pull_request" else "main"
        if trigger == "pr":
            path_filters = pipeline["trigger"].get("file_paths")
        pipeline_vars = {str(k): str(v) for k, v in (pipeline.get("variables") or {}).items()}
        earlier: list[str] = []
        for stage in pipeline["stages"]:
            gate = any(a["type"] == "approval" for a in stage["actions"])
            level: list[str] = []
            for action in stage["actions"]:
                if action["type"] != "build":
                    continue
                spec: dict[str, Any] = yamltext.load(files[action["buildspec"]])
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
                # Secondary inputs land in $CODEBUILD_SRC_DIR_<name>: a job receives one only where it copies it in.
                copies = copied_in(script, "CODEBUILD_SRC_DIR")
                inputs = [str(i) for i in action.get("inputs", [])]
                secondary_inputs = [i for i in inputs[1:] if i != SOURCE]
                spec_vars = ((spec.get("env") or {}).get("variables")) or {}
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
                    restores=(str(cache["key"]),) if cache.get("key") else (),
                    trusted_cache=True,  # main's projects have their own cache bucket (infra/ci/pipeline.py)
                    locked=installs_locked(script, {str(k): str(v) for k, v in spec_vars.items()}),
                    credential_env=action.get("environment"),
                    approvers=APPROVERS_GROUP if gate else "",
                    step_cache=f"{STEP_CACHE}/**/*" in as_list(cache.get("paths")) and bool(cache.get("fallback-keys")),
                    keeps_run_folder=any(
                        isinstance(v, dict) and v.get("base-directory") == RUNS_DIR for v in secondary.values()
                    ),
                    downloads=any(i.startswith("artifact_") for i in secondary_inputs),
                    uploads=any(
                        isinstance(v, dict) and v.get("base-directory") == ARTIFACT_DIR for v in secondary.values()
                    ),
                    script=script,
                    receives=[Handoff(i, dest=copies[i]) for i in secondary_inputs if i in copies],
                    hands_on=_hands_on([str(o) for o in action.get("outputs", [])], secondary),
                    variables={**pipeline_vars, **{str(k): str(v) for k, v in spec_vars.items()}},
                )
                level.append(job_id)
            earlier = earlier + level
    return AdapterFacts(
        "codebuild", dict(files), list(jobs.values()), path_filters=path_filters, main_file=f"{FOLDER}/**"
    )
