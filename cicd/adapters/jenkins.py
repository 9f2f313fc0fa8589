"""Jenkins: a declarative ``Jenkinsfile`` for a multibranch pipeline.

Stages follow the plan's dependency levels (``parallel`` inside a level). Pull-request builds (``PR-*`` branches)
run the checks; stages after them carry ``when { branch 'main' }``. Each stage runs in a pinned Docker image;
``stash``/``unstash`` carry ``.cicd/artifact/``; the JUnit plugin reads the reports; the Job Cacher plugin keeps
lock-file-keyed caches and a step cache per stage (a branch without one starts from main's); ``lock`` (Lockable
Resources) and ``disableConcurrentBuilds`` keep one deploy per environment. Jenkins has no OIDC: each environment
stage runs on an agent labelled ``aws-<env>`` whose instance role is the environment's deploy role (``infra/ci``),
so no key is ever stored. The gate is an ``input`` stage.
"""

from __future__ import annotations

import re
from typing import Final

from cicd.adapters import pins
from cicd.adapters.bitbucket import levels
from cicd.adapters.common import Rendered, guard, header
from cicd.adapters.facts import AdapterFacts, JobFacts, inv_calls
from cicd.adapters.plan import APPROVAL_WAIT_MINUTES, ARTIFACT_DIR, JUNIT_GLOB, MAIN_BRANCH, STEP_CACHE, Job, Plan

PATH: Final = "Jenkinsfile"
AGENT_LABEL: Final = "aws-{env}"


