"""GitLab CI: ``.gitlab-ci.yml``.

Merge-request pipelines run the checks only; ``main`` runs everything. Every check is its own job (parallel on the
runners) and ``needs:`` draws the graph. ``.cicd/artifact/`` is handed on with GitLab's own artifacts: a job gets
the artifacts of exactly the ``needs:`` entries without ``artifacts: false``, so each job that takes the artifact
needs the one job that handed it on (:meth:`~cicd.adapters.plan.Plan.handed_from`) with ``artifacts: true``:
``flutter-build`` -> ``package`` -> ``dev`` -> ``preprod`` -> ``prod``. Each environment job keeps ``.cicd/artifact/``
as its own artifact again (now with that environment's evidence), and has ``environment:``, ``resource_group:`` (one
deploy at a time), ``id_tokens:`` (OIDC, no stored keys) and a branch guard. ``CICD_TARGET`` is set once, at the top;
the role is assumed only when it is ``aws`` (a shell ``if``: GitLab has no per-step condition). With the approval
switch on, the approval job shows the change set as ``prod-change-set`` (``environment: {name: prod-change-set,
action: prepare}``: that environment's variables, the read-only role's ARN, without being a deployment; its token's
audience ``apk-pipeline-prod-change-set``, which prod's role refuses) and the prod job is ``when: manual`` with
``allow_failure: false``: the pipeline waits, blocked, until someone allowed to deploy to prod runs it.

The step cache (``cicd-$CI_JOB_NAME_SLUG``) is ``unprotect``-ed, so merge requests restore what main saved; since a
merge request can also write it, protected branches set ``CICD_CACHE_VERIFY`` and trust only the entries signed
with the protected variable ``CICD_CACHE_SECRET`` (:mod:`cicd.cache`).
"""

from __future__ import annotations

import re
from typing import Any, Final

from cicd.adapters import pins, yamltext
from cicd.adapters.common import (
    Rendered,
    guard,
    header,
    inputs_with,
    installs_locked,
    locked_install,
    web_identity,
)
from cicd.adapters.facts import AdapterFacts, Handoff, JobFacts, as_list, inv_calls, text_of
from cicd.adapters.plan import (
    ARTIFACT_DIR,
    JUNIT_GLOB,
    MAIN_BRANCH,
    RUNS_DIR,
    STEP_CACHE,
    TARGET,
    TARGET_VAR,
    TARGET_VARS,
    TIMEOUT_BUILD,
    TIMEOUT_CHECK,
    Job,
    Plan,
)
from cicd.adapters.yamltext import Flow, dump
from cicd.cache import SIGNING_VARIABLE, VERIFY_VARIABLE
from cicd.errors import ConfigError

PATH: Final = ".gitlab-ci.yml"
VERIFY_ON_PROTECTED: Final = "$CI_COMMIT_REF_PROTECTED"
"""``CICD_CACHE_VERIFY`` is ``true`` exactly on protected branches: only they demand signed step-cache entries."""
MR: Final = '$CI_PIPELINE_SOURCE == "merge_request_event"'
ON_MAIN: Final = f'$CI_COMMIT_BRANCH == "{MAIN_BRANCH}" && $CI_PIPELINE_SOURCE != "merge_request_event"'
TIERS: Final = {"dev": "development", "preprod": "staging", "prod": "production"}
AUDIENCE: Final = "apk-pipeline-{env}"
LOCKED: Final = f"export UV_NO_SYNC=1 && {locked_install()}"
"""The hash-checked install of builds and environment jobs (before_script and script share one shell)."""
"""The ``aud`` of each environment's ID token: the environment's role trusts only its own audience."""
KEEP: Final = {"when": "always", "expire_in": "30 days"}
REPORTS: Final = {"reports": {"junit": JUNIT_GLOB}}
DEFAULT_STAGES: Final = (".pre", "build", "test", "deploy", ".post")
"""GitLab's stages when the file names none (a job without ``stage:`` is in ``test``)."""


def _stage(job: Job) -> str:
    if job.kind in ("check", "build"):
        return {"check": "checks", "build": "build"}[job.kind]
    if job.kind == "approval":
        return job.id
    return job.env or "deploy"


