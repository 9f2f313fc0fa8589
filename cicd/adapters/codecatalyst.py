"""Amazon CodeCatalyst: two workflows, ``.codecatalyst/workflows/pull-request.yaml`` and ``main.yaml``.

CodeCatalyst has been closed to new customers since 7 November 2025 (existing spaces keep working): this adapter
is kept for existing spaces. Workflows have one trigger list and no per-action conditions, so the pull-request
selection and the trunk pipeline are two workflow files. Actions are ``aws/build@v1`` (the curated image, pinned
by its release name; the Flutter actions run on the pinned Flutter image, which carries the Android SDK);
``DependsOn`` draws the graph and actions without dependencies run in parallel. A workflow has no variables of its
own, so every action sets ``CICD_TARGET`` in its ``Inputs.Variables``. ``.cicd/artifact/`` travels as output
artifacts: an input artifact is unpacked in ``$CATALYST_SOURCE_DIR_<name>``, not in the working folder (the
``WorkflowSource`` checkout), so the action copies it into ``.cicd/artifact/`` first, and every build and
environment action hands the folder on again; the test tiers hand ``.cicd/handoff/<step>/`` to the coverage
action the same way. Each environment action uses a CodeCatalyst environment whose
account connection supplies the role (no keys, nothing to log in to); the approval job uses the environment
``prod-change-set`` with prod's account connection (one connection per account) and the read-only role
``apk-pipeline-codecatalyst-prod-change-set``. CodeCatalyst cannot bind a role to an action: every role of the
space trusts the same service principals, and a connection lends any of its roles to any environment using it,
so the workflow file (reviewed on main) is what keeps prod's deploy role from the approval action. The main
workflow runs ``QUEUED`` (one run at a time in each action, so deploys never overlap); the gate is an
``aws/approval@v1`` action after the approval job. Reports: JUnit through ``Outputs.Reports``.
"""

from __future__ import annotations

from typing import Any, Final

from cicd.adapters import pins, yamltext
from cicd.adapters.codebuild import copied_in
from cicd.adapters.common import NO_SYNC, Rendered, header, inputs_with, installs_locked, locked_install
from cicd.adapters.facts import AdapterFacts, Handoff, JobFacts, as_list, inv_calls
from cicd.adapters.plan import (
    ARTIFACT_DIR,
    CHANGE_SET_SUFFIX,
    HANDOFF_DIR,
    MAIN_BRANCH,
    RUNS_DIR,
    STEP_CACHE,
    TARGET_VARS,
    Job,
    Plan,
)
from cicd.adapters.yamltext import Flow, dump
from cicd.errors import ConfigError

FOLDER: Final = ".codecatalyst/workflows"
PR_PATH: Final = f"{FOLDER}/pull-request.yaml"
MAIN_PATH: Final = f"{FOLDER}/main.yaml"
ROLE_PREFIX: Final = "apk-pipeline-codecatalyst"
GUARD: Final = (
    f'test "${{WorkflowSource.BranchName}}" = {MAIN_BRANCH} || '
    f'{{ echo "deploy actions run only for {MAIN_BRANCH}" >&2; exit 1; }}'
)
IMAGE: Final = Flow({"Registry": "CODECATALYST", "Image": pins.image("CodeCatalystLinux_x86_64")})
FLUTTER_IMAGE: Final = Flow({"Registry": "DockerHub", "Image": pins.image("instrumentisto/flutter")})
"""Flutter at the pinned release plus the Android SDK, which the curated image lacks (``flutter build apk``)."""
PYTHON_ON_FLUTTER: Final = "apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null"


def role_name(env: str) -> str:
    """The IAM role of an environment's account connection (created by ``infra/ci``)."""
    return f"{ROLE_PREFIX}-{env}"


def _identity(environment: dict[str, Any]) -> str | None:
    """Whose credentials an action's environment gives: its role's identity (``apk-pipeline-codecatalyst-<identity>``)
    when the connection is that identity's account's (``aws-<env>``, ``<env>`` the identity less ``-change-set``);
    otherwise ``<connection env> (role <role>)``, which names no identity."""
    connection = next((c for c in as_list(environment.get("Connections")) if isinstance(c, dict)), None)
    if connection is None:
        return None
    account = str(connection.get("Name", "")).removeprefix("aws-")
    role = str(connection.get("Role", ""))
    identity = role.removeprefix(f"{ROLE_PREFIX}-")
    return identity if identity.removesuffix(CHANGE_SET_SUFFIX) == account else f"{account} (role {role})"


