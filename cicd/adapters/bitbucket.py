"""Bitbucket Pipelines: ``bitbucket-pipelines.yml``.

Bitbucket runs a list of steps and ``parallel`` groups, not a graph: the plan's jobs are laid out by dependency
level (every job of a level runs in parallel after the level before it). Pull requests run the checks; ``main``
runs them again (the same steps, YAML anchors) and then builds and deploys.

Bitbucket has no pipeline-level variables in the file, so ``CICD_TARGET`` is set once, as the first line of every
step's script (one YAML anchor, ``&target``): ``aws`` unless a repository variable ``CICD_TARGET`` says otherwise.
The OIDC token is handed to the AWS SDKs only when it says ``aws`` (a shell ``if``: ``oidc: true`` itself cannot be
conditional).

``.cicd/artifact/`` travels as named shared artifacts: each step downloads by name exactly the artifact of
:meth:`~cicd.adapters.plan.Plan.handed_from` (``flutter-build`` -> ``package`` -> ``dev`` -> ``preprod`` ->
``prod``), or nothing (``download: false``); a step that hands it on uploads it again under its own name (the
environment steps with their evidence). The test tiers hand on ``.cicd/handoff/<step>/`` the same way, to the
coverage step. The run folder is a ``scoped`` artifact, never downloaded by a later step.
``package`` requires the Flutter build (``CICD_REQUIRE_FLUTTER=1``): an artifact without the APK fails it.

Each environment step has ``deployment:`` (its variables hold ``AWS_ROLE_ARN``), ``oidc: true``, a
``concurrency-group`` and a branch guard. With the approval switch on, the approval step runs ``inv change-set`` as
a deployment step of its own environment, ``deployment: prod-change-set`` (a deployment environment the user adds;
Bitbucket lets a pipeline use each deployment environment in one step only, so it cannot share prod's): its
variables hold the read-only role's ARN, and its OIDC ``sub`` (``{repo}:{prod-change-set uuid}:{step}``) is one
prod's role refuses. A step without ``deployment:`` gets a ``sub`` without an environment, which no role trusts.
The prod step is ``trigger: manual``: the pipeline pauses until someone runs it.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Final

from cicd.adapters import pins, yamltext
from cicd.adapters.common import Rendered, collect_junit, guard, header, installs_locked, locked_install, web_identity
from cicd.adapters.facts import AdapterFacts, Handoff, JobFacts, as_list, inv_calls
from cicd.adapters.plan import (
    ARTIFACT_DIR,
    MAIN_BRANCH,
    RUNS_DIR,
    STEP_CACHE,
    TARGET,
    TARGET_VAR,
    TIMEOUT_CHECK,
    Job,
    Plan,
)
from cicd.adapters.yamltext import Flow, Reuse, dump
from cicd.cache import VERIFY_VARIABLE
from cicd.errors import ConfigError

PATH: Final = "bitbucket-pipelines.yml"
CACHES: Final = ["uv", "cicd-tools", "npm-tools"]
REQUIRE: Final = "export CICD_REQUIRE_FLUTTER=1"
TARGET_LINE: Final = f'export {TARGET_VAR}="${{{TARGET_VAR}:-{TARGET}}}"'
"""Every step's first line: the target is ``aws`` unless the repository variable ``CICD_TARGET`` sets another."""
NO_INPUTS: Final = ["pyproject.toml", "requirements.lock"]
"""The key files of a step cache whose job declares no input files (its configuration and tool versions)."""
_DEFAULT: Final = re.compile(r"^\$\{(\w+):-([^}$]*)\}$")
VERIFY_LINE: Final = f'[ "${{BITBUCKET_BRANCH:-}}" != {MAIN_BRANCH} ] || export {VERIFY_VARIABLE}=true'
"""Every check's line: on main, only step-cache entries signed with CICD_CACHE_SECRET count. Bitbucket has no
secret that only main's pipeline steps can read (deployment variables exist only in deployment steps), so main
sets none: every check step on main runs (its cache entries are still saved for pull requests)."""
LOCKED: Final = f"export UV_NO_SYNC=1 && {locked_install()}"

STEP_CACHE_PREFIX: Final = "steps-"
"""Bitbucket cache names of the step cache (one per check); every other cache holds dependencies."""


