"""The AWS side of CI: OIDC identity providers, one deploy role per environment per federating tool, and one
read-only change-set role per tool for the approval job.

Each role ``apk-pipeline-<tool>-<env>`` (one-hour sessions) trusts only what the tool's token says about that
environment's job, as far as IAM can test it: for a generic OIDC provider IAM sees only the token's ``aud`` and
``sub`` claims (``<host>:aud``, ``<host>:sub``). The approval job (``inv change-set --env prod``, a ``cdk diff``)
has an identity of its own, ``prod-change-set``: role ``apk-pipeline-<tool>-prod-change-set`` with the read-only
:func:`change_set_policy` (one policy shared by every tool), trusted as the tool's ``<env>`` roles are, with
``prod-change-set`` in place of the environment. Per tool:

* **GitHub**: ``sub`` = ``repo:OWNER/REPO:environment:<env>``, ``aud`` = ``sts.amazonaws.com`` (both
  StringEquals). A job gets that ``sub`` only by naming the GitHub environment, so a pull-request job (``sub``
  ``repo:OWNER/REPO:pull_request``) and the dev job cannot assume prod; what may run in the ``prod`` environment is
  the environment's *deployment branches* rule (main) and its reviewers, a repository setting. The approval job uses
  the environment ``prod-change-set`` (``sub`` ``repo:OWNER/REPO:environment:prod-change-set``).
* **GitLab**: GitLab's default ``sub`` (``project_path:G/P:ref_type:branch:ref:main``) is the same for every job of
  a main pipeline, so each environment job declares its own ID-token audience ``apk-pipeline-<env>``
  (``id_tokens: {AWS_ID_TOKEN: {aud: apk-pipeline-<env>}}``); the provider lists the three audiences and role
  ``<env>`` requires ``aud`` = ``apk-pipeline-<env>`` and the main-branch ``sub`` (StringEquals). Merge-request
  pipelines (``ref_type:branch:ref:<their branch>``) never match. Residual: any job of main's reviewed
  ``.gitlab-ci.yml`` could declare another environment's audience. Compensating controls (user settings): main a
  protected branch, the environments protected (who may deploy), CODEOWNERS approval on ``.gitlab-ci.yml``.
* **CircleCI**: ``sub`` = ``org/ORG/project/PROJECT/user/*/vcs-origin/*/vcs-ref/refs/heads/main`` (StringLike,
  V2 token) and ``aud`` = the organization id. IAM cannot tell CircleCI contexts or jobs apart: the context ids
  travel in ``oidc.circleci.com/context-ids``, which IAM does not expose, and a custom ``aud``
  (``circleci run oidc get --claims``) can be requested by any job of the main pipeline. Every main job can
  therefore assume every environment's role by claim; what keeps the role ARN of ``<env>`` out of other jobs is the
  restricted context ``aws-<env>`` (security group + branch expression ``main``), the only place it is stored.
  Likewise the change-set role trusts every main job, prod's deploy job included: the approval job gets the
  read-only role only because its context ``aws-prod-change-set`` holds that ARN (and no other job's does).
* **Bitbucket**: ``sub`` = ``{REPO_UUID}:{ENVIRONMENT_UUID}:*`` (StringLike; Bitbucket's ``sub`` is
  ``{repositoryUuid}:{deploymentEnvironmentUuid}:{stepUuid}`` for deployment steps, ``{repositoryUuid}:{stepUuid}``
  otherwise), ``aud`` = ``ari:cloud:bitbucket::workspace/<uuid>``. Only a step deploying to that environment gets
  that ``sub``; which branches may deploy there is the environment's deployment permission (a Premium setting).
  The approval step deploys to its own environment ``prod-change-set`` (a deployment environment the user adds;
  its UUID is the optional ``environment_uuids`` key ``prod-change-set``: without it, no change-set role).
* **Azure DevOps**: ``sub`` = the service connection ``aws-<env>``'s subject (StringEquals), on the Microsoft Entra
  issuer ``login.microsoftonline.com/<tenant>/v2.0`` (``/eid1/c/pub/t/.../sc/<organization id>/<connection id>``,
  ``aud`` ``api://AzureADTokenExchange``), or on the older ``vstoken`` issuer ``sc://ORG/PROJECT/aws-<env>``. Who
  may use the connection is its pipeline permissions and branch-control check (user settings). The approval job
  logs in with the connection ``aws-prod-change-set`` (optional ``subjects`` key ``prod-change-set`` on Entra).
* **CodeCatalyst**: the service principals with ``aws:SourceArn`` = the space's project(s). No condition key names
  the workflow, action or environment, so every role of the space trusts the same principal; what binds a role to
  an environment is the CodeCatalyst environment's account connection (only roles added to the connection can be
  chosen) - use a connection (ideally an account) per environment. The approval action's environment
  ``prod-change-set`` uses prod's account connection with the role ``apk-pipeline-codecatalyst-prod-change-set``;
  a connection can hold several roles, so which of them an action uses is the workflow file's choice (reviewed
  on main), not something IAM can enforce: the prod deploy role trusts the approval action just as well.
* **Jenkins**: the ``oidc-provider`` plugin; role ``<env>`` requires ``aud`` = ``apk-pipeline-<env>`` (the audience
  of the credential ``aws-oidc-<env>``) and ``sub`` = the main branch job's URL. Any stage of that job could bind
  another environment's credential; folder-scoped credentials and who may configure the job are Jenkins settings.
  The approval stage binds ``aws-oidc-prod-change-set`` (audience ``apk-pipeline-prod-change-set``).

Session names: ``sts:RoleSessionName`` is a condition key of ``AssumeRoleWithWebIdentity`` too, but the tools' login
steps choose the name (``GitHubActions``, the run id), so nothing is gained by pinning it; CloudTrail records the
token's ``sub`` for every web-identity session either way.

Permissions (:func:`deploy_policy`): a deploy role deploys only through the CDK bootstrap roles of its environment's
account and region (``cdk-<qualifier>-{deploy,file-publishing,image-publishing,lookup}-role-<account>-<region>``),
and otherwise reaches only what the pipeline calls with the job's own credentials: the environment's state bucket
(``latestapk-<env>-state-<account>-<region>``: create, configure, read, write), its APK and web buckets
(``latestapk-<env>-*``, CloudFormation-named after the stack) and ``DescribeStacks`` on its stack. No ``iam:``
action, nothing of another environment. The change-set policy (:func:`change_set_statements`) may only assume
the lookup role, read prod's stack template and state, and read (or create on a first run) its state bucket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from cicd.config import APP_NAME, DEFAULT_ENVIRONMENTS, ENVIRONMENTS, PROJECT, Environment, PipelineConfig
from cicd.state import BUCKET_PREFIX
from infra.ci.nag import AcknowledgeWildcards
from infra.ci.settings import CHANGE_SET, DEFAULT_QUALIFIER, IDENTITIES, MAIN_BRANCH, CiSettings

SESSION: Final = cdk.Duration.hours(1)
ROLE_PREFIX: Final = "apk-pipeline"
STS: Final = "sts.amazonaws.com"
BOOTSTRAP_ROLES: Final = ("deploy", "file-publishing", "image-publishing", "lookup")
CHANGE_SET_OF: Final = "prod"
"""The environment whose change set the approval job shows (:data:`~infra.ci.settings.CHANGE_SET` is its identity)."""
ASSUME: Final = ("sts:AssumeRole", "sts:TagSession")
"""``sts:TagSession`` too: the CDK CLI passes session tags when an assembly asks for them, and the bootstrap roles
trust it."""
STATE_BUCKET_SETUP: Final = (
    "s3:CreateBucket",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketVersioning",
)
"""What ``cicd/state.py`` does to a state bucket it creates on first use."""


def role_name(tool: str, env: str) -> str:
    """``apk-pipeline-<tool>-<env>``; the CodeCatalyst adapter names the same role."""
    return f"{ROLE_PREFIX}-{tool}-{env}"


def audience(env: str) -> str:
    """The per-environment token audience of GitLab and Jenkins (``apk-pipeline-<env>``)."""
    return f"{ROLE_PREFIX}-{env}"


@dataclass(frozen=True)
class Target:
    """Where one environment's stack lives, and the names the pipeline gives its resources there."""

    env: str
    account: str
    region: str
    partition: str
    state_bucket: str
    qualifier: str = DEFAULT_QUALIFIER

    @classmethod
    def of(cls, scope: Construct, env: Environment, qualifier: str = DEFAULT_QUALIFIER) -> Target:
        """The environment table's account/region, else the stack's (``cicd.config``)."""
        stack = cdk.Stack.of(scope)
        account, region = env.account or stack.account, env.region or stack.region
        bucket = env.state_bucket or f"{BUCKET_PREFIX}-{env.name}-state-{account}-{region}"
        return cls(env.name, account, region, stack.partition, bucket, qualifier)

    def bootstrap_role(self, kind: str) -> str:
        name = f"cdk-{self.qualifier}-{kind}-role-{self.account}-{self.region}"
        return f"arn:{self.partition}:iam::{self.account}:role/{name}"

    @property
    def stack_arn(self) -> str:
        return f"arn:{self.partition}:cloudformation:{self.region}:{self.account}:stack/{APP_NAME}-{self.env}/*"

    def bucket_arn(self, name: str) -> str:
        return f"arn:{self.partition}:s3:::{name}"


