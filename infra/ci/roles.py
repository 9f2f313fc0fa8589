"""The AWS side of CI: OIDC identity providers and one deploy role per environment per federating tool.

Trust is as narrow as each tool's token allows (IAM can only test a provider's ``aud`` and ``sub`` claims):

==============  =====================================================  ============================================
tool            ``sub`` the role trusts                                what else restricts it
==============  =====================================================  ============================================
GitHub          ``repo:OWNER/REPO:environment:<env>``                  the environment's deployment branches (main)
GitLab          ``project_path:GROUP/PROJECT:ref_type:branch:ref:main``  protected branch and environment
CircleCI        ``org/ORG/project/PROJECT/user/*/vcs-origin/*/vcs-ref/refs/heads/main`` (V2 token)  context restriction
Bitbucket       ``{REPO}:{ENVIRONMENT}:*`` (the deployment's UUID)     deployment restrictions
Azure DevOps    ``sc://ORG/PROJECT/aws-<env>`` (service connection)    the connection's branch control
CodeCatalyst    service principals, ``aws:SourceArn`` = the space      the environment's connection
Jenkins         EC2 (instance profile per environment)                 only agents labelled aws-<env> get it
==============  =====================================================  ============================================

Every role has a one-hour maximum session and the same per-environment deploy policy (:func:`deploy_policy`):
CloudFormation on that environment's stack only, the CDK assets bucket, and the services of this app, scoped by
name prefix where the service allows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from cicd.config import APP_NAME, ENVIRONMENTS, PROJECT
from infra.ci.nag import AcknowledgeWildcards
from infra.ci.settings import MAIN_BRANCH, CiSettings

SESSION: Final = cdk.Duration.hours(1)
ROLE_PREFIX: Final = "apk-pipeline"
STS: Final = "sts.amazonaws.com"


def role_name(tool: str, env: str) -> str:
    """``apk-pipeline-<tool>-<env>``; the CodeCatalyst adapter names the same role."""
    return f"{ROLE_PREFIX}-{tool}-{env}"


def deploy_policy(scope: Construct, env: str, owner: str) -> iam.ManagedPolicy:
    """What deploying this app to ``env`` needs, and nothing of the other environments."""
    stack = cdk.Stack.of(scope)
    account, region, partition = stack.account, stack.region, stack.partition
    name = f"{APP_NAME}-{env}"
    statements = [
        iam.PolicyStatement(
            sid="ThisEnvironmentsStack",
            actions=[
                "cloudformation:CreateStack",
                "cloudformation:UpdateStack",
                "cloudformation:DescribeStacks",
                "cloudformation:DescribeStackEvents",
                "cloudformation:DescribeStackResources",
                "cloudformation:GetTemplate",
                "cloudformation:CreateChangeSet",
                "cloudformation:DescribeChangeSet",
                "cloudformation:ExecuteChangeSet",
                "cloudformation:DeleteChangeSet",
                "cloudformation:ListStackResources",
            ],
            resources=[f"arn:{partition}:cloudformation:{region}:{account}:stack/{name}/*"],
        ),
        iam.PolicyStatement(
            sid="TemplateValidation",
            actions=["cloudformation:GetTemplateSummary", "cloudformation:ValidateTemplate", "sts:GetCallerIdentity"],
            resources=["*"],
        ),
        iam.PolicyStatement(
            sid="CdkAssetsAndBootstrapVersion",
            actions=["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation", "ssm:GetParameter"],
            resources=[
                f"arn:{partition}:s3:::cdk-*-assets-{account}-{region}",
                f"arn:{partition}:s3:::cdk-*-assets-{account}-{region}/*",
                f"arn:{partition}:ssm:{region}:{account}:parameter/cdk-bootstrap/*",
            ],
        ),
        iam.PolicyStatement(
            sid="AppResourcesByName",
            actions=["s3:*", "lambda:*", "logs:*", "iam:*Role*", "iam:*RolePolicy*", "iam:PassRole"],
            resources=[
                f"arn:{partition}:s3:::{name.lower()}-*",
                f"arn:{partition}:s3:::{name.lower()}-*/*",
                f"arn:{partition}:lambda:{region}:{account}:function:{name}-*",
                f"arn:{partition}:logs:{region}:{account}:log-group:*{name}*",
                f"arn:{partition}:iam::{account}:role/{name}-*",
            ],
        ),
        iam.PolicyStatement(
            sid="AppResourcesTagged",
            actions=["apigateway:*", "cloudfront:*", "cloudwatch:*", "codedeploy:*"],
            resources=["*"],
            conditions={
                "StringEqualsIfExists": {"aws:ResourceTag/environment": env, "aws:RequestTag/project": PROJECT}
            },
        ),
    ]
    policy = iam.ManagedPolicy(
        scope, f"Deploy-{env}", managed_policy_name=f"{ROLE_PREFIX}-{owner}-deploy-{env}", statements=statements
    )
    cdk.Aspects.of(policy).add(
        AcknowledgeWildcards(
            "Deploying creates resources whose names CloudFormation generates: every wildcard is bounded by this "
            "environment's stack or name prefix, or by its environment/project tags where the service has no names."
        )
    )
    return policy


class CiRolesStack(cdk.Stack):
    """Providers and roles for every configured tool (see the module docstring)."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: CiSettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        cdk.Tags.of(self).add("project", PROJECT)
        self.policies = {env: deploy_policy(self, env, "ci") for env in ENVIRONMENTS}
        self.roles: dict[tuple[str, str], iam.Role] = {}
        if settings.github:
            self._oidc(
                "github",
                "token.actions.githubusercontent.com",
                STS,
                {e: f"repo:{settings.github.repository}:environment:{e}" for e in ENVIRONMENTS},
            )
        if settings.gitlab:
            ref = f"project_path:{settings.gitlab.project}:ref_type:branch:ref:{MAIN_BRANCH}"
            self._oidc("gitlab", settings.gitlab.host, STS, dict.fromkeys(ENVIRONMENTS, ref))
        if settings.circleci:
            org, project = settings.circleci.organization_id, settings.circleci.project_id
            sub = f"org/{org}/project/{project}/user/*/vcs-origin/*/vcs-ref/refs/heads/{MAIN_BRANCH}"
            self._oidc("circleci", f"oidc.circleci.com/org/{org}", org, dict.fromkeys(ENVIRONMENTS, sub), like=True)
        if settings.bitbucket:
            bb = settings.bitbucket
            host = f"api.bitbucket.org/2.0/workspaces/{bb.workspace}/pipelines-config/identity/oidc"
            subs = {e: f"{bb.repository_uuid}:{bb.environment_uuids[e]}:*" for e in ENVIRONMENTS}
            self._oidc(
                "bitbucket", host, f"ari:cloud:bitbucket::workspace/{bb.workspace_uuid.strip('{}')}", subs, like=True
            )
        if settings.azure:
            az = settings.azure
            subs = {e: f"sc://{az.organization}/{az.project}/aws-{e}" for e in ENVIRONMENTS}
            self._oidc("azure", f"vstoken.dev.azure.com/{az.organization_id}", "api://AzureADTokenExchange", subs)
        if settings.codecatalyst:
            source = f"arn:{self.partition}:codecatalyst:::space/{settings.codecatalyst.space_id}/project/*"
            for env in ENVIRONMENTS:
                principal = iam.CompositePrincipal(
                    iam.ServicePrincipal("codecatalyst-runner.amazonaws.com"),
                    iam.ServicePrincipal("codecatalyst.amazonaws.com"),
                ).with_conditions({"ArnLike": {"aws:SourceArn": source}})
                self._role("codecatalyst", env, principal)
        if settings.jenkins is not None:
            for env in ENVIRONMENTS:
                role = self._role("jenkins", env, iam.ServicePrincipal("ec2.amazonaws.com"))
                iam.CfnInstanceProfile(
                    self,
                    f"jenkins-{env}-profile",
                    roles=[role.role_name],
                    instance_profile_name=role_name("jenkins", env),
                )

    def _oidc(self, tool: str, host: str, audience: str, subjects: Mapping[str, str], *, like: bool = False) -> None:
        provider = iam.CfnOIDCProvider(self, f"{tool}-provider", url=f"https://{host}", client_id_list=[audience])
        for env, sub in subjects.items():
            conditions: dict[str, dict[str, str]] = {"StringEquals": {f"{host}:aud": audience}}
            conditions.setdefault("StringLike" if like else "StringEquals", {})[f"{host}:sub"] = sub
            principal = iam.FederatedPrincipal(provider.attr_arn, conditions, "sts:AssumeRoleWithWebIdentity")
            self._role(tool, env, principal)

    def _role(self, tool: str, env: str, principal: iam.IPrincipal) -> iam.Role:
        role = iam.Role(
            self,
            f"{tool}-{env}",
            role_name=role_name(tool, env),
            assumed_by=principal,
            max_session_duration=SESSION,
            description=f"Deploys {APP_NAME} to {env} from {tool} (infra/ci)",
            managed_policies=[self.policies[env]],
        )
        self.roles[(tool, env)] = role
        cdk.CfnOutput(self, f"{tool}-{env}-arn", value=role.role_arn, description=f"AWS_ROLE_ARN for {tool} {env}")
        return role