def step_cache_name(job: Job) -> str:
    """The job's step cache: keyed by the job's input files, so a new key (and a fresh save) follows every change
    to them, and a pull request whose inputs equal main's restores main's entries."""
    return f"{STEP_CACHE_PREFIX}{job.id}"


def _credentials(plan: Plan, env: str, identity: str) -> str:
    """The OIDC token handed to the AWS SDKs, only when the step targets AWS (one shell ``if``; the token check
    comes last, so a missing token fails the ``if`` and the step)."""
    lines = [
        f"export AWS_REGION={plan.region(env)}",
        *web_identity("$BITBUCKET_STEP_OIDC_TOKEN", f"bitbucket-${{BITBUCKET_BUILD_NUMBER}}-{identity}"),
    ]
    body = "".join(f"  {line}\n" for line in lines)
    return f'if [ "${TARGET_VAR}" = {TARGET} ]; then\n{body}fi'


def _requires_flutter(plan: Plan, job: Job) -> bool:
    """A build that takes a Flutter build's artifact (``package``): a missing APK must fail it, not ship without."""
    source = plan.handed_from(job)
    return job.kind == "build" and source is not None and source.flutter


def _step(plan: Plan, job: Job, reuse: Reuse) -> dict[str, object]:
    step: dict[str, object] = {"name": job.id}
    if job.flutter:
        step["image"] = pins.image("instrumentisto/flutter")
    script: list[object] = [reuse("target", TARGET_LINE)]
    if job.credentials:
        if job.env is None:  # environment and approval jobs have an environment
            raise ConfigError(f"pipeline model: {job.id} needs credentials, but job.env is missing")
        # A deployment step (its environment's variables, and an OIDC sub naming it): the approval step deploys to
        # <env>-change-set, whose AWS_ROLE_ARN is the read-only role.
        step["deployment"] = job.identity
        if job.kind == "deploy":
            step["concurrency-group"] = f"deploy-{job.env}"
        step["oidc"] = True
        if job.gated:
            step["trigger"] = "manual"
        script += [guard("BITBUCKET_BRANCH"), _credentials(plan, job.env, job.identity)]
    if job.timeout != TIMEOUT_CHECK:
        step["max-time"] = job.timeout
    if job.kind == "check":  # builds and environment steps restore no cache: Bitbucket's are every branch's
        step["caches"] = Flow([*CACHES, step_cache_name(job)]) if job.cached else reuse("caches", CACHES)
        script.append(reuse("verify", VERIFY_LINE))
    if job.flutter:
        script += [
            "apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null",
            "export PIP_BREAK_SYSTEM_PACKAGES=1",
        ]
        # A check honours the repository variable CICD_REQUIRE_FLUTTER=0 (a runner without the SDK); a build never.
        script += ['export CICD_REQUIRE_FLUTTER="${CICD_REQUIRE_FLUTTER:-1}"' if job.kind == "check" else REQUIRE]
    elif _requires_flutter(plan, job):
        script += [REQUIRE]
    script += [pins.uv_install(), *job.inv()] if job.kind == "check" else [pins.uv_install(), LOCKED, *job.inv()]
    step["script"] = script
    step["after-script"] = reuse("junit", [collect_junit("test-results")])
    upload: list[object] = [
        Flow({"name": f"runs-{job.id}", "type": "scoped", "paths": [f"{RUNS_DIR}/**"], "capture-on": "always"})
    ]
    if job.uploads:
        upload.insert(0, Flow({"name": job.artifact_name, "paths": [f"{ARTIFACT_DIR}/**"]}))
    if job.handoff:
        upload.insert(0, Flow({"name": job.handoff_name, "paths": [f"{p}/**" for p in job.handoff_paths]}))
    source = plan.handed_from(job) if job.downloads else None
    if job.downloads and source is None:
        raise ConfigError(f"pipeline model: {job.id} takes the artifact, but no job upstream hands it on")
    download = [*([source.artifact_name] if source else []), *(plan.job(g).handoff_name for g in job.takes)]
    step["artifacts"] = {"download": download or False, "upload": upload}
    return step