def targets(scope: Construct, config: PipelineConfig | None, qualifier: str) -> dict[str, Target]:
    environments = config.environments if config is not None else DEFAULT_ENVIRONMENTS
    return {e.name: Target.of(scope, e, qualifier) for e in environments if e.name in ENVIRONMENTS}


def deploy_statements(target: Target) -> list[iam.PolicyStatement]:
    """Deploy ``target``'s stack through its bootstrap roles, and the pipeline's own calls there (module docstring)."""
    apps = target.bucket_arn(f"{BUCKET_PREFIX}-{target.env}-*")
    return [
        iam.PolicyStatement(
            sid="CdkBootstrapRoles",
            actions=list(ASSUME),
            resources=[target.bootstrap_role(kind) for kind in BOOTSTRAP_ROLES],
        ),
        iam.PolicyStatement(
            sid="StateBucketSetup", actions=list(STATE_BUCKET_SETUP), resources=[target.bucket_arn(target.state_bucket)]
        ),
        iam.PolicyStatement(
            sid="EnvironmentBuckets",
            actions=["s3:ListBucket"],
            resources=[apps, target.bucket_arn(target.state_bucket)],
        ),
        iam.PolicyStatement(
            sid="EnvironmentObjects",
            actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            resources=[f"{apps}/*", f"{target.bucket_arn(target.state_bucket)}/*"],
        ),
        iam.PolicyStatement(
            sid="EnvironmentStack", actions=["cloudformation:DescribeStacks"], resources=[target.stack_arn]
        ),
    ]


