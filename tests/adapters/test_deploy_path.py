"""The deploy path of seven adapters, read back from the files (committed and rendered), never from the renderers'
intent (:func:`cicd.adapters.facts.deploy_path`):

* (a) no build, approval or environment job restores a cache, and each installs from ``requirements.lock`` with
  every hash checked; on ``main`` a check trusts its step cache only where ``main`` alone can write it, or verifies
  it (GitLab, CircleCI, Bitbucket);
* (b) with the approval switch on, the gate names its approvers, or (a setting only) the header says exactly what
  to configure;
* (c) only environment and approval jobs get AWS credentials, each those of its own environment (GitLab: its own
  token audience); the approval job those of ``prod-change-set`` (the read-only role), never prod's.

Each control has a breaker: the rendered text with the control removed, which the checks must catch.
"""

from __future__ import annotations

import re

import pytest

from cicd.adapters.cli import committed_facts
from cicd.adapters.facts import AdapterFacts, deploy_path, parity, properties
from cicd.adapters.plan import Plan
from cicd.adapters.registry import ADAPTERS
from tests.adapters.breakers import Breaker, drop, sub
from tests.adapters.conftest import PLANS, by_name, make_plan
from tests.conftest import ROOT

TOOLS = ("github", "gitlab", "circleci", "jenkins", "azure", "bitbucket", "codecatalyst", "codebuild")
"""Every adapter (CodeBuild's trust, project roles and cache buckets are also checked on the templates of infra/ci,
tests/adapters/test_ci_infra.py)."""

SETTING_HEADERS: dict[str, tuple[str, ...]] = {
    "github": ("required reviewers on prod", "Prevent self-review", "plan offering them"),
    "gitlab": ("protected environment prod: approval rules naming the approvers of prod", "no self-approval"),
    "circleci": ("Restrict aws-prod to the approvers' security group", "its approver may use the job's context"),
    "bitbucket": ("Deployment permissions (Premium) on each gated", "Production"),
    "codecatalyst": ("Who may approve is a project-role setting", "cannot name people"),
}
"""Where the approvers are a setting of the tool, what the header must say to configure."""


def _facts(tool: str, plan: Plan, edit: Breaker | None = None) -> AdapterFacts:
    adapter = by_name(tool)
    files = {r.path: r.text for r in adapter.render(plan)}
    if edit is not None:
        target = edit.file or adapter.main_file
        files[target] = edit.edit(files[target])
    return adapter.facts(files)


@pytest.mark.component  # the committed ci-adapters/ files
def test_only_bitbucket_keeps_shared_dependency_caches_on_main_and_says_why() -> None:
    from cicd.adapters.facts import SHARED_ON_MAIN_ACCEPTED

    assert set(SHARED_ON_MAIN_ACCEPTED) == {"bitbucket"}
    assert all(len(reason) > 80 for reason in SHARED_ON_MAIN_ACCEPTED.values())
    facts = committed_facts(ROOT, by_name("bitbucket"))
    assert facts.job("lint").shared_on_main  # read back: the limit is real, and accepted by name only


def test_every_covered_tool_is_an_adapter() -> None:
    assert set(TOOLS) <= {a.name for a in ADAPTERS}


@pytest.mark.component  # the committed ci-adapters/ files
@pytest.mark.parametrize("tool", TOOLS)
def test_the_committed_files_hold_the_deploy_path(tool: str) -> None:
    plan = make_plan("project")
    facts = committed_facts(ROOT, by_name(tool))
    assert deploy_path(plan, facts) == []
    main_only = [j for j in facts.jobs if "pr" not in j.triggers]
    assert main_only, "the main path has builds and environment jobs"
    assert all(j.restores == () and j.locked for j in main_only)
    assert all(j.credentials is None for j in facts.jobs if "pr" in j.triggers)


@pytest.mark.parametrize("plan_name", PLANS)
@pytest.mark.parametrize("tool", TOOLS)
def test_every_plan_renders_a_safe_deploy_path(tool: str, plan_name: str) -> None:
    plan = make_plan(plan_name)
    assert deploy_path(plan, _facts(tool, plan)) == []