def render(plan: Plan) -> list[Rendered]:
    reuse = Reuse()

    def item(job: Job) -> object:
        if job.on_pr and "main" in job.triggers:
            if job.id in reuse.seen:
                return {"step": reuse(job.id, job.id)}
            return {"step": reuse(job.id, _step(plan, job, reuse))}
        return {"step": _step(plan, job, reuse)}

    def sequence(trigger: str) -> list[object]:
        out: list[object] = []
        for group in plan.levels(plan.for_trigger(trigger)):
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
                    if j.cached and j.kind == "check"
                },
            }
        },
        "pipelines": pipelines,
    }
    extra = [
        f"No pipeline-level variables in Bitbucket: every script starts with `{TARGET_LINE}`",
        f"(anchor &target): {TARGET} unless a repository variable {TARGET_VAR} says otherwise (local: embedded AWS).",
        "Per deployment environment (Repository settings > Deployments): variable AWS_ROLE_ARN (infra/ci).",
        *(
            line
            for j in plan.jobs
            if j.kind == "approval"
            for line in (
                f"Approval: add the deployment environment {j.identity}; its AWS_ROLE_ARN is the read-only role",
                f"apk-pipeline-bitbucket-{j.identity} (infra/ci, with that environment's UUID in environment_uuids).",
            )
        ),
        f"The OIDC token reaches the AWS SDKs only if {TARGET_VAR}={TARGET}; deploy steps run only for {MAIN_BRANCH}.",
    ]
    extra += [
        "OIDC: oidc: true only on the steps of an environment (deployment: <env>); checks and builds have none.",
        "Caches are shared by every branch. On main the checks trust no step-cache entry",
        f"({VERIFY_VARIABLE}=true, no secret: no variable can be main-only outside deployment steps), so every",
        "check runs; they still restore the dependency caches (see docs/security.md). Builds and environment",
        "steps restore none and install requirements.lock with every hash checked.",
    ]
    gated = ", ".join(j.id for j in plan.jobs if j.gated)
    if gated:
        extra += [
            f"The gate: `trigger: manual` on {gated}, after the approval step showed the change set.",
            "Deployment permissions (Premium) on each gated",
            "environment (Repository settings > Deployments > Production: only admins or the named users and groups",
            "may deploy) decide who may run it; without them anyone with write access can. Artifacts expire after 14",
            "days.",
        ]
    text = dump(doc, header=header("Bitbucket Pipelines", PATH, plan, extra=tuple(extra)), gap_keys=("pipelines",))
    return [Rendered(PATH, text)]


def _variables(script: list[object]) -> dict[str, str]:
    """What the step's unconditional ``export NAME=VALUE`` lines set, in order; ``${NAME:-X}`` is its default, X
    (Bitbucket has no variables in the file: repository and deployment variables are set in its settings)."""
    found: dict[str, str] = {}
    for line in script:
        if not isinstance(line, str) or not line.startswith("export ") or "\n" in line:
            continue
        for word in shlex.split(line)[1:]:
            name, eq, value = word.partition("=")
            if not eq:
                continue
            default = _DEFAULT.match(value)
            found[name] = default.group(2) if default and default.group(1) == name else value
    return found


def _uploads(artifacts: object) -> list[dict[str, Any]]:
    """The step's uploads as ``{name, type, paths, capture-on}`` (the short ``artifacts: [paths]`` form and the
    ``paths:`` key are one unnamed shared artifact)."""
    if isinstance(artifacts, list):
        return [{"paths": artifacts}]
    if not isinstance(artifacts, dict):
        return []
    found = [{"paths": as_list(artifacts["paths"])}] if artifacts.get("paths") else []
    return found + [u for u in as_list(artifacts.get("upload")) if isinstance(u, dict)]


def _shared(upload: dict[str, Any], step: str) -> Handoff | None:
    """What a later step can download of ``upload`` when the step succeeds (paths kept relative to the clone)."""
    if upload.get("type", "shared") != "shared" or upload.get("capture-on", "success") == "failed":
        return None
    return Handoff(str(upload.get("name") or f"{step}:artifacts"), tuple(str(p) for p in as_list(upload["paths"])))


def _receives(artifacts: object, before: list[Handoff]) -> list[Handoff]:
    """Bitbucket's download rule: every shared artifact of the earlier steps (default, ``download: true``), none
    (``false``), or those named; each lands at its own paths in the clone."""
    rule = artifacts.get("download", True) if isinstance(artifacts, dict) else True
    return [] if rule is False else before if rule is True else [h for h in before if h.name in as_list(rule)]


