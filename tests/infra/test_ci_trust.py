"""Example tokens against the synthesized CI roles: the prod role admits the prod deploy job and refuses the dev job
and pull-request jobs, and the read-only ``prod-change-set`` role admits the approval job (which prod's role
refuses), per tool, judged by :mod:`infra.ci.trust` (IAM's semantics for the operators the roles use).

Each example keeps only the claims IAM sees (``aud``, ``sub``), with the tool's documentation for their format. Where
IAM cannot tell environments apart by claim, :data:`CANNOT_SEPARATE` says so and the test asserts the limitation."""

from __future__ import annotations

import copy
import json
from typing import Any, Final

import pytest

from cicd.config import ENVIRONMENTS, PipelineConfig
from infra.ci.trust import allows, resolve, service, web_identity

pytestmark = pytest.mark.slow

ACCOUNT: Final = "123456789012"
REPO: Final = "example/apk-pipeline"
ORG: Final = "0c2f6a8e-4d6c-4f0b-9b1e-6b2f2a1c0d11"
PROJECT: Final = "5a1b9c3d-7e8f-4a0b-8c1d-2e3f4a5b6c7d"
JOB: Final = "https://jenkins.example.com/job/apk-pipeline/job/main/"
ENTRA: Final = "/eid1/c/pub/t/VGVuYW50/a/QXBw/sc/org-guid"

SETTINGS: Final[dict[str, Any]] = {
    "github": {"repository": REPO},
    "gitlab": {"project": REPO},
    "circleci": {"organization_id": ORG, "project_id": PROJECT},
    "bitbucket": {
        "workspace": "example",
        "workspace_uuid": "{ws}",
        "repository_uuid": "{repo}",
        "environment_uuids": {
            "dev": "{env-dev}",
            "preprod": "{env-preprod}",
            "prod": "{env-prod}",
            "prod-change-set": "{env-prod-change-set}",
        },
    },
    "azure": {
        "organization_id": "org-guid",
        "tenant_id": "tenant-guid",
        "subjects": {e: f"{ENTRA}/conn-{e}" for e in (*ENVIRONMENTS, "prod-change-set")},
    },
    "codecatalyst": {"space_id": "space-id"},
    "jenkins": {"issuer": "https://jenkins.example.com/oidc", "job": JOB},
}

HOSTS: Final = {
    "github": "token.actions.githubusercontent.com",
    "gitlab": "gitlab.com",
    "circleci": f"oidc.circleci.com/org/{ORG}",
    "bitbucket": "api.bitbucket.org/2.0/workspaces/example/pipelines-config/identity/oidc",
    "azure": "login.microsoftonline.com/tenant-guid/v2.0",
    "jenkins": "jenkins.example.com/oidc",
}