@pytest.mark.parametrize("tool", TOOLS)
def test_checks_keep_their_caches_and_main_trusts_only_its_own_or_signed_entries(tool: str) -> None:
    facts = _facts(tool, make_plan("project"))
    checks = [j for j in facts.jobs if "pr" in j.triggers]
    assert checks and all(j.restores for j in checks)
    assert all(j.trusted_cache for j in checks if j.step_cache)


@pytest.mark.parametrize("tool", TOOLS)
def test_the_gate_names_its_approvers(tool: str) -> None:
    plan = make_plan("project-approval")
    facts = _facts(tool, plan)
    gated = [j for j in facts.jobs if j.gate]
    assert [j.env for j in gated] and all(j.approvers for j in gated)
    text = "\n".join(facts.files.values())
    for phrase in SETTING_HEADERS.get(tool, ()):
        assert phrase in text


def test_named_approvers_where_the_file_can_name_them() -> None:
    plan = make_plan("project-approval")
    assert _facts("jenkins", plan).job("prod").approvers == "prod-approvers"
    azure = _facts("azure", plan)
    assert azure.job("prod").approvers == "$(APPROVERS)"
    assert ': "${APPROVERS:?' in azure.job("approve-prod").script  # empty fails closed, before the gate


@pytest.mark.parametrize("tool", TOOLS)
def test_each_environment_job_gets_the_credentials_of_its_own_environment(tool: str) -> None:
    facts = _facts(tool, make_plan("project-approval"))
    for env in ("dev", "preprod", "prod"):
        assert facts.job(env).credentials is not None
        assert facts.job(env).credential_env == env
    # the approval job: the read-only change-set identity, never prod's deploy role
    assert facts.job("approve-prod").credentials is not None
    assert facts.job("approve-prod").credential_env == "prod-change-set"
    assert all(j.credentials is None for j in facts.jobs if j.env is None and j.id not in ("approve-prod",))


def test_gitlab_tokens_name_their_environment_and_no_check_or_build_has_one() -> None:
    text = _facts("gitlab", make_plan("project")).files[".gitlab-ci.yml"]
    for env in ("dev", "preprod", "prod"):
        assert f"id_tokens: {{AWS_ID_TOKEN: {{aud: apk-pipeline-{env}}}}}" in text
    assert "sts.amazonaws.com" not in text
    assert "environment: {name: prod, deployment_tier: production}" in text


def test_jenkins_has_no_instance_role_fallback() -> None:
    text = _facts("jenkins", make_plan("project")).files["Jenkinsfile"]
    assert "instance-role" not in text and "CICD_AWS_AUTH" not in text
    assert "audience apk-pipeline-<env>" in text and "scoped to it" in text


def test_circleci_main_checks_use_the_main_only_context_and_verify() -> None:
    facts = _facts("circleci", make_plan("project"))
    text = facts.files[".circleci/config.yml"]
    assert 'pipeline.git.branch == "main"' in text and "security group" in text
    lint = facts.job("lint")
    assert lint.variables["CICD_CACHE_VERIFY"] == "true" and lint.trusted_cache


LOCKED = (
    r"\(rm -f \.venv 2>/dev/null \|\| true\) && uv venv --quiet --allow-existing \.venv && "
    r"uv pip sync --quiet --python \.venv --require-hashes requirements\.lock"
)

