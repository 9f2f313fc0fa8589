"""Alarms (Lambda ``Errors``, API ``5XXError``) and, for a canary environment, the CodeDeploy deployment group
that shifts traffic to a new Lambda version step by step and rolls back when an alarm fires."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_codedeploy as codedeploy
from constructs import Construct

from infra.waivers import Waiver, waive

if TYPE_CHECKING:
    from cicd.config import Environment
    from infra.components.service import Service

ALARM_PERIOD: Final = cdk.Duration.minutes(1)

DEPLOYMENT_CONFIGS: Final = {
    "AllAtOnce": codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE,
    "Canary10Percent5Minutes": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
    "Canary10Percent10Minutes": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_10_MINUTES,
    "Canary10Percent15Minutes": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_15_MINUTES,
    "Canary10Percent30Minutes": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_30_MINUTES,
    "Linear10PercentEvery1Minute": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE,
    "Linear10PercentEvery2Minutes": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_2_MINUTES,
    "Linear10PercentEvery3Minutes": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_3_MINUTES,
    "Linear10PercentEvery10Minutes": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_10_MINUTES,
}


class Alarms(Construct):
    """One alarm on the function's errors (on the ``live`` alias when there is one) and one on the API's 5XX."""

    def __init__(self, scope: Construct, construct_id: str, *, env: Environment, service: Service) -> None:
        super().__init__(scope, construct_id)
        errors = (service.alias or service.function).metric_errors(period=ALARM_PERIOD, statistic="Sum")
        self.lambda_errors = cw.Alarm(
            self,
            "LambdaErrors",
            alarm_description=f"{env.stack_name}: the function raised errors",
            metric=errors,
            threshold=env.alarm_lambda_errors,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.api_5xx = cw.Alarm(
            self,
            "Api5xx",
            alarm_description=f"{env.stack_name}: the REST API answered 5XX",
            metric=service.api.metric_server_error(period=ALARM_PERIOD, statistic="Sum"),
            threshold=env.alarm_api_5xx,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )

    @property
    def all(self) -> list[cw.IAlarm]:
        return [self.lambda_errors, self.api_5xx]


class CanaryDeployment(Construct):
    """CodeDeploy shifts the ``live`` alias to each new function version with ``env.deployment`` and rolls back
    automatically on a failed or stopped deployment and while any of ``alarms`` is in ALARM."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: Environment,
        service: Service,
        alarms: list[cw.IAlarm],
    ) -> None:
        super().__init__(scope, construct_id)
        if service.alias is None:
            raise ValueError(f"{env.name}: a canary deployment needs the function's live alias")
        self.group = codedeploy.LambdaDeploymentGroup(
            self,
            "DeploymentGroup",
            alias=service.alias,
            deployment_config=DEPLOYMENT_CONFIGS[env.deployment],
            alarms=alarms,
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=bool(alarms)
            ),
        )
        waive(
            self.group,
            Waiver(
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSCodeDeployRoleForLambdaLimited]",
                "AWSCodeDeployRoleForLambdaLimited is the AWS-maintained minimal policy for CodeDeploy's Lambda "
                "traffic shifting (alias updates and hook invocations only)",
            ),
        )
