"""CircleCI: ``.circleci/config.yml``.

Two workflows chosen by ``when:`` on the branch: every other branch runs the checks, ``main`` the whole pipeline.
CircleCI has no config-wide ``environment:``, so ``CICD_TARGET=aws`` is set in both executors (every job uses one;
executor and job ``environment:`` maps add up, the job's value winning). Reusable ``commands:`` keep each job to its
``inv`` calls. The workspace carries ``.cicd/artifact/``: the build jobs and every environment job persist it (a layer
each); the test tiers persist their hand-off (``.cicd/handoff/<step>``) for the coverage job, and ``attach_workspace``
applies the layers of all upstream jobs in workflow order, a later layer overwriting an earlier one. Each job with
credentials uses a context (``aws-<env>``, holding ``AWS_ROLE_ARN``; restrict it to ``main`` with a security group or an
expression), which also makes CircleCI issue the OIDC token; the token is handed to the AWS SDKs only when
``CICD_TARGET`` is ``aws``. A ``serial-group`` keeps two deploys to one environment from overlapping. With the approval
switch on, the approval job runs ``inv change-set`` with the context ``aws-prod-change-set`` (the read-only role's ARN)
and a ``type: approval`` job holds the environment job after it. CircleCI's token cannot tell the approval job from
prod's deploy job (IAM sees the same ``sub`` and ``aud``): the change-set role trusts every main job, and only the
context keeps prod's role ARN from the approval job. No orbs: nothing third-party to pin."""

from __future__ import annotations

import posixpath
import re
from typing import Any, Final

from cicd.adapters import pins, yamltext
from cicd.adapters.common import NO_SYNC, Rendered, collect_junit, guard, header, installs_locked, locked_install
from cicd.adapters.facts import AdapterFacts, Handoff, JobFacts, as_list, inv_calls, text_of
from cicd.adapters.plan import (
    ARTIFACT_DIR,
    MAIN_BRANCH,
    RUNS_DIR,
    STEP_CACHE,
    TARGET,
    TARGET_VAR,
    TARGET_VARS,
    Job,
    Plan,
)
from cicd.adapters.yamltext import Flow, dump
from cicd.cache import SIGNING_VARIABLE, VERIFY_VARIABLE
from cicd.errors import ConfigError

PATH: Final = ".circleci/config.yml"
BRANCH: Final = "<< pipeline.git.branch >>"
CACHE_KEY: Final = 'cicd-v1-{{ arch }}-{{ checksum "requirements.lock" }}-{{ checksum "package-lock.json" }}'
STEP_KEY: Final = "cicd-steps-v1-{{ arch }}-{{ .Environment.CIRCLE_JOB }}-"
"""The step cache's key prefix per job. A saved key ends ``BRANCH~REVISION`` (``~`` cannot occur in a branch name, so
``main~`` is a prefix only main's entries have): a job restores its own branch's newest entry, else main's."""
STEP_KEYS: Final = [
    STEP_KEY + "{{ .Branch }}~{{ .Revision }}",
    STEP_KEY + "{{ .Branch }}~",
    STEP_KEY + f"{MAIN_BRANCH}~",
]
# Reusable commands are invoked with an empty argument map: the CircleCI config parser rejects a bare command name.
USE_FINISH: Final = {"finish": Flow({})}
USE_REPORT: Final = {"report": Flow({})}
VERIFY_PARAMETER: Final = "cache-verify"
MAIN_CONTEXT: Final = "cicd-main"
"""The context of main's check jobs: ``CICD_CACHE_SECRET``, restricted to ``main`` (expression) and a group."""
LOCKED: Final = locked_install()
PYTHON_ON_FLUTTER: Final = "apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null"
TOKEN: Final = "/tmp/aws-web-identity-token"  # noqa: S105, S108  # nosec B105 B108 # a path in the job's throw-away container


def _run(name: str, command: str, minutes: int | None = None) -> dict[str, object]:
    body: dict[str, object] = {"name": name, "command": command}
    if minutes:
        body["no_output_timeout"] = f"{minutes}m"
    return {"run": Flow(body) if len(command) + len(name) < 70 and "\n" not in command else body}


