"""AWS CodePipeline + CodeBuild, built from the same plan as ``ci-adapters/codebuild/`` (:func:`layout`).

Two V2 pipelines read the repository through a CodeConnections connection: ``pull-request`` (pull-request trigger,
file-path filters, ``SUPERSEDED``) and ``main`` (push trigger, ``QUEUED``: one execution at a time, so two deploys
to one environment never overlap). The source action outputs a clone reference (``CODEBUILD_CLONE_REF``), so each
CodeBuild project clones the repository itself (with its history) and its role may use the connection. Every job is
a CodeBuild project running ``buildspecs/<job>.yml`` from the source on the layout's image, one project per pipeline
(``apk-pipeline-pr-<job>`` for pull requests). Environment jobs run under that environment's role
``apk-pipeline-codebuild-<env>`` (:func:`infra.ci.roles.deploy_policy`), which CodeBuild may assume only for that
environment's project (``aws:SourceArn``, ``aws:SourceAccount``); the approval job runs under the read-only
``apk-pipeline-codebuild-prod-change-set``; every other job under its project's own role without AWS deploy rights.
Each pipeline has its own cache and artifact buckets, and the pull-request projects' roles can reach only the
pull-request ones: main never restores a cache entry or reads an artifact a pull request wrote. Build, approval and
deploy projects have no cache. With the approval switch on, the group ``apk-pipeline-prod-approvers`` (and its
policy) may approve the main pipeline's prod gate and nothing else. Each pipeline declares the layout's variables
(``CICD_TARGET``) once and passes them to every action, with the branch as ``CICD_BRANCH``.
"""

from __future__ import annotations

from typing import Any, Final

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cicd.adapters.codebuild import APPROVERS_GROUP, CLONE_REF, layout
from cicd.adapters.plan import CHANGE_SET_SUFFIX, Plan
from cicd.config import PROJECT, PipelineConfig
from infra.ci.nag import AcknowledgeWildcards
from infra.ci.roles import ROLE_PREFIX, SESSION, change_set_policy, deploy_policy, targets
from infra.ci.settings import DEFAULT_QUALIFIER, CodePipeline
from infra.waivers import Waiver, waive

CODEBUILD_IMAGES: Final = "aws/codebuild/"
USE_CONNECTION: Final = ("codestar-connections:UseConnection", "codeconnections:UseConnection")
"""Both service prefixes: an IAM action must match the connection ARN's prefix, and connections made since July 2024
carry ``codeconnections`` (older ones ``codestar-connections``)."""


def build_image(name: str) -> codebuild.IBuildImage:
    """CodeBuild's own image by its id (``aws/codebuild/standard:7.0``), any other by its registry reference."""
    if name.startswith(CODEBUILD_IMAGES):
        return codebuild.LinuxBuildImage.from_code_build_image_id(name)
    return codebuild.LinuxBuildImage.from_docker_registry(name)


