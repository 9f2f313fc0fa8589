"""GitLab CI: ``.gitlab-ci.yml``.

Merge-request pipelines run the checks only; ``main`` runs everything. Every check is its own job (parallel on the
runners), ``needs:`` draws the graph, artifacts pass ``.cicd/artifact/`` from the build jobs to the environment
jobs, and each environment job has ``environment:``, ``resource_group:`` (one deploy at a time),
``id_tokens:`` (OIDC, no stored keys) and a branch guard. The manual gate is the prod job's ``when: manual``.

The step cache (``cicd-$CI_JOB_NAME_SLUG``) is ``unprotect``-ed, so merge requests restore what main saved; since a
merge request can also write it, protected branches set ``CICD_CACHE_VERIFY`` and trust only the entries signed
with the protected variable ``CICD_CACHE_SECRET`` (:mod:`cicd.cache`).
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml

from cicd.adapters import pins
from cicd.adapters.common import Rendered, guard, header, inputs_with, web_identity
from cicd.adapters.facts import AdapterFacts, JobFacts, as_list, inv_calls, text_of
from cicd.adapters.plan import (
    ARTIFACT_DIR,
    JUNIT_GLOB,
    MAIN_BRANCH,
    RUNS_DIR,
    STEP_CACHE,
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


def _stage(job: Job) -> str:
    if job.kind in ("check", "build"):
        return {"check": "checks", "build": "build"}[job.kind]
    return job.env or "deploy"


def _needs(plan: Plan, job: Job) -> list[object]:
    """Needs with artifacts only from build jobs (every upstream one, so the whole artifact arrives)."""
    builds = [j.id for j in plan.jobs if j.kind == "build" and j.id in plan.upstream(job)]
    needs: list[object] = []
    for need in job.needs:
        needs.append(need if need in builds else Flow({"job": need, "artifacts": False}))
    needs.extend(b for b in builds if b not in job.needs)
    return needs


def _job(plan: Plan, job: Job) -> object:
    data: dict[str, object] = {"stage": _stage(job)}
    extends = [
        t
        for t, on in ((".flutter", job.flutter), (".build", job.kind == "build"), (".deploy", job.kind == "deploy"))
        if on
    ]
    if extends:
        data["extends"] = extends[0] if len(extends) == 1 else extends
    if job.needs:
        data["needs"] = _needs(plan, job)
    elif job.kind != "check":
        data["needs"] = []
    if job.kind == "approval":
        data["rules"] = [Flow({"if": ON_MAIN})]
        data["timeout"] = f"{job.timeout}m"
    if job.kind == "deploy":
        if job.env is None:  # deploy jobs have an environment
            raise ConfigError("pipeline model: deploy jobs have an environment, but job.env is missing")
        data["environment"] = Flow({"name": job.env, "deployment_tier": TIERS.get(job.env, "other")})
        data["resource_group"] = job.env
        data["variables"] = Flow({"AWS_REGION": plan.region(job.env)})
        if job.gated:
            data["rules"] = [Flow({"if": ON_MAIN, "when": "manual"})]
    data["script"] = list(job.inv())
    if job.kind == "check" and not job.flutter:
        return Flow(data)
    return data


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
        "stages": ["checks", "build", *dict.fromkeys(_stage(j) for j in plan.jobs if j.env)],
        "variables": Flow(
            {
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
            "artifacts": Flow(
                {"when": "always", "expire_in": "30 days", "paths": [f"{RUNS_DIR}/"], "reports": {"junit": JUNIT_GLOB}}
            ),
        },
    }
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
            "artifacts": Flow(
                {
                    "when": "always",
                    "expire_in": "30 days",
                    "paths": [f"{ARTIFACT_DIR}/", f"{RUNS_DIR}/"],
                    "reports": {"junit": JUNIT_GLOB},
                }
            ),
        }
    if any(j.kind == "deploy" for j in plan.jobs):
        session = "gitlab-${CI_PIPELINE_ID}-${CI_JOB_ID}-${CI_ENVIRONMENT_NAME}"
        doc[".deploy"] = {
            "rules": [Flow({"if": ON_MAIN})],
            "interruptible": False,
            "timeout": f"{max(j.timeout for j in plan.jobs if j.kind == 'deploy')}m",
            "id_tokens": Flow({"AWS_ID_TOKEN": {"aud": "sts.amazonaws.com"}}),
            "before_script": [
                guard("CI_COMMIT_BRANCH"),
                *web_identity("$AWS_ID_TOKEN", session),
                pins.uv_install(),
            ],
        }
    for job in plan.order(plan.jobs):
        doc[job.id] = _job(plan, job)
    extra = (
        "Per environment (Settings > CI/CD > Variables, scoped to it): AWS_ROLE_ARN, the role from infra/ci;",
        f"protect {MAIN_BRANCH} and the environments. The gate is the manual job after an approval job. Protected,",
        f"masked variable {SIGNING_VARIABLE} (any random value): main signs its step cache and trusts nothing else.",
    )
    text = dump(doc, header=header("GitLab CI", PATH, plan, extra=extra), gap_keys=())
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


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read ``.gitlab-ci.yml`` back (see :mod:`cicd.adapters.facts`)."""
    doc: dict[str, Any] = yaml.safe_load(files[PATH])
    reserved = {"workflow", "stages", "variables", "default", "include"}
    names = [k for k in doc if k not in reserved and not k.startswith(".")]
    verified = (doc.get("variables") or {}).get(VERIFY_VARIABLE) == VERIFY_ON_PROTECTED
    merged = {n: _merged(doc, n) for n in names}
    builds = {n for n, j in merged.items() if f"{ARTIFACT_DIR}/" in as_list(j.get("artifacts", {}).get("paths"))}
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
                gate=any(isinstance(r, dict) and r.get("when") == "manual" for r in rules),
                reports=bool((artifacts.get("reports") or {}).get("junit")) and artifacts.get("when") == "always",
                caches=any(
                    isinstance(c, dict) and isinstance(c.get("key"), dict) and c["key"].get("files")
                    for c in as_list(job.get("cache"))
                ),
                step_cache=any(
                    isinstance(c, dict)
                    and STEP_CACHE in as_list(c.get("paths"))
                    and "$CI_COMMIT" not in str(c.get("key"))
                    and (not c.get("unprotect") or verified)
                    for c in as_list(job.get("cache"))
                ),
                keeps_run_folder=f"{RUNS_DIR}/" in as_list(artifacts.get("paths")),
                downloads=any(isinstance(n, str) and n in builds for n in as_list(job.get("needs"))),
                uploads=name in builds,
                script=script,
            )
        )
    mr_rule: dict[str, Any] = next(
        (r for r in as_list(doc.get("workflow", {}).get("rules")) if "merge_request_event" in str(r.get("if"))), {}
    )
    changes = mr_rule.get("changes")
    paths = changes.get("paths") if isinstance(changes, dict) else changes
    return AdapterFacts("gitlab", dict(files), jobs, path_filters=paths, main_file=PATH)