def _commands(plan: Plan) -> dict[str, object]:
    # The parser wants a reusable command defined before a command that uses it (report before finish).
    commands: dict[str, object] = {
        "setup": {
            "description": "Check out, restore the lock-file-keyed caches (not on main: any branch can write them) "
            "and the step cache, install uv (pinned).",
            "parameters": {VERIFY_PARAMETER: Flow({"type": "boolean", "default": False})},
            "steps": [
                "checkout",
                {
                    "when": {
                        "condition": {"not": f"<< parameters.{VERIFY_PARAMETER} >>"},
                        "steps": [{"restore_cache": Flow({"keys": [CACHE_KEY]})}],
                    }
                },
                {"restore_cache": {"name": "Restore the step cache", "keys": STEP_KEYS}},
                _run("Install uv", pins.uv_install()),
            ],
        },
        "report": {
            "description": "JUnit to the Tests tab; the run folder (reports, outputs) as artifacts.",
            "steps": [
                {"run": Flow({"name": "Collect JUnit", "when": "always", "command": collect_junit("test-results")})},
                {"store_test_results": Flow({"path": "test-results"})},
                {"store_artifacts": Flow({"path": RUNS_DIR})},
            ],
        },
        "finish": {
            "description": "Save the caches, then report.",
            "steps": [
                {"save_cache": Flow({"key": CACHE_KEY, "paths": ["~/.cache/uv", "node_modules", ".cicd/tools"]})},
                {"save_cache": Flow({"name": "Save the step cache", "key": STEP_KEYS[0], "paths": [STEP_CACHE]})},
                USE_REPORT,
            ],
        },
    }
    if any(j.kind != "check" for j in plan.jobs):
        commands["setup-locked"] = {
            "description": "Check out and install uv and requirements.lock (every hash checked); no cache.",
            "steps": ["checkout", _run("Install uv", pins.uv_install()), _run("Install (hash-locked)", LOCKED)],
        }
    if any(j.credentials for j in plan.jobs):
        commands["aws-oidc"] = {
            "description": f"Hand CircleCI's OIDC token to the AWS SDKs when {TARGET_VAR} is {TARGET} (needs a "
            "context); fails at once if a value is unset.",
            "parameters": {"env": Flow({"type": "string"})},
            "steps": [
                _run(
                    "AWS credentials (OIDC)",
                    "\n".join(
                        [
                            f'if [ "${{{TARGET_VAR}:-}}" != {TARGET} ]; then '
                            f'echo "{TARGET_VAR}=${{{TARGET_VAR}:-}}: no AWS credentials"; exit 0; fi',
                            ': "${AWS_ROLE_ARN:?set AWS_ROLE_ARN in the aws-<< parameters.env >> context}"',
                            f'printf "%s" "$CIRCLE_OIDC_TOKEN_V2" > {TOKEN} && test -s {TOKEN}',
                            f"echo 'export AWS_WEB_IDENTITY_TOKEN_FILE={TOKEN} "
                            'AWS_ROLE_SESSION_NAME="circleci-${CIRCLE_WORKFLOW_ID}-<< parameters.env >>"\' '
                            '>> "$BASH_ENV"',
                        ]
                    ),
                )
            ],
        }
    return commands