def _q(text: str) -> str:
    """A Groovy single-quoted string (no interpolation)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _stage(plan: Plan, job: Job, indent: int) -> list[str]:
    pad = " " * indent
    image = pins.image("instrumentisto/flutter") if job.flutter else pins.image("python")
    out = [f"{pad}stage({_q(job.id)}) {{"]
    if not job.on_pr:
        out.append(f"{pad}  when {{ branch {_q(MAIN_BRANCH)}; beforeAgent true }}")
    label = f"; label {_q(AGENT_LABEL.format(env=job.env))}" if job.kind == "deploy" else ""
    out.append(f"{pad}  agent {{ docker {{ image {_q(image)}; args '-u root'{label} }} }}")
    options = [f"timeout(time: {job.timeout}, unit: 'MINUTES')"]
    if job.kind == "deploy":
        options.append(f"lock(resource: {_q('deploy-' + str(job.env))})")
    out.append(f"{pad}  options {{ {'; '.join(options)} }}")
    env = []
    if job.flutter:
        env.append("CICD_REQUIRE_FLUTTER = '1'")
        env.append("PIP_BREAK_SYSTEM_PACKAGES = '1'")
    if job.kind == "deploy":
        env.append(f"AWS_REGION = {_q(plan.region(job.env or ''))}")
    if env:
        out.append(f"{pad}  environment {{ {'; '.join(env)} }}")
    out.append(f"{pad}  steps {{")
    if job.kind == "deploy":
        out.append(f"{pad}    sh {_q(guard('BRANCH_NAME'))}")
    builds = [j.id for j in plan.jobs if j.kind == "build" and j.id in plan.upstream(job)]
    out.extend(f"{pad}    unstash {_q('artifact-' + b)}" for b in builds)
    if job.flutter:
        out.append(f"{pad}    sh 'apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null'")
    out.append(f"{pad}    withCaches {{")
    out.append(f"{pad}      sh {_q(pins.uv_install())}")
    out.extend(f"{pad}      sh {_q(inv)}" for inv in job.inv())
    out.append(f"{pad}    }}")
    if job.uploads:
        out.append(f"{pad}    stash name: {_q('artifact-' + job.id)}, includes: {_q(ARTIFACT_DIR + '/**')}")
    out.append(f"{pad}  }}")
    out.append(f"{pad}  post {{ always {{ reports() }} }}")
    out.append(f"{pad}}}")
    return out


def _gate(job: Job, indent: int) -> list[str]:
    pad = " " * indent
    return [
        f"{pad}stage({_q('gate-' + str(job.env))}) {{",
        f"{pad}  when {{ branch {_q(MAIN_BRANCH)} }}",
        f"{pad}  agent none",
        f"{pad}  options {{ timeout(time: {APPROVAL_WAIT_MINUTES}, unit: 'MINUTES') }}",
        f"{pad}  steps {{ input message: {_q('Review the change set above, then deploy to ' + str(job.env) + '?')}, "
        "ok: 'Deploy' }",
        f"{pad}}}",
    ]


def render(plan: Plan) -> list[Rendered]:
    body: list[str] = []
    for group in levels(plan, plan.jobs):
        for job in group:
            if job.gated:
                body.extend(_gate(job, 4))
        if len(group) == 1:
            body.extend(_stage(plan, group[0], 4))
            continue
        name = "checks" if all(j.kind == "check" for j in group) else "+".join(j.id for j in group)
        body.append(f"    stage({_q(name)}) {{")
        if not all(j.on_pr for j in group):
            body.append(f"      when {{ branch {_q(MAIN_BRANCH)} }}")
        body.append("      parallel {")
        for job in group:
            body.extend(_stage(plan, job, 8))
        body.append("      }")
        body.append("    }")
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
    lines = [
        "// Helpers: the Job Cacher plugin's lock-file-keyed caches and step cache, and the reports every stage keeps.",
        f"def withCaches(Closure body) {{ cache(maxCacheSize: 2048, defaultBranch: {_q(MAIN_BRANCH)}, "
        f"caches: [{caches}]) {{ body() }} }}",
        "",
        "def reports() {",
        f"  junit allowEmptyResults: true, testResults: {_q(JUNIT_GLOB)}",
        "  archiveArtifacts artifacts: '.cicd/runs/**', allowEmptyArchive: true",
        "}",
        "",
        "pipeline {",
        "  agent none",
        "  options { disableConcurrentBuilds(); buildDiscarder(logRotator(numToKeepStr: '50')) }",
        '  environment { UV_CACHE_DIR = "${env.WORKSPACE}/.cache/uv"; CICD_BUILD_COMMIT = "${env.GIT_COMMIT}" }',
        "  stages {",
        *body,
        "  }",
        "}",
    ]
    extra = (
        "Needs the Docker Pipeline, Lockable Resources, JUnit and Job Cacher plugins, and agents labelled",
        "aws-<env> whose instance role is that environment's deploy role (infra/ci): Jenkins has no OIDC.",
    )
    text = header("Jenkins", PATH, plan, comment="//", extra=extra) + "\n".join(lines) + "\n"
    return [Rendered(PATH, text)]


STAGE_RE: Final = re.compile(r"^(\s*)stage\('([^']+)'\) \{")


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


def facts(files: dict[str, str]) -> AdapterFacts:
    """Read the Jenkinsfile back, stage by stage (see :mod:`cicd.adapters.facts`)."""
    text_all = files[PATH]
    caches_defined = "cacheValidityDecidingFile" in text_all and "def withCaches" in text_all
    helper = next((line for line in text_all.splitlines() if line.startswith("def withCaches")), "")
    step_cache = f"path: {_q(STEP_CACHE)}" in helper and f"defaultBranch: {_q(MAIN_BRANCH)}" in helper
    reports_defined = "junit " in text_all and "archiveArtifacts artifacts: '.cicd/runs/**'" in text_all
    serial = "disableConcurrentBuilds()" in text_all
    jobs: list[JobFacts] = []
    earlier: list[str] = []
    gate_pending = False
    for _, name, block in _blocks(text_all.splitlines()):
        head = "\n".join(block[:3])
        if "input message:" in "\n".join(block):
            gate_pending = True
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
            main_only = group_main_only or f"when {{ branch '{MAIN_BRANCH}'" in text
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
                    credentials="role" if label else None,
                    gate=gate_pending,
                    reports=reports_defined and "reports()" in text,
                    caches=caches_defined and "withCaches {" in text,
                    step_cache=step_cache and "withCaches {" in text,
                    keeps_run_folder=reports_defined and "reports()" in text,
                    downloads="unstash " in text,
                    uploads="stash name:" in text,
                    script=text,
                )
            )
            level.append(leaf)
        earlier = earlier + level
        gate_pending = False
    return AdapterFacts("jenkins", dict(files), jobs, path_filters=None, main_file=PATH)