# One breaker per control and tool: the edit, and the problem deploy_path must then report.
BREAKERS: dict[str, list[Breaker]] = {
    "github": [
        Breaker(
            "deploy restores the uv cache",
            sub(
                r"(\n    environment: dev\n(?:.*\n)*?      - \*checkout\n)",
                r"\1      - {uses: actions/cache@" + "0" * 40 + r", with: {path: ~/.cache/uv, key: uv}}\n",
                1,
            ),
            "restores",
        ),
        Breaker(
            "flutter build caches the SDK",
            sub(r"channel: stable, cache: false", "channel: stable, cache: true"),
            "restores",
        ),
        Breaker("no hash-locked install", sub(LOCKED, "uv sync"), "hash-locked"),
        Breaker(
            "deploy with another environment's role",
            sub(r"^    environment: dev$", "    environment: prod"),
            "credentials name",
        ),
        Breaker("no reviewers named", sub(r"required reviewers on prod", "reviewers on prod"), "no manual gate"),
        Breaker(
            "approval with prod's role",
            sub(r"^    environment: prod-change-set$", "    environment: prod"),
            "not the read-only change-set identity",
        ),
    ],
    "gitlab": [
        Breaker("deploy restores the default caches", drop(r"^  cache: \[\]$"), "restores"),
        Breaker("no hash-locked install", sub(LOCKED, "uv sync"), "hash-locked"),
        Breaker("shared audience", sub(r"aud: apk-pipeline-dev", "aud: sts.amazonaws.com"), "credentials name"),
        Breaker("no approval rules", sub(r"approval rules naming", "rules naming"), "names no approvers"),
        Breaker("main trusts unsigned entries", drop(r"CICD_CACHE_VERIFY"), "step cache"),
        Breaker(
            "approval with prod's audience",
            sub(r"aud: apk-pipeline-prod-change-set", "aud: apk-pipeline-prod"),
            "not the read-only change-set identity",
        ),
    ],
    "circleci": [
        Breaker("deploy restores caches", sub(r"- setup-locked: \{\}", "- setup: {}"), "restores"),
        Breaker("no hash-locked install", sub(LOCKED, "uv sync"), "hash-locked"),
        Breaker("main checks without verification", sub(r"cache-verify: true, ", ""), "trusts a step cache"),
        Breaker(
            "main checks restore the shared dependency caches",
            sub(r"^( +)not: << parameters.cache-verify >>$", r"\1not: false"),
            "restores dependency caches another branch can write",
        ),
        Breaker("main checks without the main context", sub(r", context: \[cicd-main\]", ""), "trusts a step cache"),
        Breaker("prod with dev's context", sub(r"context: \[aws-prod\]", "context: [aws-dev]"), "credentials name"),
        Breaker("unrestricted prod context", sub(r"Restrict aws-prod to", "Use aws-prod with"), "names no approvers"),
        Breaker(
            "approval with prod's context",
            sub(r"context: \[aws-prod-change-set\]", "context: [aws-prod]"),
            "not the read-only change-set identity",
        ),
    ],
    "jenkins": [
        Breaker("deploy restores caches", sub(r"withLocked \{\n", "withCaches {\n", 1), "restores"),
        Breaker("no hash-locked install", sub(r"UV_NO_SYNC=1", "UV_NO_SYNC=0"), "hash-locked"),
        Breaker("no submitter", sub(r", submitter: 'prod-approvers'", ""), "names no approvers"),
        Breaker("empty submitter", sub(r"submitter: 'prod-approvers'", "submitter: ''"), "names no approvers"),
        Breaker(
            "approval with prod's credentials",
            sub(r"withAws\('prod-change-set'\)", "withAws('prod')"),
            "not the read-only change-set identity",
        ),
    ],
    "azure": [
        Breaker(
            "deploy restores the uv cache",
            sub(
                r"(deployment: dev\n(?:.*\n)*?\s+- \{checkout: self, fetchDepth: \"0\"\}\n)",
                r'\1                - {task: "Cache@2", inputs: {key: uv, path: $(UV_CACHE_DIR)}}\n',
                1,
            ),
            "restores",
        ),
        Breaker("no hash-locked install", sub(LOCKED, "uv sync"), "hash-locked"),
        Breaker("gate does not fail closed", sub(r"\$\{APPROVERS:\?[^}]*\}", "${APPROVERS:-}"), "names no approvers"),
        Breaker("no approvers input", drop(r"approvers: \$\(APPROVERS\)"), "names no approvers"),
        Breaker(
            "prod logs in to dev",
            sub(r"azureSubscription: aws-prod$", "azureSubscription: aws-dev"),
            "credentials name",
        ),
        Breaker(
            "approval logs in to prod",
            sub(r"azureSubscription: aws-prod-change-set", "azureSubscription: aws-prod"),
            "not the read-only change-set identity",
        ),
    ],
    "bitbucket": [
        Breaker(
            "deploy restores caches",
            sub(r"^( +)name: dev\n", r"\g<0>\1caches: [uv]\n", 1),
            "restores",
        ),
        Breaker("no hash-locked install", sub(LOCKED, "uv sync"), "hash-locked"),
        Breaker("main trusts the shared step cache", sub(r"- &verify .*$", "- &verify true"), "trusts a step cache"),
        Breaker(
            "no deployment permissions", sub(r"Deployment permissions \(Premium\)", "Permissions"), "names no approvers"
        ),
        Breaker("oidc on a check", sub(r"^( +)name: lint\n", r"\g<0>\1oidc: true\n", 1), "credentials"),
        Breaker(
            "approval in prod's deployment",
            sub(r"deployment: prod-change-set", "deployment: prod"),
            "not the read-only change-set identity",
        ),
        Breaker(
            "approval not a deployment step (its sub names no environment)",
            sub(r"deployment: prod-change-set", "environment: prod"),
            "not the read-only change-set identity",
        ),
    ],
    "codecatalyst": [
        Breaker(
            "deploy restores a cache",
            sub(
                r"(  dev:\n(?:.*\n)*?    Timeout: 45\n)",
                r"\1    Caching:\n      FileCaching:\n        uv: {Path: /root/.cache/uv}\n",
                1,
            ),
            "restores",
            ".codecatalyst/workflows/main.yaml",
        ),
        Breaker("no hash-locked install", sub(LOCKED, "uv sync"), "hash-locked", ".codecatalyst/workflows/main.yaml"),
        Breaker(
            "no approving role",
            sub(r"Who may approve is a project-role setting", "Approve"),
            "names no approvers",
            ".codecatalyst/workflows/main.yaml",
        ),
        Breaker(
            "prod with dev's connection",
            sub(r"Name: aws-prod", "Name: aws-dev"),
            "credentials name",
            ".codecatalyst/workflows/main.yaml",
        ),
        Breaker(
            "approval with prod's role",
            sub(r"Role: apk-pipeline-codecatalyst-prod-change-set", "Role: apk-pipeline-codecatalyst-prod"),
            "not the read-only change-set identity",
            ".codecatalyst/workflows/main.yaml",
        ),
    ],
    "codebuild": [
        Breaker(
            "deploy restores a cache",
            sub(r"\Z", 'cache:\n  key: cicd-dev\n  paths: ["node_modules/**/*"]\n'),
            "restores",
            "buildspecs/dev.yml",
        ),
        Breaker("no hash-locked install", sub(LOCKED, "uv sync"), "hash-locked", "buildspecs/dev.yml"),
        Breaker(
            "dev under prod's role",
            sub(r'"environment": "dev"', '"environment": "prod"'),
            "credentials name",
            "pipeline.json",
        ),
        Breaker(
            "approval under prod's role",
            sub(r'"environment": "prod-change-set"', '"environment": "prod"'),
            "not the read-only change-set identity",
            "pipeline.json",
        ),
    ],
}


