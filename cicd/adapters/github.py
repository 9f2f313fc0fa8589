"""GitHub Actions: one workflow, ``.github/workflows/pipeline.yml``.

Checks fan out as one matrix job (one runner per check); builds upload ``.cicd/artifact/`` with
``actions/upload-artifact``; each environment is a job with ``environment:`` (its protection rules, its
``AWS_ROLE_ARN`` variable), ``concurrency`` per environment, OIDC through the official
``aws-actions/configure-aws-credentials`` (``id-token: write`` only there) and a branch guard. SARIF goes to code
scanning; the runner itself writes ``summary.md`` to the job summary. Repeated steps are YAML anchors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, Final

from cicd.adapters import pins, yamltext
from cicd.adapters.common import NO_SYNC, Rendered, guard, header, inputs_with, installs_locked, locked_install
from cicd.adapters.facts import AdapterFacts, Handoff, JobFacts, as_list, inv_calls, text_of
from cicd.adapters.plan import (
    ARTIFACT_DIR,
    HANDOFF_DIR,
    LOCK_FILES,
    MAIN_BRANCH,
    RUNS_DIR,
    SARIF_DIR,
    STEP_CACHE,
    TARGET,
    TARGET_VAR,
    TARGET_VARS,
    Job,
    Plan,
)
from cicd.adapters.yamltext import Commented, Flow, dump
from cicd.errors import ConfigError

PATH: Final = ".github/workflows/pipeline.yml"
UV_CACHE: Final = "~/.cache/uv"
"""uv's cache on the runner (``$HOME/.cache/uv``); only the check jobs' ``actions/cache`` keeps it."""
RUNNER: Final = "ubuntu-24.04"
ON_MAIN: Final = f"github.event_name != 'pull_request' && github.ref == 'refs/heads/{MAIN_BRANCH}'"
SAME_REPO: Final = (
    "(github.event_name != 'pull_request' || github.event.pull_request.head.repo.full_name == github.repository)"
)

IGNORE_EMPTY: Final = {"if-no-files-found": "ignore"}


def _uses(name: str) -> Commented:
    ref, version = pins.action(name).split(" # ")
    return Commented(ref, version)


def _one_line(name: str, given: Mapping[str, object], **extra: object) -> Flow:
    """A step that uses the pinned action ``name`` with ``given``, on one line, its release tag after it."""
    ref = _uses(name)
    return Flow({**extra, "uses": ref.value, "with": Flow(given)}, comment=ref.comment)


def _hash() -> str:
    return "${{ hashFiles(" + ", ".join(f"'{f}'" for f in LOCK_FILES) + ") }}"


class Steps:
    """The shared steps; the first use of each carries a YAML anchor, later uses are aliases."""

    def __init__(self, anchored: set[str] | None = None) -> None:
        self.anchored = anchored
        """Steps used more than once (anchor + aliases); None in the first, counting pass."""
        self.uses: dict[str, int] = {}

    def _anchor(self, name: str, step: dict[str, object] | Flow) -> object:
        self.uses[name] = self.uses.get(name, 0) + 1
        if self.anchored is None or name not in self.anchored:
            return step
        if self.uses[name] > 1:
            return f"ALIAS::{name}"
        return {f"ANCHOR::{name}": step}

    def checkout(self) -> object:
        return self._anchor("checkout", _one_line("actions/checkout", {"fetch-depth": 0, "persist-credentials": False}))

    def uv(self) -> object:
        """uv for every job, as every other adapter installs it: the pinned wheel, hash-checked by pip
        (``pins.uv_install()``), into a virtual environment under ``RUNNER_TEMP`` whose ``bin`` goes on ``PATH``
        (``GITHUB_PATH``) for the later steps. No tool cache: only the check jobs' ``actions/cache`` keeps uv's."""
        lines = (
            'python3 -m venv "$RUNNER_TEMP/uv" && . "$RUNNER_TEMP/uv/bin/activate"',
            pins.uv_install(),
            'echo "$RUNNER_TEMP/uv/bin" >> "$GITHUB_PATH"',
        )
        return self._anchor("uv", {"name": "uv (hash-checked)", "run": "\n".join(lines)})

    def locked(self) -> object:
        return self._anchor("locked", {"name": "Install (hash-locked)", "run": locked_install()})

    def cache(self) -> object:
        key = f"cicd-${{{{ runner.os }}}}-${{{{ github.job }}}}-${{{{ strategy.job-index }}}}-{_hash()}"
        return self._anchor(
            "cache",
            {
                "uses": _uses("actions/cache"),
                "with": {
                    "path": f"{STEP_CACHE}\n.cicd/tools\nnode_modules\n{UV_CACHE}\n",
                    "key": key + "-${{ github.sha }}",
                    "restore-keys": key + "-",
                },
            },
        )

    def download(self, plan: Plan, job: Job) -> Flow:
        """The artifact the nearest upstream job handed on (the package; then each environment's, with evidence)."""
        source = plan.handed_from(job)
        if source is None:
            raise ConfigError(f"pipeline model: {job.id} takes the artifact, but no job upstream hands it on")
        return _one_line("actions/download-artifact", {"name": source.artifact_name, "path": ARTIFACT_DIR})

    def upload(self, job: Job) -> object:
        """Hand ``.cicd/artifact/`` on as ``artifact-<job id>`` (``Job.artifact_name``), the name the next job takes."""
        if job.artifact_name != f"artifact-{job.id}":  # the expression below names it for every job
            raise ConfigError(f"pipeline model: {job.id} hands its artifact on as {job.artifact_name}")
        given = {"name": "artifact-${{ github.job }}", "path": f"{ARTIFACT_DIR}/", "if-no-files-found": "error"}
        return self._anchor("upload", _one_line("actions/upload-artifact", given))

    def take(self, plan: Plan, job: Job) -> list[object]:
        """The hand-offs of the jobs ``job`` takes, each into ``.cicd/handoff/`` (a folder per step: no clashes)."""
        return [
            _one_line("actions/download-artifact", {"name": plan.job(giver).handoff_name, "path": HANDOFF_DIR})
            for giver in job.takes
        ]

    def reports(self) -> object:
        given = {"name": "reports-${{ github.job }}", "path": f"{RUNS_DIR}/", **IGNORE_EMPTY}
        return self._anchor("reports", _one_line("actions/upload-artifact", given, **{"if": "always()"}))


def _flutter(*, matrix: bool = True) -> Flow:
    """The pinned Flutter SDK: in the checks' matrix only for the legs that say ``flutter`` (with the action's
    cache); in a build always, with no cache."""
    given = {"flutter-version": pins.version("flutter"), "channel": "stable", "cache": matrix}
    return _one_line("subosito/flutter-action", given, **({"if": "matrix.flutter"} if matrix else {}))


def _base(job: Job, *, timeout: int) -> dict[str, object]:
    data: dict[str, object] = {}
    if job.needs:
        data["needs"] = list(job.needs)
    data["runs-on"] = RUNNER
    data["timeout-minutes"] = timeout
    if job.kind != "check":  # uv runs the environment the hash-checked install made, never re-resolving
        data["env"] = Flow(dict(NO_SYNC))
    return data


def _checks(plan: Plan, steps: Steps) -> dict[str, object]:
    checks = plan.first_checks
    include = []
    for job in checks:
        entry: dict[str, object] = {"job": job.id, "run": " && ".join(job.inv())}
        if job.flutter:
            entry["flutter"] = True
        if job.handoff:
            entry["handoff"] = True
        include.append(Flow(entry))
    any_flutter = any(j.flutter for j in checks)
    data: dict[str, object] = {"name": "${{ matrix.job }}", "runs-on": RUNNER}
    data["timeout-minutes"] = max(j.timeout for j in checks)
    data["permissions"] = Flow({"contents": "read", "security-events": "write"})
    data["strategy"] = {"fail-fast": False, "matrix": {"include": include}}
    body: list[object] = [steps.checkout(), steps.uv(), steps.cache()]
    if any_flutter:
        body.append(_flutter())
    run: dict[str, object] = {"run": "${{ matrix.run }}"}
    if any_flutter:
        # Where the SDK is installed a missing one is an error; the repository variable CICD_REQUIRE_FLUTTER=0 lets
        # a runner without it (a self-hosted one, or act on a laptop) run the offline half and say the rest did not run.
        run["env"] = Flow(
            {"CICD_REQUIRE_FLUTTER": "${{ matrix.flutter && (vars.CICD_REQUIRE_FLUTTER || '1') || '0' }}"}
        )
    body.append(run)
    if any(j.handoff for j in checks):
        # What a later check takes (`handoff-<check>`), kept only when the check passed.
        body.append(
            _one_line(
                "actions/upload-artifact",
                {"name": "handoff-${{ matrix.job }}", "path": f"{HANDOFF_DIR}/", "if-no-files-found": "error"},
                **{"if": "matrix.handoff"},
            )
        )
    # No `category` input: the runner gives every SARIF run its own (automationDetails.id, cicd/reports.py), as
    # code scanning rejects two runs of one tool in one category (the two gitleaks scans of secrets-scan).
    body.append(
        {
            "if": f"always() && hashFiles('{SARIF_DIR}/*.sarif') != '' && {SAME_REPO}",
            "uses": _uses("github/codeql-action/upload-sarif"),
            "with": Flow({"sarif_file": SARIF_DIR}),
        }
    )
    body.append(
        {
            "if": "always()",
            "uses": _uses("actions/upload-artifact"),
            "with": Flow({"name": "reports-${{ matrix.job }}", "path": f"{RUNS_DIR}/", **IGNORE_EMPTY}),
        }
    )
    data["steps"] = body
    return data


def _later_check(plan: Plan, job: Job, steps: Steps) -> dict[str, object]:
    """A check that runs after the checks it needs (``coverage``), with the hand-offs it takes."""
    data = _base(job, timeout=job.timeout)
    data["permissions"] = Flow({"contents": "read"})
    body: list[object] = [steps.checkout(), steps.uv(), steps.cache(), *steps.take(plan, job)]
    body.append({"run": "\n".join(job.inv())})
    body.append(steps.reports())
    data["steps"] = body
    return data


def _build(plan: Plan, job: Job, steps: Steps) -> dict[str, object]:
    data = _base(job, timeout=job.timeout)
    data["if"] = ON_MAIN
    data["permissions"] = Flow({"contents": "read"})
    body: list[object] = [steps.checkout(), steps.uv(), steps.locked()]
    if job.flutter:
        body.append(_flutter(matrix=False))
    if job.downloads:
        body.append(steps.download(plan, job))
    run: dict[str, object] = {"run": "\n".join(job.inv())}
    if job.flutter:
        run["env"] = Flow({"CICD_REQUIRE_FLUTTER": "1"})
    body.append(run)
    body.append(steps.upload(job))
    body.append(steps.reports())
    data["steps"] = body
    return data


def _credentials(plan: Plan, env: str, steps: Steps) -> object:
    """OIDC login with the environment's role, only when the pipeline targets AWS (``CICD_TARGET``). One shared
    step (the job names the session) when every environment has the same region."""
    regions = {plan.region(e) for e in plan.environments}
    step: dict[str, object] = {
        "if": f"env.{TARGET_VAR} == '{TARGET}'",
        "uses": _uses("aws-actions/configure-aws-credentials"),
        "with": {
            "role-to-assume": "${{ vars.AWS_ROLE_ARN }}",
            "role-session-name": "gh-${{ github.run_id }}-${{ github.run_attempt }}-${{ github.job }}",
            "aws-region": plan.region(env),
            "mask-aws-account-id": True,
        },
    }
    return steps._anchor("credentials", step) if len(regions) == 1 else step


def _approval(plan: Plan, job: Job, steps: Steps) -> dict[str, object]:
    """Shows what the environment would get (``inv change-set``); the next job's environment reviewers are the gate."""
    env = job.env or ""
    data = _base(job, timeout=job.timeout)
    data["if"] = ON_MAIN
    # Its own environment: the change set is read with the read-only role (its AWS_ROLE_ARN), and the reviewers
    # of `prod` hold the next job, not this one (they approve after seeing the change set).
    data["environment"] = job.identity
    data["permissions"] = Flow({"contents": "read", "id-token": "write"})
    body: list[object] = [steps.checkout(), steps.uv(), steps.locked()]
    if job.downloads:
        body.append(steps.download(plan, job))
    body.append(_credentials(plan, env, steps))
    body.append({"run": "\n".join(job.inv())})
    body.append(steps.reports())
    data["steps"] = body
    return data


def _deploy(plan: Plan, job: Job, steps: Steps) -> dict[str, object]:
    if job.env is None:  # deploy jobs have an environment
        raise ConfigError("pipeline model: deploy jobs have an environment, but job.env is missing")
    env = job.env
    data = _base(job, timeout=job.timeout)
    data["if"] = ON_MAIN
    data["environment"] = env
    data["concurrency"] = Flow({"group": f"deploy-{env}", "cancel-in-progress": False})
    data["permissions"] = Flow({"contents": "read", "id-token": "write"})
    body: list[object] = [
        Flow({"name": "Branch guard", "run": guard("GITHUB_REF_NAME")}),
        steps.checkout(),
        steps.uv(),
        steps.locked(),
    ]
    if job.downloads:
        body.append(steps.download(plan, job))
    body.append(_credentials(plan, env, steps))
    body.append({"run": "\n".join(job.inv())})
    body.append(steps.upload(job))
    body.append(steps.reports())
    data["steps"] = body
    return data


def render(plan: Plan) -> list[Rendered]:
    counting = Steps()
    _document(plan, counting)
    doc = _document(plan, Steps({name for name, count in counting.uses.items() if count > 1}))
    extra: tuple[str, ...] = (
        "Per environment (Settings > Environments): variable AWS_ROLE_ARN (its role from infra/ci), deployment",
        f"branches = {MAIN_BRANCH}. CICD_TARGET is aws unless the repository variable CICD_TARGET says otherwise.",
        "OIDC sub repo:<owner>/<repo>:environment:<env>; id-token: write only where a job logs in to AWS. Only",
        f"checks restore caches (scoped per branch: {MAIN_BRANCH} never restores a pull request's); builds and",
        "environment jobs restore none and install requirements.lock with every hash checked.",
    )
    if any(j.kind == "approval" for j in plan.jobs):
        gated = ", ".join(j.env or "" for j in plan.jobs if j.gated)
        extra += (
            f"Approval: required reviewers on {gated} (named people or teams; tick 'Prevent self-review'; private",
            "repos need a plan offering them). <env>-change-set holds AWS_ROLE_ARN: the read-only change-set role.",
        )
    text = dump(doc, header=header("GitHub Actions", PATH, plan, extra=extra), gap_keys=("jobs",))
    return [Rendered(PATH, _resolve_anchors(text))]


def _document(plan: Plan, steps: Steps) -> dict[str, object]:
    jobs: dict[str, object] = {}
    if plan.first_checks:
        jobs["checks"] = _checks(plan, steps)
    check_ids = {j.id for j in plan.first_checks}
    for job in plan.order(plan.jobs):
        if job.id in check_ids:
            continue
        renderer = {"check": _later_check, "build": _build, "approval": _approval, "deploy": _deploy}[job.kind]
        data = renderer(plan, job, steps)
        if "needs" in data:
            needs = [n for n in job.needs if n not in check_ids]
            if len(needs) < len(job.needs):
                needs.insert(0, "checks")
            data["needs"] = needs
        jobs[job.id] = data
    filters = inputs_with(plan, "pr", PATH)
    main_filters = inputs_with(plan, "main", PATH)
    doc: dict[str, object] = {
        "name": "pipeline",
        "on": {
            "pull_request": Flow({"branches": [MAIN_BRANCH], "paths": filters}),
            "push": Flow({"branches": [MAIN_BRANCH], "paths": main_filters}),
            "workflow_dispatch": {},
        },
        "permissions": {},
        # A pull request's newer push cancels its older run; main runs are never grouped here (a run waiting for
        # prod reviewers must not hold or cancel later ones): its environment jobs serialize per environment.
        "concurrency": Flow(
            {
                "group": "${{ github.workflow }}-"
                "${{ github.event_name == 'pull_request' && github.ref || github.run_id }}",
                "cancel-in-progress": "${{ github.event_name == 'pull_request' }}",
            }
        ),
        # The target, set once: aws, unless the repository variable CICD_TARGET says otherwise (act on a laptop
        # runs this file against the embedded AWS with --var CICD_TARGET=local).
        "env": Flow(
            {
                **{k: f"${{{{ vars.{k} || '{v}' }}}}" for k, v in TARGET_VARS.items()},
                "CICD_BUILD_COMMIT": "${{ github.sha }}",
                "FORCE_COLOR": "1",
                "UV_PYTHON": "3.11",
            }
        ),
        "defaults": Flow({"run": {"shell": "bash"}}),
        "jobs": jobs,
    }
    return doc


def _upload_handoff(upload: dict[str, Any], job_id: str, job_expr: str = "${{ github.job }}") -> Handoff:
    """What ``actions/upload-artifact`` keeps: its paths, relative to their least common ancestor folder."""
    paths = tuple(str(upload.get("path", "")).split())
    parts = [PurePosixPath(p.split("*")[0].rstrip("/")).parts for p in paths]
    common: list[str] = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    single_file = len(paths) == 1 and "*" not in paths[0] and not paths[0].endswith("/")
    root = PurePosixPath(*common).parent if single_file and common else PurePosixPath(*common) if common else None
    name = str(upload["name"]).replace(job_expr, job_id)
    return Handoff(name, paths, root=str(root or "."))


def _resolve_anchors(text: str) -> str:
    """Turn the ``"&name":`` keys and ``"*name"`` items written by the YAML writer into real anchors/aliases."""
    out: list[str] = []
    for line in text.splitlines():
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith("- ANCHOR::") and stripped.endswith(":"):
            out.append(f"{indent}- &{stripped[10:-1]}")
            continue
        if stripped.startswith("- ANCHOR::") and ": {" in stripped:  # a one-line step
            name, _, rest = stripped[10:].partition(": ")
            out.append(f"{indent}- &{name} {rest}")
            continue
        if stripped.startswith("- ALIAS::"):
            out.append(f"{indent}- *{stripped[9:]}")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def _restores(steps: list[dict[str, Any]]) -> tuple[str, ...]:
    """The caches a job's steps restore: ``actions/cache`` paths, flutter-action's ``cache: true``, and setup-uv's
    cache should it come back (on unless ``enable-cache`` is false: its default turns it on for hosted runners)."""
    found: list[str] = []
    for step in steps:
        uses, given = str(step.get("uses", "")), step.get("with") or {}
        if uses.startswith(("actions/cache@", "actions/cache/restore@")):
            found += str(given.get("path", "")).split()
        elif uses.startswith("astral-sh/setup-uv@") and given.get("enable-cache", "auto") not in (False, "false"):
            found.append("setup-uv cache")
        elif uses.startswith("subosito/flutter-action@") and given.get("cache") in (True, "true"):
            found.append("flutter-action cache")
    return tuple(found)


def _role_env(raw: dict[str, Any], creds: dict[str, Any] | None) -> str | None:
    """The environment whose ``AWS_ROLE_ARN`` the job assumes (an environment variable: ``vars.AWS_ROLE_ARN``)."""
    if not creds or "vars.AWS_ROLE_ARN" not in str(creds.get("role-to-assume", "")):
        return None
    env = raw.get("environment")
    return str(env.get("name") if isinstance(env, dict) else env) if env else None


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read the workflow back (see :mod:`cicd.adapters.facts`)."""
    text = files[PATH]
    doc = yamltext.load(text)
    jobs: list[JobFacts] = []
    raw_jobs: dict[str, dict[str, Any]] = doc.get("jobs", {})
    expanded: dict[str, list[str]] = {}
    for job_id, raw in raw_jobs.items():
        steps = raw.get("steps", [])
        uses = [str(s.get("uses", "")) for s in steps]
        script = text_of([s.get("run", "") for s in steps])
        condition = str(raw.get("if", ""))
        triggers = {"main"} if "github.event_name != 'pull_request'" in condition else {"pr", "main"}
        restores = _restores(steps)
        caches = UV_CACHE in restores and any(
            u.startswith("actions/cache@") and "hashFiles(" in str(s.get("with", {}).get("key", ""))
            for u, s in zip(uses, steps, strict=True)
        )
        step_cache = any(
            u.startswith("actions/cache@")
            and STEP_CACHE in str(s.get("with", {}).get("path", "")).split()
            and s.get("with", {}).get("restore-keys")
            for u, s in zip(uses, steps, strict=True)
        )
        keeps = any(
            u.startswith("actions/upload-artifact@")
            and str(s.get("with", {}).get("path", "")).startswith(RUNS_DIR)
            and s.get("if") == "always()"
            for u, s in zip(uses, steps, strict=True)
        )
        creds = next(
            (s.get("with", {}) for u, s in zip(uses, steps, strict=True) if "configure-aws-credentials@" in u), None
        )
        permissions = raw.get("permissions", {})
        oidc = creds is not None and permissions.get("id-token") == "write" and creds.get("role-to-assume")
        concurrency = raw.get("concurrency") or {}
        common: dict[str, Any] = {
            "timeout": raw.get("timeout-minutes"),
            "triggers": triggers,
            "caches": bool(caches),
            "step_cache": step_cache,
            "reports": keeps,  # GitHub has no JUnit UI: the runner writes summary.md to the job summary
            "keeps_run_folder": keeps,
            "downloads": any(u.startswith("actions/download-artifact@") for u in uses),
            "uploads": any(
                u.startswith("actions/upload-artifact@") and "artifact-" in str(s.get("with", {}).get("name", ""))
                for u, s in zip(uses, steps, strict=True)
            ),
        }
        common["receives"] = [
            Handoff(str(s["with"]["name"]), dest=str(s["with"].get("path", ".")))
            for u, s in zip(uses, steps, strict=True)
            if u.startswith("actions/download-artifact@") and s.get("with", {}).get("name")
        ]
        common["hands_on"] = [
            _upload_handoff(s["with"], job_id)
            for u, s in zip(uses, steps, strict=True)
            if u.startswith("actions/upload-artifact@") and s.get("if", "success()") == "success()"
        ]
        common["variables"] = {str(k): str(v) for k, v in {**doc.get("env", {}), **raw.get("env", {})}.items()}
        common["restores"] = restores
        common["trusted_cache"] = True  # GitHub scopes caches per branch: main restores only main's entries
        common["locked"] = installs_locked(script, common["variables"])
        matrix = raw.get("strategy", {}).get("matrix", {}).get("include")
        if matrix:
            expanded[job_id] = [str(e["job"]) for e in matrix]
            for entry in matrix:
                leg = JobFacts(
                    id=str(entry["job"]), commands=inv_calls([str(entry["run"])]), script=str(entry["run"]), **common
                )
                leg.hands_on = [
                    *leg.hands_on,
                    *(
                        _upload_handoff(s["with"], leg.id, "${{ matrix.job }}")
                        for u, s in zip(uses, steps, strict=True)
                        if u.startswith("actions/upload-artifact@")
                        and s.get("if") == "matrix.handoff"
                        and entry.get("handoff") is True
                    ),
                ]
                jobs.append(leg)
            continue
        jobs.append(
            JobFacts(
                id=job_id,
                commands=inv_calls(script.splitlines()),
                needs=[str(n) for n in as_list(raw.get("needs"))],
                env=raw.get("environment") if isinstance(raw.get("environment"), str) else None,
                lock=concurrency.get("group") if concurrency.get("cancel-in-progress") is False else None,
                guard=f'test "${{GITHUB_REF_NAME:-}}" = {MAIN_BRANCH}' in script,
                credentials="oidc" if oidc else None,
                credential_env=_role_env(raw, creds),
                session_names=[str(creds["role-session-name"])] if creds and "role-session-name" in creds else [],
                script=script,
                **common,
            )
        )
    for job in jobs:
        job.needs = [m for n in job.needs for m in expanded.get(n, [n])]
    approvals = {j.id for j in jobs if j.commands and j.commands[0].startswith("change-set")}
    for job in jobs:
        # The gate is the environment's required reviewers, set in the repository settings (see the header).
        job.gate = bool(job.env) and any(n in approvals for n in job.needs) and "required reviewers" in text
        reviewed = re.search(r"required reviewers on ([\w, -]+) \(named people or teams", text)
        if job.gate and reviewed and job.env in reviewed.group(1).split(", "):
            job.approvers = f"required reviewers of the environment {job.env} (a setting; see the header)"
    trigger_on = doc.get("on", {})
    paths = trigger_on.get("pull_request", {}).get("paths") if isinstance(trigger_on, dict) else None
    return AdapterFacts("github", dict(files), jobs, path_filters=paths, main_file=PATH)