GITLAB_MAIN: Final = f"project_path:{REPO}:ref_type:branch:ref:main"
CIRCLE_MAIN: Final = f"org/{ORG}/project/{PROJECT}/user/u-1/vcs-origin/github.com/{REPO}/vcs-ref/refs/heads/main"
EXAMPLES: Final[dict[str, dict[str, dict[str, Any]]]] = {
    # https://docs.github.com/actions/reference/security/oidc (sub with an environment; pull requests)
    "github": {
        "prod": {"aud": "sts.amazonaws.com", "sub": f"repo:{REPO}:environment:prod"},
        "dev": {"aud": "sts.amazonaws.com", "sub": f"repo:{REPO}:environment:dev"},
        "pr": {"aud": "sts.amazonaws.com", "sub": f"repo:{REPO}:pull_request"},
        "prod-change-set": {"aud": "sts.amazonaws.com", "sub": f"repo:{REPO}:environment:prod-change-set"},
    },
    # https://docs.gitlab.com/ci/secrets/id_token_authentication (sub project_path:...:ref_type:...:ref:...; aud from
    # the job's id_tokens)
    "gitlab": {
        "prod": {"aud": "apk-pipeline-prod", "sub": GITLAB_MAIN},
        "dev": {"aud": "apk-pipeline-dev", "sub": GITLAB_MAIN},
        "pr": {"aud": "apk-pipeline-prod", "sub": f"project_path:{REPO}:ref_type:branch:ref:feature"},
        "prod-change-set": {"aud": "apk-pipeline-prod-change-set", "sub": GITLAB_MAIN},
    },
    # https://circleci.com/docs/openid-connect-tokens/ (V2 sub org/.../vcs-ref/<ref>; aud the organization id)
    "circleci": {
        "prod": {"aud": ORG, "sub": CIRCLE_MAIN},
        "dev": {"aud": ORG, "sub": CIRCLE_MAIN},
        "pr": {"aud": ORG, "sub": CIRCLE_MAIN.replace("refs/heads/main", "refs/heads/feature")},
        "prod-change-set": {"aud": ORG, "sub": CIRCLE_MAIN},  # the approval job: the same claims as every main job
    },
    # https://support.atlassian.com/bitbucket-cloud/docs/integrate-pipelines-with-resource-servers-using-oidc/
    # (sub {repositoryUuid}:{deploymentEnvironmentUuid}:{stepUuid} for deployment steps, {repositoryUuid}:{stepUuid}
    # otherwise)
    "bitbucket": {
        "prod": {"aud": "ari:cloud:bitbucket::workspace/ws", "sub": "{repo}:{env-prod}:{step-1}"},
        "dev": {"aud": "ari:cloud:bitbucket::workspace/ws", "sub": "{repo}:{env-dev}:{step-2}"},
        "pr": {"aud": "ari:cloud:bitbucket::workspace/ws", "sub": "{repo}:{step-3}"},
        "prod-change-set": {"aud": "ari:cloud:bitbucket::workspace/ws", "sub": "{repo}:{env-prod-change-set}:{step-4}"},
        # the approval step before it was a deployment step: oidc: true without deployment: (no environment in sub)
        "approval-without-deployment": {"aud": "ari:cloud:bitbucket::workspace/ws", "sub": "{repo}:{step-4}"},
    },
    # https://learn.microsoft.com/azure/devops/pipelines/release/convert-service-connections (Entra issuer; the
    # subject is the service connection's /eid1/c/pub/t/.../sc/<organization id>/<connection id>)
    "azure": {
        "prod": {"aud": "api://AzureADTokenExchange", "sub": f"{ENTRA}/conn-prod"},
        "dev": {"aud": "api://AzureADTokenExchange", "sub": f"{ENTRA}/conn-dev"},
        "pr": {"aud": "api://AzureADTokenExchange", "sub": f"{ENTRA}/conn-other"},
        "prod-change-set": {"aud": "api://AzureADTokenExchange", "sub": f"{ENTRA}/conn-prod-change-set"},
    },
    # https://plugins.jenkins.io/oidc-provider/ (sub: by default the job URL; aud: the credential's audience)
    "jenkins": {
        "prod": {"aud": "apk-pipeline-prod", "sub": JOB},
        "dev": {"aud": "apk-pipeline-dev", "sub": JOB},
        "pr": {"aud": "apk-pipeline-prod", "sub": "https://jenkins.example.com/job/apk-pipeline/job/PR-7/"},
        "prod-change-set": {"aud": "apk-pipeline-prod-change-set", "sub": JOB},
    },
}

CANNOT_SEPARATE: Final[dict[str, str]] = {
    "circleci": (
        "IAM sees only aud (the organization id, or any custom aud a job requests) and sub (project, branch): every "
        "job of a main pipeline can assume every environment's role. Compensating control: the role ARN of <env> is "
        "stored only in the restricted context aws-<env> (security group + branch expression main); the approval "
        "job's context aws-prod-change-set holds only the read-only role's ARN."
    ),
    "codecatalyst": (
        "The service principals' only condition is aws:SourceArn (space/project): no key names the workflow, "
        "action or environment. Compensating control: each environment's account connection (ideally its own "
        "account) lists only that environment's role; the approval action's role (prod-change-set) is named by the "
        "reviewed workflow file, as prod's account connection also holds the deploy role."
    ),
}


@pytest.fixture(scope="module")
def roles() -> dict[str, dict[str, Any]]:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.ci import add_ci_stacks

    app = cdk.App(context={"ci": SETTINGS})
    (stack,) = add_ci_stacks(app, PipelineConfig(), env=cdk.Environment(account=ACCOUNT, region="eu-west-1"))
    template = Template.from_stack(stack).to_json()["Resources"]
    refs = {"AWS::Partition": "aws"}
    for key, res in template.items():
        if res["Type"] == "AWS::IAM::OIDCProvider":
            host = res["Properties"]["Url"].removeprefix("https://")
            refs[f"{key}.Arn"] = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"
    return {
        r["Properties"]["RoleName"]: resolve(r["Properties"]["AssumeRolePolicyDocument"], refs)
        for r in template.values()
        if r["Type"] == "AWS::IAM::Role"
    }