def _job(plan: Plan, job: Job) -> dict[str, object]:
    steps: list[object] = []
    data: dict[str, object] = {"executor": "flutter" if job.flutter else "python"}
    check = job.kind == "check"
    if check:  # main's entries pass "true" (with the cicd-main context): its step cache must be signed
        data["parameters"] = {VERIFY_PARAMETER: Flow({"type": "boolean", "default": False})}
        data["environment"] = Flow({VERIFY_VARIABLE: f"<< parameters.{VERIFY_PARAMETER} >>"})
    else:
        data["environment"] = Flow(dict(NO_SYNC))
    if job.credentials:
        if job.env is None:  # environment and approval jobs have an environment
            raise ConfigError(f"pipeline model: {job.kind} jobs have an environment, but job.env is missing")
        data["environment"] = Flow({"AWS_REGION": plan.region(job.env), **NO_SYNC})
        steps.append(_run("Branch guard", guard("CIRCLE_BRANCH")))
    if job.flutter:
        steps.append(_run("Python for uv", PYTHON_ON_FLUTTER))
    steps.append(
        {"setup": {VERIFY_PARAMETER: f"<< parameters.{VERIFY_PARAMETER} >>"}} if check else {"setup-locked": Flow({})}
    )
    if job.downloads or job.takes:  # every upstream layer: the artifact, or the checks' hand-offs
        steps.append({"attach_workspace": Flow({"at": "."})})
    if job.credentials:
        steps.append({"aws-oidc": Flow({"env": job.identity})})
    for command, inv in zip(job.commands, job.inv(), strict=True):
        steps.append(_run(command, inv, job.timeout))
    if job.uploads:
        steps.append({"persist_to_workspace": Flow({"root": ".", "paths": [ARTIFACT_DIR]})})
    if job.handoff:  # a folder per step: two jobs of one workflow may not persist the same file
        steps.append({"persist_to_workspace": Flow({"root": ".", "paths": list(job.handoff_paths)})})
    steps.append(USE_FINISH if check else USE_REPORT)
    data["steps"] = steps
    return data


def _workflow_entry(plan: Plan, job: Job, trigger: str) -> object:
    params: dict[str, object] = {}
    needs = [n for n in job.needs if trigger in plan.job(n).triggers]
    if job.gated:
        approval = plan.approval_for(job)
        if approval is None:  # gated jobs follow an approval job
            raise ConfigError("pipeline model: gated jobs follow an approval job, but approval is missing")
        needs = [f"hold-{job.env}" if n == approval.id else n for n in needs]
    if needs:
        params["requires"] = needs
    if job.credentials:  # the approval job's context aws-<env>-change-set holds the read-only role's ARN
        params["context"] = [f"aws-{job.identity}"]
    if job.kind == "check" and trigger == "main":
        params[VERIFY_PARAMETER] = True
        params["context"] = [MAIN_CONTEXT]
    if job.kind == "deploy":
        params["serial-group"] = f"<< pipeline.project.slug >>/deploy-{job.env}"
    return {job.id: Flow(params)} if params else job.id


