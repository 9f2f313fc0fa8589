"""The service: the ``latest_apk`` Lambda function behind an API Gateway REST API.

Routes: ``GET /health``, ``GET /apk/latest``, ``GET /apk/{version}`` (``proxy=False``: anything else is answered
by API Gateway itself). The function runs under its own role with exactly three permissions: write to its own
log group, ``s3:GetObject`` on ``apk/*`` and ``s3:ListBucket`` on the APK bucket restricted to the ``apk/`` prefix
(plus the two X-Ray write actions that active tracing adds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cicd.config import APK_PREFIX, SERVICE_NAME
from infra.components.storage import removal_policy
from infra.waivers import Waiver, arn_token, waive

if TYPE_CHECKING:
    from pathlib import Path

    from aws_cdk import aws_s3 as s3

    from cicd.config import Environment, Target
    from cicd.versioning import BuildVersion

HANDLER: Final = "latest_apk.handler.handler"
RUNTIME: Final = lambda_.Runtime.PYTHON_3_13
STAGE_NAME: Final = "v1"
MEMORY_MB: Final = 256
TIMEOUT_S: Final = 10
# What the code asset leaves out of functions/ (glob patterns, relative to functions/).
CODE_EXCLUDES: Final = (
    "**/__pycache__",
    "**/*.pyc",
    "**/tests",
    "**/test_*.py",
    "**/*_test.py",
    "**/conftest.py",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ruff_cache",
    "**/*.egg-info",
)

RETENTION: Final = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}

LOG_KMS = (
    "CloudWatch Logs encrypts these log groups at rest with service-owned keys; they hold request metadata and "
    "the service's own log lines, no secrets, so a customer-managed KMS key per environment is not warranted"
)
PUBLIC_API = (
    "public read-only endpoint by design: the app and the web page fetch the newest release without an "
    "account; answers carry release metadata and short-lived presigned URLs only, and stage throttling bounds use"
)
NO_WAF = (
    "no WAF web ACL: the API is read-only and bounded by per-stage throttling (rate and burst from the "
    "environment table); a web ACL's fixed monthly cost per environment is not justified for this service"
)


def log_group(scope: Construct, construct_id: str, env: Environment) -> logs.LogGroup:
    group = logs.LogGroup(
        scope,
        construct_id,
        retention=RETENTION[env.log_retention_days],
        removal_policy=removal_policy(env),
    )
    waive(group, Waiver("CKV_AWS_158", LOG_KMS))
    return group


class Service(Construct):
    """The Lambda function (``self.function``; ``self.handler`` is what the API invokes: the function, or its
    ``live`` alias when a canary deployment is configured) and the REST API (``self.api``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: Environment,
        target: Target,
        apk_bucket: s3.IBucket,
        code_dir: Path,
        build: BuildVersion,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = log_group(self, "FunctionLogs", env)
        self.role = iam.Role(
            self,
            "FunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{SERVICE_NAME} ({env.name}): read APK builds, write own logs and traces",
        )
        self.log_group.grant_write(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadApkObjects",
                actions=["s3:GetObject"],
                resources=[apk_bucket.arn_for_objects(f"{APK_PREFIX}*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListApkPrefix",
                actions=["s3:ListBucket"],
                resources=[apk_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{APK_PREFIX}*"]}},
            )
        )
        environment = {
            "APK_BUCKET": apk_bucket.bucket_name,
            "APK_PREFIX": APK_PREFIX,
            "URL_TTL_DEFAULT": str(env.url_ttl_default),
            "URL_TTL_MAX": str(env.url_ttl_max),
            "ENVIRONMENT": env.name,
            "BUILD_VERSION": build.version,
            "SERVICE_NAME": SERVICE_NAME,
        }
        if build.commit:
            environment["BUILD_COMMIT"] = build.commit
        self.function = lambda_.Function(
            self,
            "Function",
            description=f"{SERVICE_NAME} {env.name}: newest APK metadata and presigned download URL",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(code_dir), exclude=list(CODE_EXCLUDES)),
            memory_size=MEMORY_MB,
            timeout=cdk.Duration.seconds(TIMEOUT_S),
            tracing=lambda_.Tracing.ACTIVE,
            role=self.role,
            log_group=self.log_group,
            environment=environment,
            reserved_concurrent_executions=env.reserved_concurrency,
        )
        objects = f"{arn_token(self, apk_bucket)}/{APK_PREFIX}*"
        waive(
            self.role,
            Waiver(
                f"AwsSolutions-IAM5[Resource::{objects}]",
                f"s3:GetObject is limited to the {APK_PREFIX} prefix of the APK bucket; the version folders below "
                "it are created by each release, so they cannot be listed one by one",
            ),
            Waiver(
                "AwsSolutions-IAM5[Resource::*]",
                "only xray:PutTraceSegments and xray:PutTelemetryRecords (added by active tracing) use Resource *: "
                "X-Ray does not support resource-level permissions for them",
            ),
        )
        waive(
            self.function,
            Waiver(
                "AwsSolutions-L1",
                f"{RUNTIME.name} is a supported Lambda runtime chosen on purpose; the project moves to a newer one "
                "deliberately (one constant, RUNTIME in this module) once the handler's tests run on it",
            ),
            Waiver(
                "CKV_AWS_116",
                "API Gateway invokes the function synchronously; a dead-letter queue only applies to "
                "asynchronous invocations",
            ),
            Waiver(
                "CKV_AWS_117",
                "the function reaches only S3 and X-Ray public endpoints and no private resources; a VPC would add "
                "NAT cost and cold-start latency without isolating anything",
            ),
            Waiver(
                "CKV_AWS_173",
                "the environment variables hold no secrets (bucket name, prefix, TTLs, environment and version "
                "labels); Lambda encrypts them at rest with its service key",
            ),
        )
        if env.reserved_concurrency is None:
            waive(
                self.function,
                Waiver(
                    "CKV_AWS_115",
                    "no reserved concurrency by default: new accounts can have a concurrency quota of 10, below the "
                    "100 unreserved executions AWS requires, so reserving fails there; stage throttling bounds "
                    "the load instead (set reserved_concurrency per environment to reserve)",
                ),
            )
        self.handler: lambda_.IFunction = self.function
        self.alias: lambda_.Alias | None = None
        if env.canary_on(target):
            self.alias = lambda_.Alias(self, "LiveAlias", alias_name="live", version=self.function.current_version)
            self.handler = self.alias

        self.access_logs = log_group(self, "ApiAccessLogs", env)
        self.api = apigw.LambdaRestApi(
            self,
            "Api",
            handler=self.handler,
            proxy=False,
            rest_api_name=f"{env.stack_name}-api",
            description=f"{SERVICE_NAME} {env.name}: newest APK build and its download URL",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=env.api_cloudwatch_role and target.name == "aws",
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                description=f"{env.name} build {build.version}",
                throttling_rate_limit=env.throttle_rate,
                throttling_burst_limit=env.throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.INFO,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
            ),
        )
        # The RestApi adds an ``Endpoint`` output built from the Stage, which moto does not create (it would read
        # ".../None/"); the stack outputs ApiUrl from the stage *name* instead.
        self.api.node.try_remove_child("Endpoint")
        self.methods = [
            self.api.root.add_resource("health").add_method("GET"),
        ]
        apk = self.api.root.add_resource("apk")
        self.methods.append(apk.add_resource("latest").add_method("GET"))
        self.methods.append(
            apk.add_resource("{version}").add_method("GET", request_parameters={"method.request.path.version": True})
        )
        self._waive_api()

    def _waive_api(self) -> None:
        role = self.api.node.try_find_child("CloudWatchRole")
        if role is not None:
            waive(
                role,
                Waiver(
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AmazonAPIGatewayPushToCloudWatchLogs]",
                    "AmazonAPIGatewayPushToCloudWatchLogs is the AWS-maintained policy API Gateway's account-wide "
                    "logging role needs; it is created only where api_cloudwatch_role is set for the environment",
                ),
            )
        waive(
            self.api,
            Waiver(
                "AwsSolutions-APIG2",
                "the only inputs are the {version} path segment and the optional expires query parameter; the "
                "function validates both at the edge and answers 400, so a request validator would duplicate it",
            ),
        )
        stage = self.api.deployment_stage
        waive(
            stage,
            Waiver("AwsSolutions-APIG3", NO_WAF),
            Waiver(
                "CKV_AWS_120",
                "no response caching: answers carry presigned URLs that expire, a cache would serve stale or "
                "expired links",
            ),
        )
        for method in self.methods:
            waive(
                method,
                Waiver("AwsSolutions-APIG4", PUBLIC_API),
                Waiver("AwsSolutions-COG4", PUBLIC_API),
                Waiver("CKV_AWS_59", PUBLIC_API),
            )