def _admits(document: dict[str, Any], tool: str, token: str) -> bool:
    return allows(document, web_identity(HOSTS[tool], EXAMPLES[tool][token]))


@pytest.mark.parametrize("tool", sorted(EXAMPLES))
def test_each_environment_role_admits_its_own_job_only(roles: dict[str, dict[str, Any]], tool: str) -> None:
    prod, dev = roles[f"apk-pipeline-{tool}-prod"], roles[f"apk-pipeline-{tool}-dev"]
    assert _admits(prod, tool, "prod")
    assert _admits(dev, tool, "dev")
    assert not _admits(prod, tool, "pr")
    if tool in CANNOT_SEPARATE:
        assert _admits(prod, tool, "dev"), "documented as inseparable: update CANNOT_SEPARATE and the docs"
    else:
        assert not _admits(prod, tool, "dev")
        assert not _admits(dev, tool, "prod")
    # A token of another issuer never matches, whatever its claims.
    assert not allows(prod, web_identity("evil.example.com", EXAMPLES[tool]["prod"]))


@pytest.mark.parametrize("tool", sorted(EXAMPLES))
def test_the_change_set_role_admits_the_approval_job_and_prod_refuses_it(
    roles: dict[str, dict[str, Any]], tool: str
) -> None:
    """The approval job's token (its ``prod-change-set`` environment, audience, deployment, connection or
    credential) gets the read-only role; where IAM can tell jobs apart, prod's deploy role refuses it and the
    change-set role refuses prod's deploy job."""
    change_set, prod = roles[f"apk-pipeline-{tool}-prod-change-set"], roles[f"apk-pipeline-{tool}-prod"]
    assert _admits(change_set, tool, "prod-change-set")
    assert not _admits(change_set, tool, "pr")
    if tool in CANNOT_SEPARATE:
        assert _admits(prod, tool, "prod-change-set"), "documented as inseparable: update CANNOT_SEPARATE and the docs"
        assert _admits(change_set, tool, "prod")
    else:
        assert not _admits(prod, tool, "prod-change-set")
        assert not _admits(change_set, tool, "prod")
        assert not _admits(change_set, tool, "dev")
    assert not allows(change_set, web_identity("evil.example.com", EXAMPLES[tool]["prod-change-set"]))


def test_a_bitbucket_approval_step_that_is_no_deployment_step_matches_no_role(roles: dict[str, dict[str, Any]]) -> None:
    """Bitbucket's sub names an environment only for a deployment step: the approval step with ``oidc: true`` and
    no ``deployment:`` (as it was) could assume no role at all."""
    bitbucket = {name: doc for name, doc in roles.items() if name.startswith("apk-pipeline-bitbucket-")}
    assert len(bitbucket) == 4
    assert not any(_admits(doc, "bitbucket", "approval-without-deployment") for doc in bitbucket.values())


def test_every_change_set_role_has_the_one_read_only_policy() -> None:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.ci import add_ci_stacks

    app = cdk.App(context={"ci": SETTINGS})
    (stack,) = add_ci_stacks(app, PipelineConfig(), env=cdk.Environment(account=ACCOUNT, region="eu-west-1"))
    resources = Template.from_stack(stack).to_json()["Resources"]
    policies = {
        k: r["Properties"]["ManagedPolicyName"] for k, r in resources.items() if r["Type"] == "AWS::IAM::ManagedPolicy"
    }
    attached = {
        r["Properties"]["RoleName"]: [policies[p["Ref"]] for p in r["Properties"]["ManagedPolicyArns"]]
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Role"
    }
    change_sets = {name: names for name, names in attached.items() if name.endswith("-prod-change-set")}
    assert set(change_sets) == {f"apk-pipeline-{t}-prod-change-set" for t in (*EXAMPLES, "codecatalyst")}
    assert all(names == ["apk-pipeline-ci-change-set-prod"] for names in change_sets.values())
    assert sorted(set(policies.values())) == sorted(
        ["apk-pipeline-ci-change-set-prod", *(f"apk-pipeline-ci-deploy-{e}" for e in ENVIRONMENTS)]
    )