def _approvers(text: str, step: dict[str, Any]) -> str:
    """Bitbucket's approvers are a setting: the deployment permissions of the step's environment (header)."""
    env = str(step.get("deployment") or "")
    if env and "Deployment permissions (Premium) on each gated" in text:
        return f"deployment permissions of the environment {env} (a setting; see the header)"
    return ""


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read ``bitbucket-pipelines.yml`` back (see :mod:`cicd.adapters.facts`)."""
    doc: dict[str, Any] = yamltext.load(files[PATH])
    pipelines = doc.get("pipelines") or {}
    caches = (doc.get("definitions") or {}).get("caches") or {}
    default_time = (doc.get("options") or {}).get("max-time")
    jobs: dict[str, JobFacts] = {}
    for trigger, items in (
        ("pr", (pipelines.get("pull-requests") or {}).get("**", [])),
        ("main", (pipelines.get("branches") or {}).get(MAIN_BRANCH, [])),
    ):
        before: list[str] = []
        shared: list[Handoff] = []  # the shared artifacts uploaded by the steps of earlier levels, in order
        for entry in items:
            steps = [s["step"] for s in entry["parallel"]] if "parallel" in entry else [entry["step"]]
            names = [str(s["name"]) for s in steps]
            uploaded: list[Handoff] = []
            for step in steps:
                name = str(step["name"])
                artifacts = step.get("artifacts")
                hands_on = [h for h in (_shared(u, name) for u in _uploads(artifacts)) if h is not None]
                uploaded += hands_on
                got = _receives(artifacts, shared)
                receives = [Handoff(h.name) for h in got]
                downloads = any(f"{ARTIFACT_DIR}/**" in h.paths for h in got)
                if name in jobs:  # a check of both pipelines (one anchor): main's position decides what it gets
                    jobs[name].triggers.add(trigger)
                    jobs[name].receives, jobs[name].downloads = receives, downloads
                    # Bitbucket's caches are shared by every branch: what main's entry still restores of them
                    jobs[name].shared_on_main = tuple(
                        str(c) for c in as_list(step.get("caches")) if not str(c).startswith(STEP_CACHE_PREFIX)
                    )
                    continue
                raw_script = as_list(step.get("script"))
                script = "\n".join(str(s) for s in raw_script)
                after = "\n".join(str(s) for s in as_list(step.get("after-script")))
                uploads = _uploads(artifacts)
                used = [c for c in as_list(step.get("caches")) if isinstance(caches.get(c), dict)]
                jobs[name] = JobFacts(
                    id=name,
                    commands=inv_calls(script.splitlines()),
                    needs=list(before),
                    triggers={trigger},
                    env=step.get("deployment") or step.get("environment"),
                    lock=step.get("concurrency-group"),
                    guard=f'test "${{BITBUCKET_BRANCH:-}}" = {MAIN_BRANCH}' in script,
                    timeout=step.get("max-time", default_time),
                    credentials="oidc" if step.get("oidc") is True and "BITBUCKET_STEP_OIDC_TOKEN" in script else None,
                    session_names=re.findall(r'AWS_ROLE_SESSION_NAME="([^"]+)"', script),
                    gate=step.get("trigger") == "manual",
                    reports="test-results" in after,
                    caches=bool(used) and all(caches[c].get("key", {}).get("files") for c in used),
                    restores=tuple(str(c) for c in as_list(step.get("caches"))),
                    trusted_cache=VERIFY_LINE in raw_script,
                    locked=installs_locked(script, _variables(raw_script)),
                    approvers=_approvers(files[PATH], step) if step.get("trigger") == "manual" else "",
                    # oidc: true hands the step a token, whatever its script does with it; only a deployment step's
                    # sub names an environment ("": none, so no role trusts it)
                    credential_env=str(step.get("deployment") or "") if step.get("oidc") is True else None,
                    step_cache=any(caches[c].get("path") == STEP_CACHE for c in used),
                    keeps_run_folder=any(
                        f"{RUNS_DIR}/**" in as_list(u.get("paths")) and u.get("capture-on") == "always" for u in uploads
                    ),
                    downloads=downloads,
                    uploads=any(f"{ARTIFACT_DIR}/**" in h.paths for h in hands_on),
                    script=script,
                    receives=receives,
                    hands_on=hands_on,
                    variables=_variables(raw_script),
                )
            before = names
            shared += uploaded
    return AdapterFacts("bitbucket", dict(files), list(jobs.values()), path_filters=None, main_file=PATH)