def _artifact(job_id: str) -> str:
    return f"artifact_{job_id.replace('-', '_')}"


def _handoff(job_id: str) -> str:
    return f"handoff_{job_id.replace('-', '_')}"


def _variables(plan: Plan, job: Job) -> dict[str, str]:
    """The action's input variables: the target (a workflow has none of its own), then what the job needs."""
    variables = dict(TARGET_VARS)
    if job.credentials and job.env:
        variables["AWS_REGION"] = plan.region(job.env)
    if job.flutter:
        variables |= {"CICD_REQUIRE_FLUTTER": "1", "PIP_BREAK_SYSTEM_PACKAGES": "1"}
    if job.kind != "check":
        variables |= NO_SYNC
    return variables


def _caches(job: Job) -> dict[str, object]:
    caches: dict[str, object] = {
        "uv": Flow({"Path": "/root/.cache/uv", "RestoreKeys": ["uv"]}),
        "cicd_tools": Flow({"Path": ".cicd/tools", "RestoreKeys": ["cicd_tools"]}),
    }
    if job.cached:
        # One step cache per action (a shared name would keep only the last action's entries).
        name = f"steps_{job.id.replace('-', '_')}"
        caches[name] = Flow({"Path": STEP_CACHE, "RestoreKeys": [name]})
    return caches


def _depends_on(plan: Plan, job: Job, trigger: str) -> list[str]:
    """The actions ``job`` waits for: its needs in this workflow, the gated job's approval through its hold."""
    needs = [n for n in job.needs if trigger in plan.job(n).triggers]
    if not job.gated:
        return needs
    approval = plan.approval_for(job)
    if approval is None:  # gated jobs follow an approval job
        raise ConfigError("pipeline model: gated jobs follow an approval job, but approval is missing")
    return [f"hold-{job.env}" if n == approval.id else n for n in needs]


def _action(plan: Plan, job: Job, trigger: str) -> dict[str, object]:
    action: dict[str, object] = {"Identifier": pins.codecatalyst_action("aws/build")}
    needs = _depends_on(plan, job, trigger)
    if needs:
        action["DependsOn"] = needs
    source = plan.handed_from(job) if job.downloads else None
    inputs: dict[str, object] = {"Sources": ["WorkflowSource"]}
    received = [*([_artifact(source.id)] if source is not None else []), *(_handoff(g) for g in job.takes)]
    if received:
        inputs["Artifacts"] = received
    inputs["Variables"] = [Flow({"Name": k, "Value": v}) for k, v in _variables(plan, job).items()]
    action["Inputs"] = inputs
    if job.credentials:
        if job.env is None:  # environment and approval jobs have an environment
            raise ConfigError(f"pipeline model: {job.id} gets credentials, but job.env is missing")
        # The account connection is the environment's account's (one connection per account); the role is the
        # job's identity's: the approval action's environment <env>-change-set names the read-only role.
        action["Environment"] = {
            "Name": job.identity,
            "Connections": [Flow({"Name": f"aws-{job.env}", "Role": role_name(job.identity)})],
        }
    action["Timeout"] = job.timeout
    if job.kind == "check":  # builds and environment actions restore no cache (hash-locked install instead)
        action["Caching"] = {"FileCaching": _caches(job)}
    steps: list[object] = []
    if job.kind == "deploy":
        steps.append(Flow({"Run": GUARD}))
    # An input artifact keeps its paths under $CATALYST_SOURCE_DIR_<name>, outside the working folder: copy it in
    # (the artifact; the checks' hand-offs, a folder per step, all into .cicd/handoff/).
    copies = [
        *([(_artifact(source.id), ARTIFACT_DIR)] if source else []),
        *((_handoff(g), HANDOFF_DIR) for g in job.takes),
    ]
    for name, folder in copies:
        origin = f"$CATALYST_SOURCE_DIR_{name}/{folder}/."
        steps.append(Flow({"Run": f'mkdir -p {folder} && cp -R "{origin}" {folder}/'}))
    if job.flutter:
        steps.append(Flow({"Run": PYTHON_ON_FLUTTER}))
    steps.append(Flow({"Run": pins.uv_install()}))
    if job.kind != "check":
        steps.append(Flow({"Run": locked_install()}))
    steps.extend(Flow({"Run": inv}) for inv in job.inv())
    action["Configuration"] = {"Container": FLUTTER_IMAGE if job.flutter else IMAGE, "Steps": steps}
    artifacts: list[object] = []
    if job.uploads:
        artifacts.append(Flow({"Name": _artifact(job.id), "Files": [f"{ARTIFACT_DIR}/**/*"]}))
    if job.handoff:
        artifacts.append(Flow({"Name": _handoff(job.id), "Files": [f"{p}/**/*" for p in job.handoff_paths]}))
    artifacts.append(Flow({"Name": f"runs_{job.id.replace('-', '_')}", "Files": [f"{RUNS_DIR}/**/*"]}))
    action["Outputs"] = {
        "Reports": {
            f"junit_{job.id.replace('-', '_')}": Flow(
                {
                    "Format": "JUNITXML",
                    "IncludePaths": [".cicd/runs/*/junit.xml"],
                    "ExcludePaths": [".cicd/runs/latest/**"],
                }
            )
        },
        "Artifacts": artifacts,
    }
    return action