@pytest.mark.parametrize("tool", ["bitbucket", "azure"])
def test_without_its_change_set_setting_a_tool_gets_no_change_set_role(tool: str) -> None:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.ci import add_ci_stacks

    key = "environment_uuids" if tool == "bitbucket" else "subjects"
    section = copy.deepcopy(SETTINGS[tool])
    del section[key]["prod-change-set"]
    app = cdk.App(context={"ci": {tool: section}})
    (stack,) = add_ci_stacks(app, PipelineConfig(), env=cdk.Environment(account=ACCOUNT, region="eu-west-1"))
    names = {r["Properties"]["RoleName"] for r in Template.from_stack(stack).find_resources("AWS::IAM::Role").values()}
    assert names == {f"apk-pipeline-{tool}-{e}" for e in ENVIRONMENTS}


@pytest.mark.parametrize("tool", ["github", "gitlab", "bitbucket", "azure", "jenkins"])
def test_loosening_the_prod_trust_lets_the_dev_job_in(roles: dict[str, dict[str, Any]], tool: str) -> None:
    """Breaker: replace the environment in prod's trust with a wildcard (as StringLike) and the dev token passes."""
    loose = copy.deepcopy(roles[f"apk-pipeline-{tool}-prod"])
    condition = loose["Statement"][0]["Condition"]
    merged = {**condition.pop("StringEquals", {}), **condition.get("StringLike", {})}
    condition["StringLike"] = {k: v.replace("conn-prod", "*").replace("prod", "*") for k, v in merged.items()}
    text = json.dumps(loose)
    assert _admits(json.loads(text), tool, "dev")


def test_codecatalyst_roles_trust_the_space_only(roles: dict[str, dict[str, Any]]) -> None:
    prod = roles["apk-pipeline-codecatalyst-prod"]
    for principal in ("codecatalyst-runner.amazonaws.com", "codecatalyst.amazonaws.com"):
        ours = service(principal, source_arn="arn:aws:codecatalyst:::space/space-id/project/p1", source_account="1")
        other = service(principal, source_arn="arn:aws:codecatalyst:::space/other/project/p1", source_account="1")
        assert allows(prod, ours) and not allows(prod, other)
        # the documented limitation: the dev role's and the change-set role's trust are the same
        assert allows(roles["apk-pipeline-codecatalyst-dev"], ours)
        assert allows(roles["apk-pipeline-codecatalyst-prod-change-set"], ours)
        assert not allows(roles["apk-pipeline-codecatalyst-prod-change-set"], other)
    assert not allows(
        prod,
        service(
            "codebuild.amazonaws.com", source_arn="arn:aws:codecatalyst:::space/space-id/project/p1", source_account="1"
        ),
    )


def test_the_evaluator_follows_iam_semantics() -> None:
    from infra.ci.trust import UnsupportedPolicy

    def doc(condition: dict[str, Any], effect: str = "Allow") -> dict[str, Any]:
        return {
            "Statement": [
                {
                    "Effect": effect,
                    "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/h"},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": condition,
                }
            ]
        }

    token = web_identity("h", {"aud": "a", "sub": "x:y:z"})
    assert allows(doc({"StringLike": {"h:sub": "x:?:*"}}), token)
    assert not allows(doc({"StringLike": {"h:sub": "x:??:*"}}), token)
    assert not allows(doc({"StringEquals": {"h:sub": "x:*"}}), token)  # no wildcard in StringEquals
    assert allows(doc({"StringEquals": {"h:sub": ["q", "x:y:z"]}}), token)  # values are ORed
    assert not allows(doc({"StringEquals": {"h:missing": "v"}}), token)
    assert allows(doc({"ForAllValues:StringEquals": {"h:missing": "v"}}), token)  # IAM: vacuously true
    many = web_identity("h", {"aud": ["a", "b"], "sub": "s"})
    assert allows(doc({"ForAnyValue:StringEquals": {"h:aud": "b"}}), many)
    assert not allows(doc({"StringEquals": {"h:aud": "b"}}), many)
    assert not allows(doc({}, effect="Deny"), token)
    with pytest.raises(UnsupportedPolicy):
        allows(doc({"NumericLessThan": {"h:sub": "1"}}), token)