def change_set_statements(target: Target) -> list[iam.PolicyStatement]:
    """What the approval job needs to show what ``target`` would get: the lookup role (read-only), the stack's
    template and state, and its state bucket's approval records (creating the bucket on a first run)."""
    state = target.bucket_arn(target.state_bucket)
    return [
        iam.PolicyStatement(sid="CdkLookupRole", actions=list(ASSUME), resources=[target.bootstrap_role("lookup")]),
        iam.PolicyStatement(
            sid="ReadTheStack",
            actions=["cloudformation:DescribeStacks", "cloudformation:GetTemplate"],
            resources=[target.stack_arn],
        ),
        iam.PolicyStatement(sid="StateBucketSetup", actions=list(STATE_BUCKET_SETUP), resources=[state]),
        iam.PolicyStatement(sid="ReadTheState", actions=["s3:ListBucket"], resources=[state]),
        iam.PolicyStatement(sid="ReadTheStateObjects", actions=["s3:GetObject"], resources=[f"{state}/*"]),
    ]


def managed_policy(scope: Construct, name: str, statements: Sequence[iam.PolicyStatement]) -> iam.ManagedPolicy:
    policy = iam.ManagedPolicy(scope, name, managed_policy_name=f"{ROLE_PREFIX}-{name}", statements=list(statements))
    cdk.Aspects.of(policy).add(
        AcknowledgeWildcards(
            "The environment's APK and web buckets get CloudFormation-generated names after the stack "
            "(latestapk-<env>-...), and objects are written under keys chosen at run time: every wildcard is bounded "
            "by this environment's bucket name prefix or its stack's ARN."
        )
    )
    return policy


def deploy_policy(scope: Construct, target: Target, owner: str) -> iam.ManagedPolicy:
    """``apk-pipeline-<owner>-deploy-<env>``: see :func:`deploy_statements`."""
    return managed_policy(scope, f"{owner}-deploy-{target.env}", deploy_statements(target))


def change_set_policy(scope: Construct, target: Target, owner: str) -> iam.ManagedPolicy:
    """``apk-pipeline-<owner>-change-set-<env>``: see :func:`change_set_statements`."""
    return managed_policy(scope, f"{owner}-change-set-{target.env}", change_set_statements(target))


@dataclass(frozen=True)
class Trust:
    """What role ``env`` of a web-identity tool requires of the token."""

    sub: str
    aud: str
    like: bool = False


