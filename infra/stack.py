"""One environment's stack (``LatestApk-<env>``) inside its Stage, composed from the components."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk

from cicd.config import APP_NAME, PROJECT, SERVICE_NAME, require_aws
from cicd.versioning import BuildVersion
from infra.components.monitoring import Alarms, CanaryDeployment
from infra.components.service import STAGE_NAME, Service
from infra.components.storage import Storage
from infra.components.web import WebDistribution

if TYPE_CHECKING:
    from pathlib import Path

    from constructs import Construct

    from cicd.config import Environment, Target


PARAM_BUILD_VERSION = "BuildVersion"
PARAM_BUILD_COMMIT = "BuildCommit"
PARAM_ARTIFACT_DIGEST = "ArtifactDigest"
UNSET_VERSION = "0.0.0"


def stack_env(env: Environment, target: Target) -> cdk.Environment | None:
    """Pinned account/region on targets that need them (:class:`ConfigError` when missing); agnostic on local."""
    if not target.pinned_env:
        return None
    account, region = require_aws(env)
    return cdk.Environment(account=account, region=region)


class ServiceStack(cdk.Stack):
    """Buckets, the Lambda behind the REST API, alarms, canary deployment and web hosting of one environment."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: Environment,
        target: Target,
        code_dir: Path,
        build: BuildVersion,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=env.stack_name,
            env=stack_env(env, target),
            description=f"{SERVICE_NAME} {env.name} ({target.name} target): APK builds, API and web app",
            synthesizer=cdk.CliCredentialsStackSynthesizer(),
        )
        self.environment_config = env
        self.target = target
        build = self._deploy_parameters()  # the synth-time version only validated the scheme (infra/app.py)
        cloudfront = env.cloudfront_on(target)
        self.storage = Storage(self, "Storage", env=env, acl_logs=cloudfront)
        self.service = Service(
            self,
            "Service",
            env=env,
            target=target,
            apk_bucket=self.storage.apk_bucket,
            code_dir=code_dir,
            build=build,
        )
        self.alarms = Alarms(self, "Alarms", env=env, service=self.service) if env.alarms_on(target) else None
        self.canary = (
            CanaryDeployment(
                self, "Canary", env=env, service=self.service, alarms=self.alarms.all if self.alarms else []
            )
            if env.canary_on(target)
            else None
        )
        self.web = (
            WebDistribution(self, "Web", env=env, bucket=self.storage.web_bucket, logs_bucket=self.storage.logs_bucket)
            if cloudfront
            else None
        )
        self._outputs()
        cdk.Tags.of(self).add("project", PROJECT)
        cdk.Tags.of(self).add("environment", env.name)
        cdk.Tags.of(self).add("target", target.name)

    def _deploy_parameters(self) -> BuildVersion:
        """The build version, commit and artifact digest arrive as parameters at deploy time, not at synth time.

        So the cloud assembly depends only on the code and configuration (synth is cached on their content), and
        one packaged assembly is promoted unchanged from dev to prod, each deploy stating which build it carries.
        The defaults mark a deploy done outside the pipeline.
        """
        version = cdk.CfnParameter(
            self,
            PARAM_BUILD_VERSION,
            type="String",
            default=UNSET_VERSION,
            allowed_pattern=r"^\d+\.\d+\.\d+$",
            description="Build version deployed (MAJOR.MINOR.PATCH, passed by the pipeline)",
        )
        commit = cdk.CfnParameter(
            self, PARAM_BUILD_COMMIT, type="String", default="unknown", description="Commit of the deployed build"
        )
        digest = cdk.CfnParameter(
            self,
            PARAM_ARTIFACT_DIGEST,
            type="String",
            default="none",
            description="sha256 of the packaged artifact (manifest digest); lets a redeploy of it be a no-op",
        )
        cdk.CfnOutput(self, "DeployedArtifactDigest", value=digest.value_as_string, description="Packaged artifact")
        cdk.CfnOutput(self, "DeployedBuildVersion", value=version.value_as_string, description="Build version")
        return BuildVersion(version.value_as_string, commit.value_as_string)

    def _outputs(self) -> None:
        api = self.service.api
        # Built from the RestApi id and the stage *name*: both resolve on moto, which skips ApiGateway::Stage.
        api_url = cdk.Fn.join(
            "",
            ["https://", api.rest_api_id, ".execute-api.", self.region, ".", self.url_suffix, f"/{STAGE_NAME}/"],
        )
        cdk.CfnOutput(self, "ApiUrl", value=api_url, description="Base URL of the REST API")
        cdk.CfnOutput(self, "RestApiId", value=api.rest_api_id, description="Id of the REST API")
        cdk.CfnOutput(self, "ApiStageName", value=STAGE_NAME, description="Stage the API is deployed to")
        cdk.CfnOutput(self, "ApkBucketName", value=self.storage.apk_bucket.bucket_name)
        cdk.CfnOutput(self, "FunctionName", value=self.service.function.function_name)
        cdk.CfnOutput(self, "WebBucketName", value=self.storage.web_bucket.bucket_name)
        if self.web is not None:
            distribution = self.web.distribution
            web_url = f"https://{distribution.distribution_domain_name}/"
            cdk.CfnOutput(self, "DistributionId", value=distribution.distribution_id)
        else:
            web_url = f"https://{self.storage.web_bucket.bucket_regional_domain_name}/index.html"
        cdk.CfnOutput(self, "WebUrl", value=web_url, description="Where the web app is served")
        if self.service.alias is not None:
            cdk.CfnOutput(self, "FunctionAlias", value=self.service.alias.alias_name)


class ServiceStage(cdk.Stage):
    """One environment: a Stage named after it (``dev``) holding the stack ``LatestApk`` (``LatestApk-dev``)."""

    def __init__(
        self,
        scope: Construct,
        *,
        env: Environment,
        target: Target,
        code_dir: Path,
        build: BuildVersion,
    ) -> None:
        super().__init__(scope, env.name)
        self.stack = ServiceStack(self, APP_NAME, env=env, target=target, code_dir=code_dir, build=build)