@pytest.mark.parametrize(
    ("tool", "breaker"),
    [(tool, b) for tool in TOOLS for b in BREAKERS[tool]],
    ids=[f"{tool}-{b.name}" for tool in TOOLS for b in BREAKERS[tool]],
)
def test_removing_a_control_is_caught(tool: str, breaker: Breaker) -> None:
    plan = make_plan("project-approval")
    assert deploy_path(plan, _facts(tool, plan)) == []
    # parity and properties too: a gate the reader no longer sees is "no manual gate", not "no approvers"
    broken = _facts(tool, plan, breaker)
    problems = deploy_path(plan, broken) + parity(plan, broken) + properties(plan, broken, by_name(tool).budget)
    assert any(breaker.expect in p for p in problems), problems


def test_todays_cached_deploy_job_is_reported() -> None:
    """The shape every adapter had before: a deploy job restoring the lock-file-keyed caches and running ``uv run``
    without the hash-checked install (GitHub's old steps, put back)."""
    plan = make_plan("project")
    old = Breaker(
        "old deploy job",
        sub(
            r"(\n      - \{name: Branch guard.*\n      - \*checkout\n)      - \*uv\n      - \*locked\n",
            r"\1      - {uses: astral-sh/setup-uv@0000000000000000000000000000000000000000, with: {version: 0.13.8}}\n",
            1,
        ),
        "",
    )
    facts = _facts("github", plan, old)
    problems = [p for p in deploy_path(plan, facts) if p.startswith("github dev:")]
    assert any("restores" in p for p in problems) and any("hash-locked" in p for p in problems)
    assert re.search(r"setup-uv cache", " ".join(problems))