def _workflow(plan: Plan, trigger: str, path: str) -> str:
    actions: dict[str, object] = {}
    for job in plan.order(plan.for_trigger(trigger)):
        if job.gated:
            approval = plan.approval_for(job)
            if approval is None:  # gated jobs follow an approval job
                raise ConfigError("pipeline model: gated jobs follow an approval job, but approval is missing")
            actions[f"hold-{job.env}"] = {
                "Identifier": pins.codecatalyst_action("aws/approval"),
                "DependsOn": [approval.id],
                "Configuration": Flow({"ApprovalsRequired": 1}),
            }
        actions[job.id] = _action(plan, job, trigger)
    if trigger == "pr":
        triggers: list[object] = [
            {
                "Type": "PULLREQUEST",
                "Events": ["OPEN", "REVISION"],
                "Branches": [MAIN_BRANCH],
                "FilesChanged": inputs_with(plan, "pr", path),
            }
        ]
        name, mode = "pull-request", "SUPERSEDED"
    else:
        triggers = [Flow({"Type": "PUSH", "Branches": [MAIN_BRANCH]})]
        name, mode = "main", "QUEUED"
    doc: dict[str, object] = {
        "Name": name,
        "SchemaVersion": "1.0",
        "RunMode": mode,
        "Triggers": triggers,
        "Actions": actions,
    }
    extra: tuple[str, ...] = (
        "CodeCatalyst is closed to new customers since 2025-11-07; this adapter is kept for existing spaces.",
        "Environments dev/preprod/prod, each with an account connection aws-<env> and the role",
        f"{ROLE_PREFIX}-<env> (infra/ci); only environment actions have one. QUEUED runs never overlap.",
        "Caches: checks only (CodeCatalyst scopes caches per workflow and branch: main never reads another",
        "branch's); builds and environment actions restore none and install requirements.lock, hashes checked.",
    )
    if any(j.gated for j in plan.jobs):
        extra += (
            "The gate is the approval action (ApprovalsRequired: 1). Who may approve is a project-role setting:",
            "it cannot name people; give the approving role in this project only to prod's approvers.",
        )
    for job in (j for j in plan.jobs if j.kind == "approval" and path == MAIN_PATH):
        extra += (
            f"Approval: environment {job.identity} with the connection aws-{job.env} and the read-only role",
            f"{role_name(job.identity)} (add it to that connection). IAM cannot tell actions apart: this file's",
            "choice of role is the only thing keeping the deploy role from the approval action.",
        )
    return dump(doc, header=header("CodeCatalyst", path, plan, extra=extra), gap_keys=("Actions",))


def render(plan: Plan) -> list[Rendered]:
    files = []
    if plan.for_trigger("pr"):
        files.append(Rendered(PR_PATH, _workflow(plan, "pr", PR_PATH)))
    if plan.for_trigger("main"):
        files.append(Rendered(MAIN_PATH, _workflow(plan, "main", MAIN_PATH)))
    return files


