"""Jenkins: a declarative ``Jenkinsfile`` for a multibranch pipeline.

Stages follow the plan's dependency levels (``parallel`` inside a level). Pull-request builds (``PR-*`` branches) run
the checks (the coverage stage, after the test tiers, among them); each main-only stage, or a level of them only,
carries ``when { branch 'main' }``. ``environment { CICD_TARGET = 'aws' }`` is set once, at
the pipeline level. Each stage runs in a pinned Docker image; ``stash``/``unstash`` hand ``.cicd/artifact/`` on by name
(the Flutter build's to ``package``, the package's to dev, each environment's, with its evidence, to the next), and the
test tiers' hand-offs (``.cicd/handoff/<step>/``) to the coverage stage; the JUnit plugin reads the reports; the Job
Cacher plugin keeps lock-file-keyed caches and a step cache per stage (a branch without one starts from main's);
``lock`` (Lockable Resources) and ``disableConcurrentBuilds`` keep one deploy per environment. AWS credentials: the
OpenID Connect Provider plugin's id token (a file credential bound with ``withCredentials``) as the web identity of the
environment's role, only when ``CICD_TARGET`` is ``aws``; the only way in (no instance-role fallback; ``aws-<env>``
labels pick the agents). With the approval switch on, the approval stage shows the change set with the credentials of
``prod-change-set`` (audience ``apk-pipeline-prod-change-set``: the read-only role, which prod's role refuses) and an
``input`` stage with a ``submitter`` holds the gated environment."""

from __future__ import annotations

import re
from typing import Final

from cicd.adapters import pins
from cicd.adapters.common import Rendered, guard, header, installs_locked, locked_install
from cicd.adapters.facts import AdapterFacts, Handoff, JobFacts, inv_calls
from cicd.adapters.plan import (
    APPROVAL_WAIT_MINUTES,
    ARTIFACT_DIR,
    HANDOFF_DIR,
    JUNIT_GLOB,
    MAIN_BRANCH,
    RUNS_DIR,
    STEP_CACHE,
    TARGET,
    TARGET_VAR,
    TARGET_VARS,
    Job,
    Plan,
)
from cicd.errors import ConfigError

PATH: Final = "Jenkinsfile"
AGENT_LABEL: Final = "aws-{env}"
OIDC_CREDENTIAL: Final = "aws-oidc-{env}"
ROLE_CREDENTIAL: Final = "aws-role-{env}"
APPROVERS: Final = "{env}-approvers"
AUDIENCE: Final = "apk-pipeline-<env>"
STALE: Final = f"{ARTIFACT_DIR} .cicd/artifacts {RUNS_DIR} {HANDOFF_DIR}"
"""What an earlier build may have left in a reused agent workspace: the hand-offs, the artifact store, the runs."""