def _needs(plan: Plan, job: Job) -> list[object]:
    """Every need, with ``artifacts: true`` only for the job that hands ``.cicd/artifact/`` on to this one (added
    when it is further upstream: GitLab downloads artifacts only from the jobs ``needs:`` lists)."""
    source = plan.handed_from(job) if job.downloads else None
    if job.downloads and source is None:
        raise ConfigError(f"pipeline model: {job.id} takes the artifact, but no job upstream hands it on")
    takes = {source.id} if source is not None else set()
    takes.update(job.takes)  # the checks whose hand-off (.cicd/handoff/<step>/) this job reads
    needs: list[object] = [Flow({"job": n, "artifacts": n in takes}) for n in job.needs]
    if source is not None and source.id not in job.needs:
        needs.append(Flow({"job": source.id, "artifacts": True}))
    return needs


def _job(plan: Plan, job: Job) -> object:
    data: dict[str, object] = {"stage": _stage(job)}
    extends = [
        t
        for t, on in (
            (".flutter", job.flutter),
            (".build", job.kind == "build"),
            (".aws", job.kind == "approval"),
            (".deploy", job.kind == "deploy"),
        )
        if on
    ]
    if extends:
        data["extends"] = extends[0] if len(extends) == 1 else extends
    if job.needs:
        needs = _needs(plan, job)
        data["needs"] = Flow(needs) if len(needs) <= 2 else needs  # one line when it fits
    elif job.kind != "check":
        data["needs"] = []
    if job.kind in ("approval", "deploy"):
        if job.env is None:  # environment jobs have an environment
            raise ConfigError(f"pipeline model: {job.kind} jobs have an environment, but job.env is missing")
        if job.kind == "approval":
            # Not a deployment (prepare): the variables of <env>-change-set (the read-only role), nothing of prod's.
            data["environment"] = Flow({"name": job.identity, "action": "prepare"})
            data["timeout"] = f"{job.timeout}m"
        else:
            data["environment"] = Flow({"name": job.env, "deployment_tier": TIERS.get(job.env, "other")})
            data["resource_group"] = job.env
        data["variables"] = Flow({"AWS_REGION": plan.region(job.env)})
        # Each token names its identity (its own audience): only that identity's roles trust it.
        data["id_tokens"] = Flow({"AWS_ID_TOKEN": Flow({"aud": AUDIENCE.format(env=job.identity)})})
        if job.gated:  # inside rules, a manual job blocks the pipeline until someone runs it
            data["rules"] = [Flow({"if": ON_MAIN, "when": "manual", "allow_failure": False})]
    data["script"] = list(job.inv()) if job.kind != "build" else [LOCKED, *job.inv()]
    if job.handoff:  # the run folder, as every job keeps it, and what a later job takes
        data["artifacts"] = Flow({**KEEP, "paths": [f"{RUNS_DIR}/", *(f"{p}/" for p in job.handoff_paths)], **REPORTS})
    if job.kind == "check":  # one line each
        return Flow(data)
    return data


def _credentials(session: str) -> str:
    """OIDC web identity for every AWS SDK, only when the pipeline targets AWS (``CICD_TARGET``)."""
    lines = web_identity("$AWS_ID_TOKEN", session)
    return "\n".join([f'if [ "${{{TARGET_VAR}:-}}" = {TARGET} ]; then', *(f"  {line}" for line in lines), "fi"])