class CiRolesStack(cdk.Stack):
    """Providers and roles for every configured tool (see the module docstring)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: CiSettings,
        config: PipelineConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        cdk.Tags.of(self).add("project", PROJECT)
        self.targets = targets(self, config, settings.bootstrap_qualifier)
        self.policies = {env: deploy_policy(self, t, "ci") for env, t in self.targets.items()}
        self.roles: dict[tuple[str, str], iam.Role] = {}
        self._change_set: iam.ManagedPolicy | None = None
        main = MAIN_BRANCH
        if settings.github:
            repo = settings.github.repository
            trusts = {i: Trust(f"repo:{repo}:environment:{i}", STS) for i in IDENTITIES}
            self._oidc("github", "token.actions.githubusercontent.com", [STS], trusts)
        if settings.gitlab:
            sub = f"project_path:{settings.gitlab.project}:ref_type:branch:ref:{main}"
            trusts = {i: Trust(sub, audience(i)) for i in IDENTITIES}
            self._oidc("gitlab", settings.gitlab.host, [audience(i) for i in IDENTITIES], trusts)
        if settings.circleci:
            org, project = settings.circleci.organization_id, settings.circleci.project_id
            sub = f"org/{org}/project/{project}/user/*/vcs-origin/*/vcs-ref/refs/heads/{main}"
            self._oidc(
                "circleci", f"oidc.circleci.com/org/{org}", [org], {i: Trust(sub, org, like=True) for i in IDENTITIES}
            )
        if settings.bitbucket:
            bb = settings.bitbucket
            host = f"api.bitbucket.org/2.0/workspaces/{bb.workspace}/pipelines-config/identity/oidc"
            aud = f"ari:cloud:bitbucket::workspace/{bb.workspace_uuid.strip('{}')}"
            trusts = {
                i: Trust(f"{bb.repository_uuid}:{bb.environment_uuids[i]}:*", aud, like=True) for i in bb.identities
            }
            self._oidc("bitbucket", host, [aud], trusts)
        if settings.azure:
            az = settings.azure
            aud = "api://AzureADTokenExchange"
            self._oidc("azure", az.host, [aud], {i: Trust(az.subject(i), aud) for i in az.identities})
        if settings.codecatalyst:
            cc = settings.codecatalyst
            source = f"arn:{self.partition}:codecatalyst:::space/{cc.space_id}/project/{cc.project_id}"
            for identity in IDENTITIES:
                principal = iam.CompositePrincipal(
                    iam.ServicePrincipal("codecatalyst-runner.amazonaws.com"),
                    iam.ServicePrincipal("codecatalyst.amazonaws.com"),
                ).with_conditions({"ArnLike": {"aws:SourceArn": source}})
                self._role("codecatalyst", identity, principal)
        if settings.jenkins is not None:
            jk = settings.jenkins
            trusts = {i: Trust(jk.job, audience(i)) for i in IDENTITIES}
            self._oidc("jenkins", jk.host, [audience(i) for i in IDENTITIES], trusts)

    def policy(self, identity: str) -> iam.ManagedPolicy:
        """An environment's deploy policy, or (``prod-change-set``) the one read-only change-set policy of prod that
        every tool's approval role shares (:func:`change_set_policy`, made on first use)."""
        if identity != CHANGE_SET:
            return self.policies[identity]
        if self._change_set is None:
            self._change_set = change_set_policy(self, self.targets[CHANGE_SET_OF], "ci")
        return self._change_set

    def _oidc(self, tool: str, host: str, audiences: list[str], trusts: Mapping[str, Trust]) -> iam.CfnOIDCProvider:
        provider = iam.CfnOIDCProvider(self, f"{tool}-provider", url=f"https://{host}", client_id_list=audiences)
        for identity, trust in trusts.items():
            conditions: dict[str, dict[str, str]] = {"StringEquals": {f"{host}:aud": trust.aud}}
            conditions.setdefault("StringLike" if trust.like else "StringEquals", {})[f"{host}:sub"] = trust.sub
            principal = iam.FederatedPrincipal(provider.attr_arn, conditions, "sts:AssumeRoleWithWebIdentity")
            self._role(tool, identity, principal)
        return provider

    def _role(self, tool: str, identity: str, principal: iam.IPrincipal) -> iam.Role:
        description = (
            f"Shows the change set of {APP_NAME} in {CHANGE_SET_OF} (read-only) from {tool} (infra/ci)"
            if identity == CHANGE_SET
            else f"Deploys {APP_NAME} to {identity} from {tool} (infra/ci)"
        )
        role = iam.Role(
            self,
            f"{tool}-{identity}",
            role_name=role_name(tool, identity),
            assumed_by=principal,
            max_session_duration=SESSION,
            description=description,
            managed_policies=[self.policy(identity)],
        )
        self.roles[(tool, identity)] = role
        cdk.CfnOutput(
            self, f"{tool}-{identity}-arn", value=role.role_arn, description=f"AWS_ROLE_ARN for {tool} {identity}"
        )
        return role