def use_connection(connection_arn: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(actions=list(USE_CONNECTION), resources=[connection_arn])


class CodePipelineStack(cdk.Stack):
    """The pull-request and main pipelines of :func:`cicd.adapters.codebuild.layout`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        plan: Plan,
        source: CodePipeline,
        config: PipelineConfig | None = None,
        qualifier: str = DEFAULT_QUALIFIER,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        cdk.Tags.of(self).add("project", PROJECT)
        cdk.Aspects.of(self).add(
            AcknowledgeWildcards(
                "CodeBuild and CodePipeline grant their own log groups, report groups and artifact objects by ARN "
                "prefix; the deploy rights are the per-environment policy, bounded by stack and name prefix."
            )
        )
        owner, _, repo = source.repository.partition("/")
        self.targets = targets(self, config, qualifier)
        self.caches: dict[str, s3.Bucket] = {}
        self.artifacts: dict[str, s3.Bucket] = {}
        self.env_roles: dict[str, iam.Role] = {}
        self.projects: dict[str, codebuild.PipelineProject] = {}
        self.pipelines: dict[str, codepipeline.Pipeline] = {}
        self.connection_arn = source.connection_arn
        self.approvers: iam.Group | None = None
        for name, spec in layout(plan).items():
            self.pipelines[name] = self._pipeline(name, spec, owner, repo, source)

    def _bucket(self, kind: str, pipeline: str) -> s3.Bucket:
        """The cache or artifact bucket of one pipeline (only that pipeline's roles are granted it)."""
        store = self.caches if kind == "Cache" else self.artifacts
        if pipeline not in store:
            days = 30 if kind == "Cache" else 90
            # Retained, not auto-deleted (that needs a Lambda custom resource): its objects expire on their own.
            bucket = s3.Bucket(
                self,
                f"{kind}-{pipeline}",
                encryption=s3.BucketEncryption.S3_MANAGED,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                versioned=kind != "Cache",
                lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(days))],
                removal_policy=cdk.RemovalPolicy.RETAIN,
            )
            logs = (
                f"Objects of the {pipeline} pipeline's {kind.lower()} bucket are written only by that pipeline's own "
                f"roles and expire in {days} days; CloudTrail records who wrote them."
            )
            waive(bucket, Waiver("AwsSolutions-S1", logs), Waiver("CKV_AWS_18", logs))
            if kind == "Cache":
                waive(
                    bucket,
                    Waiver(
                        "CKV_AWS_21",
                        "A build cache is rebuilt from the lock files whenever an entry is missing: an old version "
                        "is never restored, so keeping versions would only keep stale caches.",
                    ),
                )
            store[pipeline] = bucket
        return store[pipeline]

    def _project_arn(self, name: str) -> str:
        return f"arn:{self.partition}:codebuild:{self.region}:{self.account}:project/{name}"

    def _role(self, action: dict[str, Any]) -> iam.Role | None:
        """The environment's role for a deploy job, the read-only change-set role for the approval job, else None
        (CodeBuild creates the project its own role). Each trusts CodeBuild only for exactly its one project."""
        key = action.get("environment")  # the job's identity: <env>, or <env>-change-set for the approval job
        if not key:
            return None
        approval = action.get("kind") == "approval"
        if approval != key.endswith(CHANGE_SET_SUFFIX):
            raise ValueError(f"{action['project']}: a {action.get('kind')} job cannot run as {key}")
        if key in self.env_roles:
            raise ValueError(f"two projects would share the role of {key}: {action['project']}")
        target = self.targets[key.removesuffix(CHANGE_SET_SUFFIX)]
        policy = (change_set_policy if approval else deploy_policy)(self, target, "codebuild")
        self.env_roles[key] = iam.Role(
            self,
            f"codebuild-{key}",
            role_name=f"{ROLE_PREFIX}-codebuild-{key}",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com").with_conditions(
                {
                    "StringEquals": {"aws:SourceAccount": self.account},
                    "ArnEquals": {"aws:SourceArn": self._project_arn(action["project"])},
                }
            ),
            max_session_duration=SESSION,
            managed_policies=[policy],
        )
        return self.env_roles[key]

    def _project(self, pipeline: str, action: dict[str, Any]) -> codebuild.PipelineProject:
        key = action["project"]
        if key in self.projects:
            return self.projects[key]
        project = codebuild.PipelineProject(
            self,
            f"job-{key}",
            project_name=key,
            build_spec=codebuild.BuildSpec.from_source_filename(action["buildspec"]),
            environment=codebuild.BuildEnvironment(
                build_image=build_image(action["image"]), compute_type=codebuild.ComputeType.MEDIUM
            ),
            timeout=cdk.Duration.minutes(int(action["timeout_minutes"])),
            cache=codebuild.Cache.bucket(self._bucket("Cache", pipeline), prefix=action["name"])
            if action["cache"]
            else codebuild.Cache.none(),
            role=self._role(action),
        )
        # The build clones the repository through the connection (the source's CODEBUILD_CLONE_REF output).
        project.add_to_role_policy(use_connection(self.connection_arn))
        waive(
            project,
            Waiver("AwsSolutions-CB4", "Build outputs go to the artifact bucket, encrypted with S3-managed keys."),
        )
        if not action["image"].startswith(CODEBUILD_IMAGES):
            waive(
                project,
                Waiver(
                    "AwsSolutions-CB5",
                    "CodeBuild's standard images have no Android SDK; the Flutter jobs run on the pinned Flutter "
                    "image (Android SDK included) that the other tools' Flutter jobs use.",
                ),
            )
        self.projects[key] = project
        return project

    def _approvers(self, pipeline: str, stage: str, action: str) -> None:
        """``apk-pipeline-prod-approvers``: may approve or reject this one gate, and see the pipeline's state."""
        pipeline_arn = f"arn:{self.partition}:codepipeline:{self.region}:{self.account}:{ROLE_PREFIX}-{pipeline}"
        policy = iam.ManagedPolicy(
            self,
            "approvers-policy",
            managed_policy_name=APPROVERS_GROUP,
            statements=[
                iam.PolicyStatement(
                    sid="ApproveTheProdGate",
                    actions=["codepipeline:PutApprovalResult"],
                    resources=[f"{pipeline_arn}/{stage}/{action}"],
                ),
                iam.PolicyStatement(
                    sid="SeeThePipeline", actions=["codepipeline:GetPipelineState"], resources=[pipeline_arn]
                ),
            ],
        )
        self.approvers = iam.Group(self, "approvers", group_name=APPROVERS_GROUP, managed_policies=[policy])

    def _pipeline(
        self, name: str, spec: dict[str, Any], owner: str, repo: str, source: CodePipeline
    ) -> codepipeline.Pipeline:
        source_name = spec["source"]["name"]
        source_output = codepipeline.Artifact(source_name)
        # An explicit action role, so it may use the connection under either service prefix (CDK grants one).
        source_role = iam.Role(self, f"source-{name}", assumed_by=iam.AccountPrincipal(self.account))
        source_role.add_to_policy(use_connection(source.connection_arn))
        source_action = actions.CodeStarConnectionsSourceAction(
            action_name=source_name,
            connection_arn=source.connection_arn,
            owner=owner,
            repo=repo,
            branch=source.branch,
            output=source_output,
            code_build_clone_output=spec["source"]["output_artifact_format"] == CLONE_REF,
            trigger_on_push=False,
            variables_namespace="SourceVariables",
            role=source_role,
        )
        variables = [codepipeline.Variable(variable_name=k, default_value=v) for k, v in spec["variables"].items()]
        action_env = {v.variable_name: codebuild.BuildEnvironmentVariable(value=v.reference()) for v in variables}
        action_env["CICD_BRANCH"] = codebuild.BuildEnvironmentVariable(value=source_action.variables.branch_name)
        artifacts: dict[str, codepipeline.Artifact] = {source_name: source_output}
        stages = [codepipeline.StageProps(stage_name=source_name, actions=[source_action])]
        for stage in spec["stages"]:
            stage_actions: list[codepipeline.IAction] = []
            for action in stage["actions"]:
                if action["type"] == "approval":
                    self._approvers(name, stage["name"], action["name"])
                    stage_actions.append(
                        actions.ManualApprovalAction(
                            action_name=action["name"],
                            run_order=action["run_order"],
                            additional_information="Review the change set shown by the approval job, then approve.",
                        )
                    )
                    continue
                outputs = [artifacts.setdefault(o, codepipeline.Artifact(o)) for o in action["outputs"]]
                inputs = [artifacts[i] for i in action["inputs"]]
                stage_actions.append(
                    actions.CodeBuildAction(
                        action_name=action["name"],
                        project=self._project(name, action),
                        input=inputs[0],
                        extra_inputs=inputs[1:] or None,
                        outputs=outputs,
                        run_order=action["run_order"],
                        environment_variables=action_env,
                    )
                )
            stages.append(codepipeline.StageProps(stage_name=stage["name"], actions=stage_actions))
        trigger = spec["trigger"]
        git = (
            codepipeline.GitConfiguration(
                source_action=source_action,
                pull_request_filter=[
                    codepipeline.GitPullRequestFilter(
                        branches_includes=trigger["branches"],
                        file_paths_includes=trigger.get("file_paths"),
                        events=[codepipeline.GitPullRequestEvent.OPEN, codepipeline.GitPullRequestEvent.UPDATED],
                    )
                ],
            )
            if trigger["type"] == "pull_request"
            else codepipeline.GitConfiguration(
                source_action=source_action,
                push_filter=[codepipeline.GitPushFilter(branches_includes=trigger["branches"])],
            )
        )
        return codepipeline.Pipeline(
            self,
            f"pipeline-{name}",
            pipeline_name=f"{ROLE_PREFIX}-{name}",
            pipeline_type=codepipeline.PipelineType.V2,
            variables=variables,
            execution_mode=getattr(codepipeline.ExecutionMode, spec["execution_mode"]),
            stages=stages,
            triggers=[
                codepipeline.TriggerProps(
                    provider_type=codepipeline.ProviderType.CODE_STAR_SOURCE_CONNECTION, git_configuration=git
                )
            ],
            restart_execution_on_update=False,
            artifact_bucket=self._bucket("Artifacts", name),
            cross_account_keys=False,
        )