def render(plan: Plan) -> list[Rendered]:
    filters = inputs_with(plan, "pr", PATH)
    doc: dict[str, object] = {
        "workflow": {
            "rules": [
                Flow({"if": MR, "changes": filters}),
                Flow({"if": f'$CI_COMMIT_BRANCH == "{MAIN_BRANCH}"'}),
            ],
            "auto_cancel": Flow({"on_new_commit": "interruptible"}),
        },
        "stages": ["checks", "build", *dict.fromkeys(_stage(j) for j in plan.order(plan.jobs) if j.env)],
        "variables": Flow(
            {
                **TARGET_VARS,
                "GIT_DEPTH": "0",
                "UV_CACHE_DIR": "$CI_PROJECT_DIR/.cache/uv",
                "CICD_BUILD_COMMIT": "$CI_COMMIT_SHA",
                VERIFY_VARIABLE: VERIFY_ON_PROTECTED,
            }
        ),
        "default": {
            "image": pins.image("python"),
            "interruptible": True,
            "timeout": f"{TIMEOUT_CHECK}m",
            "before_script": [pins.uv_install()],
            "cache": [
                Flow({"key": Flow({"files": ["requirements.lock"], "prefix": "uv"}), "paths": [".cache/uv"]}),
                Flow(
                    {
                        "key": Flow({"files": ["requirements.lock", "package-lock.json"], "prefix": "tools"}),
                        "paths": ["node_modules", ".cicd/tools"],
                    }
                ),
                Flow({"key": "cicd-$CI_JOB_NAME_SLUG", "paths": [STEP_CACHE], "unprotect": True}),
            ],
            "artifacts": Flow({**KEEP, "paths": [f"{RUNS_DIR}/"], **REPORTS}),
        },
    }
    # Builds and environment jobs hand .cicd/artifact/ on (the run folder too, as every job keeps it).
    handoff = Flow({**KEEP, "paths": [f"{ARTIFACT_DIR}/", f"{RUNS_DIR}/"], **REPORTS})
    if any(j.flutter for j in plan.jobs):
        doc[".flutter"] = {
            "image": pins.image("instrumentisto/flutter"),
            "variables": Flow({"CICD_REQUIRE_FLUTTER": "1", "PIP_BREAK_SYSTEM_PACKAGES": "1"}),
            "before_script": ["apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null", pins.uv_install()],
        }
    if any(j.kind == "build" for j in plan.jobs):
        doc[".build"] = {
            "rules": [Flow({"if": ON_MAIN})],
            "timeout": f"{TIMEOUT_BUILD}m",
            "cache": [],
            "artifacts": handoff,
        }
    if any(j.credentials for j in plan.jobs):
        session = "gitlab-${CI_PIPELINE_ID}-${CI_JOB_ID}-${CI_ENVIRONMENT_NAME}"
        doc[".aws"] = {
            "rules": [Flow({"if": ON_MAIN})],
            "interruptible": False,
            "cache": [],
            "before_script": [guard("CI_COMMIT_BRANCH"), _credentials(session), pins.uv_install(), LOCKED],
        }
    if any(j.kind == "deploy" for j in plan.jobs):
        timeout = max(j.timeout for j in plan.jobs if j.kind == "deploy")
        doc[".deploy"] = {"extends": ".aws", "timeout": f"{timeout}m", "artifacts": handoff}
    for job in plan.order(plan.jobs):
        doc[job.id] = _job(plan, job)
    audience = AUDIENCE.format(env="<env>")
    extra = [
        f"Per environment (CI/CD variables scoped to it): AWS_ROLE_ARN (infra/ci); protect {MAIN_BRANCH} and the",
        f"environments. Protected, masked {SIGNING_VARIABLE} (random): main signs its step cache, trusts no other.",
        f"CICD_TARGET=local: no role, the embedded AWS. ID tokens (aud {audience}): environment jobs",
        "only. Only checks restore caches; builds, environment jobs install requirements.lock, hash-checked.",
    ]
    for job in (j for j in plan.jobs if j.gated):
        approval = plan.approval_for(job)
        reads = (
            f" {approval.id}: AWS_ROLE_ARN of environment {approval.identity} (the read-only role), aud "
            f"{AUDIENCE.format(env=approval.identity)}."
            if approval
            else ""
        )
        extra.append(
            f"Gate: {job.id} waits (when: manual); protected environment {job.id}: approval rules naming the "
            f"approvers of {job.id} (no self-approval).{reads}"
        )
    text = dump(doc, header=header("GitLab CI", PATH, plan, extra=tuple(extra)), gap_keys=())
    return [Rendered(PATH, _space_jobs(text))]