def _q(text: str) -> str:
    """A Groovy single-quoted string (no interpolation)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _stage(plan: Plan, job: Job, indent: int) -> list[str]:
    pad = " " * indent
    image = pins.image("instrumentisto/flutter") if job.flutter else pins.image("python")
    out = [f"{pad}stage({_q(job.id)}) {{"]
    if not job.on_pr:
        out.append(f"{pad}  when {{ branch {_q(MAIN_BRANCH)}; beforeAgent true }}")
    label = f"; label {_q(AGENT_LABEL.format(env=job.env))}" if job.credentials else ""
    out.append(f"{pad}  agent {{ docker {{ image {_q(image)}; args '-u root'{label} }} }}")
    options = [f"timeout(time: {job.timeout}, unit: 'MINUTES')"]
    if job.kind == "deploy":
        options.append(f"lock(resource: {_q('deploy-' + str(job.env))})")
    out.append(f"{pad}  options {{ {'; '.join(options)} }}")
    env = []
    if job.flutter:
        env.append("CICD_REQUIRE_FLUTTER = '1'")
        env.append("PIP_BREAK_SYSTEM_PACKAGES = '1'")
    if job.credentials:
        env.append(f"AWS_REGION = {_q(plan.region(job.env or ''))}")
    if env:
        out.append(f"{pad}  environment {{ {'; '.join(env)} }}")
    out.append(f"{pad}  steps {{")
    if job.credentials:
        out.append(f"{pad}    sh {_q(guard('BRANCH_NAME'))}")
    out.append(f"{pad}    sh {_q('rm -rf ' + STALE)}")
    out.extend(f"{pad}    unstash {_q(name)}" for name in _unstashed(plan, job))
    if job.flutter:
        out.append(f"{pad}    sh 'apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null'")
    # Checks keep the Job Cacher's caches; builds and environment stages restore none (hash-locked install).
    installs = [pins.uv_install()] if job.kind == "check" else [pins.uv_install(), locked_install()]
    out.append(f"{pad}    {'withCaches' if job.kind == 'check' else 'withLocked'} {{")
    out.extend(f"{pad}      sh {_q(command)}" for command in installs)
    if job.credentials:
        out.append(f"{pad}      withAws({_q(job.identity)}) {{")
        out.extend(f"{pad}        sh {_q(inv)}" for inv in job.inv())
        out.append(f"{pad}      }}")
    else:
        out.extend(f"{pad}      sh {_q(inv)}" for inv in job.inv())
    out.append(f"{pad}    }}")
    stashes = [(job.artifact_name, f"{ARTIFACT_DIR}/**")] if job.uploads else []
    stashes += [(job.handoff_name, ",".join(f"{p}/**" for p in job.handoff_paths))] if job.handoff else []
    out.extend(
        f"{pad}    stash name: {_q(name)}, includes: {_q(includes)}, useDefaultExcludes: false"
        for name, includes in stashes
    )
    out.append(f"{pad}  }}")
    out.append(f"{pad}  post {{ always {{ reports() }} }}")
    out.append(f"{pad}}}")
    return out


def _unstashed(plan: Plan, job: Job) -> list[str]:
    """What ``job`` unstashes: the artifact of the job that hands it on, and the hand-offs of the checks it takes."""
    names = [plan.job(giver).handoff_name for giver in job.takes]
    if not job.downloads:
        return names
    source = plan.handed_from(job)
    if source is None:
        raise ConfigError(f"pipeline model: {job.id} takes the artifact, but no job upstream hands it on")
    return [source.artifact_name, *names]


def _gate(plan: Plan, job: Job, indent: int) -> list[str]:
    """The manual gate before ``job``: an ``input`` only the environment's approvers (and administrators) answer,
    on no agent (no executor is held while it waits)."""
    pad = " " * indent
    approval = plan.approval_for(job)
    shown = f"the change set shown by {approval.id}" if approval else "the change set"
    message = f"Review {shown}, then deploy to {job.env}?"
    return [
        f"{pad}stage({_q('gate-' + str(job.env))}) {{",
        f"{pad}  when {{ branch {_q(MAIN_BRANCH)} }}",
        f"{pad}  agent none",
        f"{pad}  options {{ timeout(time: {APPROVAL_WAIT_MINUTES}, unit: 'MINUTES') }}",
        f"{pad}  steps {{ input message: {_q(message)}, ok: 'Deploy', "
        f"submitter: {_q(APPROVERS.format(env=job.env))} }}",
        f"{pad}}}",
    ]


def _helpers() -> list[str]:
    caches = ", ".join(
        f"arbitraryFileCache(path: {_q(path)}, cacheValidityDecidingFile: {_q(lock)})"
        for path, lock in (
            (".cache/uv", "requirements.lock"),
            (".cicd/tools", "requirements.lock"),
            ("node_modules", "package-lock.json"),
        )
    )
    # The step cache, one per stage; a branch or pull-request job without one starts from main's (defaultBranch).
    caches += f', arbitraryFileCache(path: {_q(STEP_CACHE)}, cacheName: "steps-${{env.STAGE_NAME}}")'
    oidc, role = OIDC_CREDENTIAL.format(env="${name}"), ROLE_CREDENTIAL.format(env="${name}")
    return [
        "// Helpers. Each stage first removes what an earlier build may have left in its reused agent workspace (the",
        "// hand-off, the artifact store, the run folders), so it holds only what it unstashes. withCaches: the Job",
        "// Cacher plugin's lock-file-keyed caches and step cache, with uv's cache folder and the commit (both known",
        "// only inside a stage's agent).",
        "def withCaches(Closure body) {",
        '  withEnv(["UV_CACHE_DIR=${env.WORKSPACE}/.cache/uv", "CICD_BUILD_COMMIT=${env.GIT_COMMIT}"]) {',
        f"    cache(maxCacheSize: 2048, defaultBranch: {_q(MAIN_BRANCH)}, caches: [{caches}]) {{ body() }}",
        "  }",
        "}",
        "// withLocked: builds and environment stages restore no cache; uv runs what requirements.lock installed.",
        "def withLocked(Closure body) {",
        '  withEnv(["UV_NO_SYNC=1", "CICD_BUILD_COMMIT=${env.GIT_COMMIT}"]) { body() }',
        "}",
        "",
        f"// AWS credentials for environment `name`, only when {TARGET_VAR} is {TARGET}: the OpenID Connect Provider",
        "// plugin's id token (a file, audience apk-pipeline-<env>) as the web identity of the environment's role.",
        "def withAws(String name, Closure body) {",
        f"  if (env.{TARGET_VAR} != {_q(TARGET)}) {{ return body() }}",
        f"  withCredentials([file(credentialsId: \"{oidc}\", variable: 'AWS_WEB_IDENTITY_TOKEN_FILE'),",
        f"                   string(credentialsId: \"{role}\", variable: 'AWS_ROLE_ARN')]) {{",
        '    withEnv(["AWS_ROLE_SESSION_NAME=jenkins-${env.BUILD_NUMBER}-${name}"]) { body() }',
        "  }",
        "}",
        "",
        "def reports() {",
        f"  junit allowEmptyResults: true, testResults: {_q(JUNIT_GLOB)}",
        f"  archiveArtifacts artifacts: {_q(RUNS_DIR + '/**')}, allowEmptyArchive: true",
        "}",
    ]


def render(plan: Plan) -> list[Rendered]:
    body: list[str] = []
    for group in plan.levels(plan.jobs):
        for job in group:
            if job.gated:
                body.extend(_gate(plan, job, 4))
        if len(group) == 1:
            body.extend(_stage(plan, group[0], 4))
            continue
        name = "checks" if all(j.kind == "check" for j in group) else "+".join(j.id for j in group)
        body.append(f"    stage({_q(name)}) {{")
        if not any(j.on_pr for j in group):  # else each main-only stage of the group says so itself
            body.append(f"      when {{ branch {_q(MAIN_BRANCH)} }}")
        body.append("      parallel {")
        for job in group:
            body.extend(_stage(plan, job, 8))
        body.append("      }")
        body.append("    }")
    variables = "; ".join(f"{k} = {_q(v)}" for k, v in TARGET_VARS.items())
    lines = [
        *_helpers(),
        "",
        "pipeline {",
        "  agent none",
        "  options { disableConcurrentBuilds(); buildDiscarder(logRotator(numToKeepStr: '50')) }",
        f"  environment {{ {variables} }}",
        "  stages {",
        *body,
        "  }",
        "}",
    ]
    extra = [
        "Needs the Docker Pipeline, Lockable Resources, JUnit, Job Cacher, Credentials Binding and OpenID Connect",
        "Provider plugins. Per environment, in this pipeline's folder (credentials scoped to it, not global):",
        f"{OIDC_CREDENTIAL.format(env='<env>')} (OpenID Connect id token as file, audience {AUDIENCE}) and",
        f"{ROLE_CREDENTIAL.format(env='<env>')} (secret text: the ARN of the environment's role, which trusts the",
        "Jenkins issuer for that audience and sub = the main branch job's URL); agents labelled aws-<env> (no",
        "instance role: OIDC is the only way in). Caches (Job Cacher, per branch job; a branch falls back to",
        f"{MAIN_BRANCH}'s, {MAIN_BRANCH} reads only its own): checks only; builds and environment stages restore none.",
    ]
    for approval in (j for j in plan.jobs if j.kind == "approval"):
        extra.append(
            f"Approval stage {approval.id}: credentials {OIDC_CREDENTIAL.format(env=approval.identity)} (audience "
            f"apk-pipeline-{approval.identity}) and {ROLE_CREDENTIAL.format(env=approval.identity)} (read-only role)."
        )
    gated = [j for j in plan.jobs if j.gated]
    if gated:
        names = ", ".join(APPROVERS.format(env=j.env) for j in gated)
        extra.append(f"The gate: Jenkins users or groups {names} (input submitter; administrators can always answer).")
    text = header("Jenkins", PATH, plan, comment="//", extra=tuple(extra)) + "\n".join(lines) + "\n"
    return [Rendered(PATH, text)]


STAGE_RE: Final = re.compile(r"^(\s*)stage\('([^']+)'\) \{")
ENV_RE: Final = re.compile(r"^\s*environment \{ (.*) \}$")
ASSIGN_RE: Final = re.compile(r"""(\w+) = (?:'((?:[^'\\]|\\.)*)'|"([^"]*)")""")
UNSTASH_RE: Final = re.compile(r"^\s*unstash '([^']+)'", re.MULTILINE)
STASH_RE: Final = re.compile(r"^\s*stash name: '([^']+)', includes: '([^']+)'", re.MULTILINE)