def render(plan: Plan) -> list[Rendered]:
    workflows: dict[str, object] = {}
    for trigger, name, condition in (
        ("pr", "pull-request", Flow({"not": Flow({"equal": [MAIN_BRANCH, BRANCH]})})),
        ("main", "main", Flow({"equal": [MAIN_BRANCH, BRANCH]})),
    ):
        entries: list[object] = []
        for job in plan.order(plan.for_trigger(trigger)):
            if job.gated:
                approval = plan.approval_for(job)
                if approval is None:  # gated jobs follow an approval job
                    raise ConfigError("pipeline model: gated jobs follow an approval job, but approval is missing")
                entries.append({f"hold-{job.env}": Flow({"type": "approval", "requires": [approval.id]})})
            entries.append(_workflow_entry(plan, job, trigger))
        if entries:
            workflows[name] = {"when": condition, "jobs": entries}
    # No config-wide environment exists: every job uses one of these executors, so each carries CICD_TARGET.
    executors: dict[str, object] = {
        "python": {
            "docker": [Flow({"image": pins.image("python")})],
            "resource_class": "medium",
            "environment": Flow(dict(TARGET_VARS)),
        }
    }
    if any(j.flutter for j in plan.jobs):
        executors["flutter"] = {
            "docker": [Flow({"image": pins.image("instrumentisto/flutter")})],
            "environment": Flow({**TARGET_VARS, "CICD_REQUIRE_FLUTTER": "1", "PIP_BREAK_SYSTEM_PACKAGES": "1"}),
        }
    doc: dict[str, object] = {
        "version": 2.1,
        "executors": executors,
        "commands": _commands(plan),
        "jobs": {job.id: _job(plan, job) for job in plan.order(plan.jobs)},
        "workflows": workflows,
    }
    contexts = "/".join(f"aws-{j.identity}" for j in plan.order(plan.jobs) if j.credentials)
    extra: tuple[str, ...] = (
        f"Contexts {contexts}: AWS_ROLE_ARN (infra/ci); restrict each to main with the expression",
        'restriction pipeline.git.branch == "main". Project settings: do not pass secrets to builds from forked',
        f"pull requests. {TARGET_VAR}={TARGET} is set in every executor. OIDC: CIRCLE_OIDC_TOKEN_V2 of the job's",
        "context; checks and builds have no context with credentials.",
        "Caches: any branch can save any key (a pull request can even change this file), so main's checks pass",
        "cache-verify: they restore no lock-file cache and serve only step-cache entries signed with",
        f"{SIGNING_VARIABLE} of context {MAIN_CONTEXT} (random; restricted with the expression",
        'pipeline.git.branch == "main" and to a security group). Builds and environment jobs restore and save no',
        "cache and install requirements.lock with every hash checked.",
    )
    for job in plan.jobs:
        approval = plan.approval_for(job) if job.gated else None
        if approval is not None:
            extra += (
                f"Gate: hold-{job.env} (type: approval) holds {job.id} after {approval.id} shows the change set.",
                f"IAM cannot tell {approval.id} from {job.id} (same sub and aud): only the context",
                f"aws-{approval.identity} (the read-only role's ARN) keeps the deploy role away from {approval.id}.",
                f"Restrict aws-{job.env} to the approvers' security group: a job after an approval job runs only if",
                f"its approver may use the job's context (so only that group can approve {job.id}).",
            )
    text = dump(doc, header=header("CircleCI", PATH, plan, extra=extra), gap_keys=("jobs",))
    return [Rendered(PATH, text)]


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read ``.circleci/config.yml`` back (see :mod:`cicd.adapters.facts`).

    Hand-offs are modelled on the workspace: each ``persist_to_workspace`` step of a job is one layer
    (``workspace:<job>``, its paths kept relative to the step's ``root``); a job's ``attach_workspace`` unpacks,
    at ``at``, the layers of every job upstream of it in its workflow (``requires``, through approval jobs), in the
    order those jobs appear in the workflow graph, so a later layer overwrites an earlier one. Variables: the
    executor's ``environment:`` then the job's (CircleCI has no config-wide environment; the job's value wins)."""
    doc: dict[str, Any] = yamltext.load(files[PATH])
    commands: dict[str, Any] = doc.get("commands") or {}
    executors: dict[str, Any] = doc.get("executors") or {}
    defs: dict[str, Any] = doc.get("jobs") or {}
    entries: dict[str, dict[str, Any]] = {}
    triggers: dict[str, set[str]] = {}
    holds: dict[str, list[str]] = {}
    graphs: dict[str, list[tuple[str, list[str]]]] = {}
    home: dict[str, str] = {}
    """The workflow whose entry of a job is read (main's, when the job is in both)."""
    for workflow_name, workflow in (doc.get("workflows") or {}).items():
        condition = text_of(workflow.get("when"))
        negated = "not" in (workflow.get("when") or {})
        trigger = "pr" if negated or MAIN_BRANCH not in condition else "main"
        graph = graphs.setdefault(workflow_name, [])
        for entry in workflow.get("jobs", []):
            name, params = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
            params = params or {}
            graph.append((str(name), [str(r) for r in as_list(params.get("requires"))]))
            if params.get("type") == "approval":
                holds[name] = [str(r) for r in as_list(params.get("requires"))]
                continue
            triggers.setdefault(name, set()).add(trigger)
            if trigger == "main" or name not in entries:
                entries[name] = params
                home[name] = workflow_name
    # A job's steps as they run in its home workflow (main's where it runs there): its parameters as that workflow
    # passes them, reusable commands inlined, ``when``/``unless`` decided.
    arguments = {name: _arguments(job, entries.get(name, {})) for name, job in defs.items()}
    expanded = {
        name: _expand(_substituted(job.get("steps", []), arguments[name]), commands) for name, job in defs.items()
    }
    layers = {name: _layers(name, steps) for name, steps in expanded.items()}
    jobs: list[JobFacts] = []
    for name, job in defs.items():
        steps = expanded[name]
        runs = [s["run"] for s in steps if isinstance(s, dict) and isinstance(s.get("run"), dict)]
        script = "\n".join(str(r.get("command", "")) for r in runs)
        inv_runs = [r for r in runs if "uv run inv" in str(r.get("command", ""))]
        timeouts = [
            int(str(r.get("no_output_timeout", "0m")).rstrip("m")) for r in inv_runs if r.get("no_output_timeout")
        ]
        params = entries.get(name, {})
        needs = [str(r) for r in as_list(params.get("requires"))]
        gate = any(n in holds for n in needs)
        needs = [m for n in needs for m in holds.get(n, [n])]
        keys = _restored(steps)
        defaults = _restored(_expand(_substituted(job.get("steps", []), _arguments(job, {})), commands))
        stored = [s for s in steps if isinstance(s, dict)]
        contexts = [str(c) for c in as_list(params.get("context"))]
        executor = executors.get(str(job.get("executor", ""))) or {}
        variables = {
            str(k): _with_arguments(str(v), arguments[name])
            for k, v in {**(executor.get("environment") or {}), **(job.get("environment") or {})}.items()
        }
        upstream = _upstream_in_order(graphs.get(home.get(name, ""), []), name)
        receives = [
            Handoff(layer.name, dest=str((s["attach_workspace"] or {}).get("at", ".")))
            for s in stored
            if "attach_workspace" in s
            for up in upstream
            for layer in layers.get(up, [])
        ]
        jobs.append(
            JobFacts(
                id=name,
                commands=inv_calls(script.splitlines()),
                needs=needs,
                triggers=triggers.get(name, set()),
                env=contexts[0] if contexts else None,
                lock=params.get("serial-group"),
                guard=f'test "${{CIRCLE_BRANCH:-}}" = {MAIN_BRANCH}' in script,
                timeout=min(timeouts) if timeouts and len(timeouts) == len(inv_runs) else None,
                credentials="oidc"
                if "CIRCLE_OIDC_TOKEN_V2" in script and "AWS_WEB_IDENTITY_TOKEN_FILE" in script
                else None,
                session_names=re.findall(r'AWS_ROLE_SESSION_NAME="([^"]+)"', script),
                gate=gate,
                reports=any("store_test_results" in s for s in stored),
                caches=any("checksum" in text_of(k) for k in keys + defaults),  # as a pull request runs it
                restores=tuple(text_of(k["restore_cache"].get("keys") or k["restore_cache"].get("key")) for k in keys),
                trusted_cache=MAIN_CONTEXT in contexts and variables.get(VERIFY_VARIABLE) == "true",
                # CircleCI caches are shared by every branch: on main a check may restore only the signed step cache
                shared_on_main=tuple(text_of(k) for k in keys if "checksum" in text_of(k))
                if "main" in triggers.get(name, set())
                else (),
                locked=installs_locked(script, variables),
                approvers=_approvers(files[PATH], contexts) if gate else "",
                credential_env=next((c[len("aws-") :] for c in contexts if c.startswith("aws-")), None)
                if "CIRCLE_OIDC_TOKEN_V2" in script
                else None,
                step_cache=any(f"{MAIN_BRANCH}~" in text_of(k) for k in keys)
                and any(STEP_CACHE in as_list(s["save_cache"].get("paths")) for s in stored if "save_cache" in s),
                keeps_run_folder=any(s.get("store_artifacts", {}).get("path") == RUNS_DIR for s in stored),
                downloads=any("attach_workspace" in s for s in stored),
                uploads=any("persist_to_workspace" in s for s in stored),
                script=script,
                receives=receives,
                hands_on=layers[name],
                variables=variables,
            )
        )
    return AdapterFacts("circleci", dict(files), jobs, path_filters=None, main_file=PATH)


def _with_arguments(value: str, arguments: dict[str, str]) -> str:
    for key, argument in arguments.items():
        value = value.replace(f"<< parameters.{key} >>", argument)
    return value


def _approvers(text: str, contexts: list[str]) -> str:
    """CircleCI's approvers are a setting: the security group of the restricted context the gated job uses (a job
    after an approval job runs only if its approver may use that context), as the header says to configure."""
    for context in contexts:
        if f"Restrict {context} to the approvers' security group" in text:
            return f"the security group that may use the context {context} (a setting; see the header)"
    return ""


def _layers(job: str, steps: list[Any]) -> list[Handoff]:
    """The workspace layers a job adds: one per ``persist_to_workspace`` step, its ``paths`` relative to ``root``."""
    found: list[Handoff] = []
    for step in steps:
        if not isinstance(step, dict) or "persist_to_workspace" not in step:
            continue
        body = step["persist_to_workspace"] or {}
        root = posixpath.normpath(str(body.get("root", ".")))
        paths = tuple(posixpath.normpath(posixpath.join(root, str(p))) for p in as_list(body.get("paths")))
        suffix = f"-{len(found) + 1}" if found else ""
        found.append(Handoff(f"workspace:{job}{suffix}", paths, root=root))
    return found


def _upstream_in_order(graph: list[tuple[str, list[str]]], job: str) -> list[str]:
    """The jobs upstream of ``job`` in one workflow (``requires``, transitively, approval jobs included), in the
    order they appear in the workflow graph: dependency order, ties in the order the workflow lists them."""
    requires = dict(graph)
    upstream: set[str] = set()
    todo = list(requires.get(job, []))
    while todo:
        current = todo.pop()
        if current not in upstream:
            upstream.add(current)
            todo.extend(requires.get(current, []))
    order: list[str] = []
    remaining = [name for name, _ in graph if name in upstream]
    while remaining:
        ready = next((n for n in remaining if all(r in order or r not in upstream for r in requires[n])), None)
        if ready is None:  # a cycle: CircleCI rejects the config; keep the listing order
            return order + remaining
        order.append(ready)
        remaining.remove(ready)
    return order


def _restored(steps: list[Any]) -> list[Any]:
    return [s for s in steps if isinstance(s, dict) and "restore_cache" in s]


def _holds(condition: Any) -> bool:
    """A substituted ``when``/``unless`` condition: a value, or the logic statements ``not``, ``and``, ``or``."""
    if isinstance(condition, dict) and len(condition) == 1:
        ((op, value),) = condition.items()
        if op == "not":
            return not _holds(value)
        if op in ("and", "or"):
            results = [_holds(v) for v in as_list(value)]
            return all(results) if op == "and" else any(results)
    return str(condition).strip().lower() not in ("false", "", "0", "none")


def _arguments(job: dict[str, Any], params: dict[str, Any]) -> dict[str, str]:
    """A job's parameter values: its defaults, overridden by what the workflow entry passes (YAML spelling)."""
    declared = job.get("parameters") or {}
    values = {str(k): (v or {}).get("default", "") for k, v in declared.items()}
    values |= {str(k): v for k, v in params.items() if k in declared}
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}


def _substituted(steps: list[Any], arguments: dict[str, str]) -> list[Any]:
    body = yamltext.dump_data(steps)
    for key, value in arguments.items():
        body = body.replace(f"<< parameters.{key} >>", value)
    loaded: list[Any] = yamltext.load(body) or []
    return loaded


def _expand(steps: list[Any], commands: dict[str, Any]) -> list[Any]:
    """Steps with reusable commands inlined (``<< parameters.x >>`` substituted, a parameter's default where the
    call omits it) and ``when``/``unless`` steps decided by their (substituted) condition."""
    out: list[Any] = []
    for step in steps:
        name, args = (step, {}) if isinstance(step, str) else next(iter(step.items()))
        if name in commands:
            declared = commands[name].get("parameters") or {}
            values = _arguments({"parameters": declared}, args or {})
            out.extend(_expand(_substituted(commands[name].get("steps", []), values), commands))
        elif name in ("when", "unless") and isinstance(args, dict):
            if _holds(args.get("condition")) == (name == "when"):
                out.extend(_expand(args.get("steps", []), commands))
        else:
            out.append(step)
    return out