def _space_jobs(text: str) -> str:
    """A blank line before every top-level section or job, except between one-line jobs."""
    out: list[str] = []
    lines = text.splitlines()
    for n, line in enumerate(lines):
        top = bool(line) and not line.startswith((" ", "#", "-"))
        one_line = top and (n + 1 == len(lines) or lines[n + 1].startswith(tuple("abcdefghijklmnopqrstuvwxyz.")))
        previous_one_line = bool(out) and out[-1][:1].isalpha() and ": {" in out[-1]
        if top and out and not out[-1].startswith("#") and not (one_line and previous_one_line):
            out.append("")
        out.append(line)
    return "\n".join(out) + "\n"


def _merged(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """A job with ``default:`` and its ``extends:`` templates applied (deep merge of mappings, as GitLab does)."""
    raw = doc[name]
    result: dict[str, Any] = {}
    for key, value in (doc.get("default") or {}).items():
        result[key] = value
    for template in as_list(raw.get("extends")):
        result = _deep_merge(result, _merged(doc, str(template)) if str(template) in doc else {})
    return _deep_merge(result, {k: v for k, v in raw.items() if k != "extends"})


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _minutes(value: object) -> int | None:
    match = re.fullmatch(r"(\d+)\s*m(in(utes?)?)?", str(value or "").strip())
    return int(match.group(1)) if match else None


def _values(variables: object) -> dict[str, str]:
    """A ``variables:`` mapping as strings (a value may be written ``{value: ..., description: ...}``)."""
    out: dict[str, str] = {}
    for key, raw in (variables if isinstance(variables, dict) else {}).items():
        value = raw.get("value", "") if isinstance(raw, dict) else raw
        out[str(key)] = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _hands_on(name: str, job: dict[str, Any]) -> list[Handoff]:
    """A job's ``artifacts: paths:``, kept relative to the project folder (GitLab keeps them when the job succeeds
    unless ``when: on_failure``)."""
    artifacts = job.get("artifacts") or {}
    paths = tuple(str(p) for p in as_list(artifacts.get("paths")))
    if not paths or artifacts.get("when") == "on_failure":
        return []
    return [Handoff(name, paths)]


def _sources(doc: dict[str, Any], merged: dict[str, dict[str, Any]], name: str) -> list[str]:
    """The jobs whose artifacts GitLab downloads into ``name``'s workspace, in order: its ``needs:`` entries without
    ``artifacts: false`` (``needs: []``: none); without ``needs:``, every job of an earlier stage. ``dependencies:``
    narrows either list."""
    job = merged[name]
    if "needs" in job:
        sources = [
            n if isinstance(n, str) else str(n.get("job"))
            for n in as_list(job["needs"])
            if isinstance(n, str) or (n.get("artifacts", True) is not False and not {"project", "pipeline"} & set(n))
        ]
    else:
        named = [s for s in as_list(doc.get("stages")) or DEFAULT_STAGES if s not in (".pre", ".post")]
        stages = [".pre", *named, ".post"]

        def index(other: dict[str, Any]) -> int:
            stage = str(other.get("stage", "test"))
            return stages.index(stage) if stage in stages else len(stages)

        sources = [n for n in merged if index(merged[n]) < index(job)]
    if "dependencies" in job:
        allowed = {str(d) for d in as_list(job["dependencies"])}
        sources = [s for s in sources if s in allowed]
    return [s for s in sources if s in merged]


def _gate(job: dict[str, Any]) -> bool:
    """A manual job that blocks what follows: ``when: manual`` in a rule (``allow_failure`` false unless set), or
    at job level with ``allow_failure: false``."""
    for rule in as_list(job.get("rules")):
        if isinstance(rule, dict) and rule.get("when") == "manual":
            return rule.get("allow_failure", job.get("allow_failure", False)) is False
    return job.get("when") == "manual" and job.get("allow_failure") is False


def _approvers(text: str, env: str) -> str:
    """GitLab's approvers are a setting (protected environment approval rules): what the header says to set."""
    phrase = f"protected environment {env}: approval rules naming the"
    return f"approval rules of the protected environment {env} (a setting; see the header)" if phrase in text else ""


def _audience_env(job: dict[str, Any]) -> str | None:
    """The environment the job's ID token names (``aud: apk-pipeline-<env>``)."""
    tokens = job.get("id_tokens") or {}
    aud = str((tokens.get("AWS_ID_TOKEN") or {}).get("aud", "")) if isinstance(tokens, dict) else ""
    prefix = AUDIENCE.format(env="")
    return aud[len(prefix) :] if aud.startswith(prefix) else None


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read ``.gitlab-ci.yml`` back (see :mod:`cicd.adapters.facts`)."""
    doc: dict[str, Any] = yamltext.load(files[PATH])
    reserved = {"workflow", "stages", "variables", "default", "include"}
    names = [k for k in doc if k not in reserved and not k.startswith(".")]
    top = _values(doc.get("variables"))
    verified = top.get(VERIFY_VARIABLE) == VERIFY_ON_PROTECTED
    merged = {n: _merged(doc, n) for n in names}
    handed = {n: _hands_on(n, j) for n, j in merged.items()}
    builds = {n for n, h in handed.items() if any(f"{ARTIFACT_DIR}/" in x.paths for x in h)}
    jobs: list[JobFacts] = []
    for name, job in merged.items():
        rules = as_list(job.get("rules"))
        rule_text = text_of(rules)
        triggers = {"main"} if '!= "merge_request_event"' in rule_text else {"pr", "main"}
        script_lines = [str(s) for s in as_list(job.get("before_script")) + as_list(job.get("script"))]
        script = "\n".join(script_lines)
        needs = [n if isinstance(n, str) else str(n["job"]) for n in as_list(job.get("needs"))]
        artifacts = job.get("artifacts") or {}
        sessions = re.findall(r'AWS_ROLE_SESSION_NAME="([^"]+)"', script)
        env = job.get("environment")
        sources = [s for s in _sources(doc, merged, name) if handed[s]]
        jobs.append(
            JobFacts(
                id=name,
                commands=inv_calls(str(s) for s in as_list(job.get("script"))),
                needs=needs,
                triggers=triggers,
                env=str(env["name"]) if isinstance(env, dict) else (str(env) if env else None),
                lock=job.get("resource_group"),
                guard=f'test "${{CI_COMMIT_BRANCH:-}}" = {MAIN_BRANCH}' in script,
                timeout=_minutes(job.get("timeout")),
                credentials="oidc" if job.get("id_tokens") and "AWS_WEB_IDENTITY_TOKEN_FILE" in script else None,
                session_names=sessions,
                gate=_gate(job),
                reports=bool((artifacts.get("reports") or {}).get("junit")) and artifacts.get("when") == "always",
                caches=any(
                    isinstance(c, dict) and isinstance(c.get("key"), dict) and c["key"].get("files")
                    for c in as_list(job.get("cache"))
                ),
                restores=tuple(
                    str(path)
                    for c in as_list(job.get("cache"))
                    if isinstance(c, dict) and c.get("policy", "pull-push") != "push"
                    for path in as_list(c.get("paths"))
                ),
                trusted_cache=verified,
                locked=installs_locked(script, {**top, **_values(job.get("variables"))}),
                approvers=_approvers(files[PATH], name) if _gate(job) else "",
                credential_env=_audience_env(job),
                step_cache=any(
                    isinstance(c, dict)
                    and STEP_CACHE in as_list(c.get("paths"))
                    and "$CI_COMMIT" not in str(c.get("key"))
                    and (not c.get("unprotect") or verified)
                    for c in as_list(job.get("cache"))
                ),
                keeps_run_folder=f"{RUNS_DIR}/" in as_list(artifacts.get("paths")),
                downloads=any(s in builds for s in sources),
                uploads=name in builds,
                script=script,
                receives=[Handoff(s) for s in sources],
                hands_on=handed[name],
                variables={**top, **_values(job.get("variables"))},
            )
        )
    mr_rule: dict[str, Any] = next(
        (r for r in as_list(doc.get("workflow", {}).get("rules")) if "merge_request_event" in str(r.get("if"))), {}
    )
    changes = mr_rule.get("changes")
    paths = changes.get("paths") if isinstance(changes, dict) else changes
    return AdapterFacts("gitlab", dict(files), jobs, path_filters=paths, main_file=PATH)