def _blocks(lines: list[str]) -> list[tuple[int, str, list[str]]]:
    """``(indent, name, lines)`` of every stage in ``lines`` whose indentation is the smallest found."""
    found: list[tuple[int, str, list[str]]] = []
    for n, line in enumerate(lines):
        match = STAGE_RE.match(line)
        if match:
            indent = len(match.group(1))
            end = next(i for i in range(n + 1, len(lines)) if lines[i] == " " * indent + "}")
            found.append((indent, match.group(2), lines[n : end + 1]))
    top = min((b[0] for b in found), default=0)
    return [b for b in found if b[0] == top]


def _helper(text: str, name: str) -> str:
    """The text of the top-level ``def name(...)`` (up to its closing brace in column 0), or ''."""
    lines = text.splitlines()
    start = next((n for n, line in enumerate(lines) if line.startswith(f"def {name}(")), None)
    if start is None:
        return ""
    end = next((n for n in range(start, len(lines)) if lines[n] == "}"), len(lines) - 1)
    return "\n".join(lines[start : end + 1])


def _cache_paths(helper: str) -> tuple[str, ...]:
    return tuple(re.findall(r"arbitraryFileCache\(path: '([^']+)'", helper))


def _variables(lines: list[str]) -> dict[str, str]:
    """The ``environment { A = 'x'; B = "y" }`` assignments among ``lines`` (single-quoted: literal)."""
    found: dict[str, str] = {}
    for line in lines:
        match = ENV_RE.match(line)
        if match:
            for key, single, double in ASSIGN_RE.findall(match.group(1)):
                found[key] = re.sub(r"\\(.)", r"\1", single) if single or not double else double
    return found


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read the Jenkinsfile back, stage by stage (see :mod:`cicd.adapters.facts`)."""
    text_all = files[PATH]
    caches_helper = _helper(text_all, "withCaches")
    caches_defined = "cacheValidityDecidingFile" in caches_helper
    step_cache = f"path: {_q(STEP_CACHE)}" in caches_helper and f"defaultBranch: {_q(MAIN_BRANCH)}" in caches_helper
    aws_helper = _helper(text_all, "withAws")
    oidc = (
        "withCredentials([file(credentialsId:" in aws_helper
        and "variable: 'AWS_WEB_IDENTITY_TOKEN_FILE'" in aws_helper
        and "variable: 'AWS_ROLE_ARN'" in aws_helper
    )
    session = re.search(r"AWS_ROLE_SESSION_NAME=([^\"]+)\"", aws_helper)
    reports_defined = "junit " in text_all and f"archiveArtifacts artifacts: '{RUNS_DIR}/**'" in text_all
    serial = "disableConcurrentBuilds()" in text_all
    top = text_all.split("\n  stages {", 1)[0].splitlines()
    pipeline_vars = _variables([line for line in top if line.startswith("  environment {")])
    jobs: list[JobFacts] = []
    earlier: list[str] = []
    gate_pending = False
    submitter = ""
    locked_helper = "UV_NO_SYNC=1" in _helper(text_all, "withLocked")
    for _, name, block in _blocks(text_all.splitlines()):
        head = "\n".join(block[:3])
        joined = "\n".join(block)
        if "input message:" in joined:
            # Without a submitter anyone who may build the job could answer: that is no approval.
            gate_pending = "submitter: '" in joined
            found = re.search(r"submitter: '([^']*)'", joined)
            submitter = found.group(1).strip() if found else ""
            continue
        inner = _blocks(block[1:])
        leaves = [(n, b) for _, n, b in inner] if inner else [(name, block)]
        group_main_only = bool(inner) and f"when {{ branch '{MAIN_BRANCH}'" in head
        level: list[str] = []
        for leaf, leaf_block in leaves:
            text = "\n".join(leaf_block)
            label = re.search(r"label '([^']+)'", text)
            lock = re.search(r"lock\(resource: '([^']+)'\)", text)
            timeout = re.search(r"timeout\(time: (\d+), unit: 'MINUTES'\)", text)
            aws = re.search(r"withAws\('([^']+)'\) \{", text)
            main_only = group_main_only or f"when {{ branch '{MAIN_BRANCH}'" in text
            uses_caches = "withCaches {" in text
            receives = [Handoff(n) for n in UNSTASH_RE.findall(text)]
            hands_on = [Handoff(n, (paths,)) for n, paths in STASH_RE.findall(text)]
            jobs.append(
                JobFacts(
                    id=leaf,
                    commands=inv_calls(text.splitlines()),
                    needs=list(earlier),
                    triggers={"main"} if main_only else {"pr", "main"},
                    env=label.group(1) if label else None,
                    lock=lock.group(1) if lock and serial else None,
                    guard=f'test "${{BRANCH_NAME:-}}" = {MAIN_BRANCH}' in text,
                    timeout=int(timeout.group(1)) if timeout else None,
                    credentials="oidc" if aws and oidc else None,
                    session_names=[session.group(1).replace("${name}", aws.group(1))] if aws and session else [],
                    gate=gate_pending,
                    reports=reports_defined and "reports()" in text,
                    caches=caches_defined and uses_caches,
                    restores=_cache_paths(caches_helper) if uses_caches else (),
                    trusted_cache=True,  # the Job Cacher keeps each branch job's caches; main reads only its own
                    locked="withLocked {" in text and locked_helper and installs_locked(text, {"UV_NO_SYNC": "1"}),
                    approvers=submitter if gate_pending else "",
                    credential_env=aws.group(1) if aws and oidc and "-${name}" in aws_helper else None,
                    step_cache=step_cache and uses_caches,
                    keeps_run_folder=reports_defined and "reports()" in text,
                    downloads=bool(receives),
                    uploads=bool(hands_on),
                    script=text,
                    receives=receives,
                    hands_on=hands_on,
                    variables={**pipeline_vars, **_variables(leaf_block)},
                )
            )
            level.append(leaf)
        earlier = earlier + level
        gate_pending = False
        submitter = ""
    return AdapterFacts("jenkins", dict(files), jobs, path_filters=None, main_file=PATH)