def _input_variables(value: object) -> dict[str, str]:
    """``Inputs.Variables``: a list of ``{Name, Value}`` or a name-to-value mapping (both are valid)."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {str(v["Name"]): str(v.get("Value", "")) for v in as_list(value) if isinstance(v, dict) and "Name" in v}


def _approvers(text: str) -> str:
    """CodeCatalyst's approvers are a setting: the project role allowed to approve (the header says so)."""
    if "Who may approve is a project-role setting" in text:
        return "the project role allowed to approve workflow runs (a setting; see the header)"
    return ""


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read both workflows back (see :mod:`cicd.adapters.facts`)."""
    jobs: dict[str, JobFacts] = {}
    path_filters: list[str] | None = None
    for path, trigger in ((PR_PATH, "pr"), (MAIN_PATH, "main")):
        if path not in files:
            continue
        doc: dict[str, Any] = yamltext.load(files[path])
        if trigger == "pr":
            pr_trigger: dict[str, Any] = next(
                (t for t in doc.get("Triggers", []) if t.get("Type") == "PULLREQUEST"), {}
            )
            path_filters = pr_trigger.get("FilesChanged")
        actions: dict[str, Any] = doc.get("Actions") or {}
        holds = {
            n: [str(d) for d in as_list(a.get("DependsOn"))]
            for n, a in actions.items()
            if str(a.get("Identifier", "")).startswith("aws/approval@")
        }
        for name, action in actions.items():
            if name in holds:
                continue
            config = action.get("Configuration") or {}
            script = "\n".join(str(s.get("Run", "")) for s in config.get("Steps", []))
            needs = [str(d) for d in as_list(action.get("DependsOn"))]
            gate = any(n in holds for n in needs)
            needs = [m for n in needs for m in holds.get(n, [n])]
            env = action.get("Environment") or {}
            inputs = action.get("Inputs") or {}
            outputs = action.get("Outputs") or {}
            artifacts = [a for a in as_list(outputs.get("Artifacts")) if isinstance(a, dict)]
            # An input artifact lands in $CATALYST_SOURCE_DIR_<name>: the job receives it where a step copies it in.
            copies = copied_in(script, "CATALYST_SOURCE_DIR")
            facts_job = JobFacts(
                id=name,
                commands=inv_calls(script.splitlines()),
                needs=needs,
                triggers={trigger},
                env=env.get("Name"),
                lock="RunMode QUEUED" if doc.get("RunMode") == "QUEUED" else None,
                guard=f'test "${{WorkflowSource.BranchName}}" = {MAIN_BRANCH}' in script,
                timeout=action.get("Timeout"),
                credentials="role" if env.get("Connections") else None,
                gate=gate,
                reports=any(r.get("Format") == "JUNITXML" for r in (outputs.get("Reports") or {}).values()),
                caches=bool((action.get("Caching") or {}).get("FileCaching")),
                restores=tuple(
                    str(c.get("Path", n)) if isinstance(c, dict) else str(n)
                    for n, c in ((action.get("Caching") or {}).get("FileCaching") or {}).items()
                ),
                trusted_cache=True,  # caches are scoped per workflow and branch: main reads only main's
                locked=installs_locked(script, _input_variables(inputs.get("Variables"))),
                approvers=_approvers(files[path]) if gate else "",
                credential_env=_identity(env),
                step_cache=any(
                    isinstance(c, dict) and c.get("Path") == STEP_CACHE
                    for c in ((action.get("Caching") or {}).get("FileCaching") or {}).values()
                ),
                keeps_run_folder=any(f"{RUNS_DIR}/**/*" in as_list(a.get("Files")) for a in artifacts),
                downloads=bool(inputs.get("Artifacts")),
                uploads=any(f"{ARTIFACT_DIR}/**/*" in as_list(a.get("Files")) for a in artifacts),
                script=script,
                receives=[
                    Handoff(str(a), dest=copies[str(a)]) for a in as_list(inputs.get("Artifacts")) if a in copies
                ],
                # Output artifacts keep their files' paths (relative to the working folder).
                hands_on=[Handoff(str(a["Name"]), tuple(str(f) for f in as_list(a.get("Files")))) for a in artifacts],
                variables=_input_variables(inputs.get("Variables")),
            )
            if name in jobs:
                jobs[name].triggers.add(trigger)
                if trigger == "main":
                    facts_job.triggers = jobs[name].triggers
                    jobs[name] = facts_job
            else:
                jobs[name] = facts_job
    return AdapterFacts("codecatalyst", dict(files), list(jobs.values()), path_filters=path_filters, main_file=PR_PATH)
