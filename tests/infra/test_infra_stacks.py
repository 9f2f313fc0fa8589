"""Security and behaviour properties of the synthesized stacks, per environment and per target."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cicd.config import APK_PREFIX, ENVIRONMENTS, PROJECT
from tests.infra.infra_helpers import ACCOUNT, BUILD, Built

pytestmark = pytest.mark.slow

OUTPUTS = {"ApiUrl", "RestApiId", "ApiStageName", "ApkBucketName", "FunctionName", "WebBucketName", "WebUrl"}


def template(built: Built, env: str) -> dict[str, Any]:
    tpl: dict[str, Any] = built.templates[env].to_json()
    return tpl


def of_type(tpl: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] == kind}


def logical_id(tpl: dict[str, Any], kind: str, contains: str) -> str:
    matches = [k for k in of_type(tpl, kind) if contains in k]
    assert len(matches) == 1, (kind, contains, matches)
    return matches[0]


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return list(policy["Properties"]["PolicyDocument"]["Statement"])


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- buckets --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_bucket_is_private_encrypted_versioned_and_expires_old_versions(built: Built, env: str) -> None:
    tpl = template(built, env)
    buckets = of_type(tpl, "AWS::S3::Bucket")
    assert len(buckets) == 3  # APK, web, access logs
    days = built.environments[env].noncurrent_version_days
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, name
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}, name
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        rules = props["LifecycleConfiguration"]["Rules"]
        assert any(
            r["Status"] == "Enabled" and r["NoncurrentVersionExpiration"] == {"NoncurrentDays": days} for r in rules
        ), name


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_bucket_denies_plain_http(built: Built, env: str) -> None:
    tpl = template(built, env)
    policies = {p["Properties"]["Bucket"]["Ref"]: p for p in of_type(tpl, "AWS::S3::BucketPolicy").values()}
    for bucket in of_type(tpl, "AWS::S3::Bucket"):
        deny = [
            s
            for s in statements(policies[bucket])
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert len(deny) == 1, bucket
        assert deny[0]["Action"] == "s3:*" and deny[0]["Principal"] == {"AWS": "*"}
        resources = json.dumps(deny[0]["Resource"])
        assert bucket in resources and "/*" in resources  # the bucket and its objects


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_apk_and_web_buckets_log_access_to_the_logs_bucket(built: Built, env: str) -> None:
    tpl = template(built, env)
    logs = logical_id(tpl, "AWS::S3::Bucket", "LogsBucket")
    for name, prefix in (("ApkBucket", "apk-bucket/"), ("WebBucket", "web-bucket/")):
        bucket = tpl["Resources"][logical_id(tpl, "AWS::S3::Bucket", name)]
        assert bucket["Properties"]["LoggingConfiguration"] == {
            "DestinationBucketName": {"Ref": logs},
            "LogFilePrefix": prefix,
        }
    assert "LoggingConfiguration" not in tpl["Resources"][logs]["Properties"]
    # The logs bucket admits S3 log delivery only from the two buckets, into their prefixes.
    policy = next(
        p for p in of_type(tpl, "AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": logs}
    )
    allows = [s for s in statements(policy) if s["Effect"] == "Allow"]
    assert {s["Principal"]["Service"] for s in allows} == {"logging.s3.amazonaws.com"}
    assert all(s["Action"] == "s3:PutObject" and "aws:SourceArn" in json.dumps(s["Condition"]) for s in allows)
    assert len(allows) == 2


def test_logs_bucket_waives_its_own_access_logging_with_a_reason(built: Built) -> None:
    tpl = template(built, "dev")
    logs = tpl["Resources"][logical_id(tpl, "AWS::S3::Bucket", "LogsBucket")]
    skips = {s["id"]: s["comment"] for s in logs["Metadata"]["checkov"]["skip"]}
    assert "access-log bucket itself" in skips["CKV_AWS_18"]


@pytest.mark.parametrize(("env", "policy"), [("dev", "Delete"), ("preprod", "Retain"), ("prod", "Retain")])
def test_removal_policy_follows_the_environment(built: Built, env: str, policy: str) -> None:
    tpl = template(built, env)
    for kind in ("AWS::S3::Bucket", "AWS::Logs::LogGroup"):
        for name, resource in of_type(tpl, kind).items():
            assert resource["DeletionPolicy"] == policy, name


# --- Lambda ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_function_configuration(built: Built, env: str) -> None:
    from infra.components.service import HANDLER, MEMORY_MB, TIMEOUT_S

    tpl = template(built, env)
    config = built.environments[env]
    apk = logical_id(tpl, "AWS::S3::Bucket", "ApkBucket")
    log_group = logical_id(tpl, "AWS::Logs::LogGroup", "FunctionLogs")
    built.templates[env].has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.13",
            "Handler": HANDLER,
            "MemorySize": MEMORY_MB,
            "Timeout": TIMEOUT_S,
            "TracingConfig": {"Mode": "Active"},
            "LoggingConfig": {"LogGroup": {"Ref": log_group}},
            "Environment": {
                "Variables": {
                    "APK_BUCKET": {"Ref": apk},
                    "APK_PREFIX": APK_PREFIX,
                    "URL_TTL_DEFAULT": str(config.url_ttl_default),
                    "URL_TTL_MAX": str(config.url_ttl_max),
                    "ENVIRONMENT": env,
                    "BUILD_VERSION": {"Ref": "BuildVersion"},
                    "BUILD_COMMIT": {"Ref": "BuildCommit"},
                    "SERVICE_NAME": "latest-apk",
                }
            },
        },
    )
    functions = of_type(tpl, "AWS::Lambda::Function")
    assert len(functions) == 1
    assert "ReservedConcurrentExecutions" not in next(iter(functions.values()))["Properties"]
    assert tpl["Resources"][log_group]["Properties"]["RetentionInDays"] == config.log_retention_days


def test_build_identity_is_a_deploy_time_parameter_not_baked_into_the_assembly(local: Built) -> None:
    tpl = template(local, "dev")
    params = tpl["Parameters"]
    assert params["BuildVersion"]["Default"] == "0.0.0" and params["BuildVersion"]["AllowedPattern"]
    assert params["BuildCommit"]["Default"] == "unknown" and params["ArtifactDigest"]["Default"] == "none"
    assert BUILD.commit is not None
    assert BUILD.version not in json.dumps(tpl) and BUILD.commit not in json.dumps(tpl)
    assert tpl["Outputs"]["DeployedArtifactDigest"]["Value"] == {"Ref": "ArtifactDigest"}


def test_code_asset_holds_only_the_package_without_caches_or_tests(local: Built) -> None:
    tpl = template(local, "dev")
    function = next(iter(of_type(tpl, "AWS::Lambda::Function").values()))
    asset = (local.assembly / "assembly-dev" / function["Metadata"]["aws:asset:path"]).resolve()
    assert asset.is_dir() and asset.parent == local.assembly.resolve()
    files = sorted(p.relative_to(asset).as_posix() for p in asset.rglob("*") if p.is_file())
    assert files == ["latest_apk/__init__.py", "latest_apk/handler.py", "latest_apk/logic.py"]


# --- IAM ------------------------------------------------------------------------------------------------------


def _function_statements(tpl: dict[str, Any]) -> list[dict[str, Any]]:
    role = tpl["Resources"][
        next(iter(of_type(tpl, "AWS::Lambda::Function").values()))["Properties"]["Role"]["Fn::GetAtt"][0]
    ]
    assert "ManagedPolicyArns" not in role["Properties"]
    assert "Policies" not in role["Properties"]
    role_id = next(k for k, v in tpl["Resources"].items() if v is role)
    found: list[dict[str, Any]] = []
    for policy in of_type(tpl, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found.extend(statements(policy))
    return found


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_function_role_is_least_privilege(built: Built, env: str) -> None:
    tpl = template(built, env)
    apk = logical_id(tpl, "AWS::S3::Bucket", "ApkBucket")
    log_group = logical_id(tpl, "AWS::Logs::LogGroup", "FunctionLogs")
    found = _function_statements(tpl)
    by_action = {action: s for s in found for action in as_list(s["Action"])}
    assert set(by_action) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "s3:GetObject",
        "s3:ListBucket",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }
    assert all("*" not in action for action in by_action)
    assert all(s["Effect"] == "Allow" for s in found)
    assert by_action["s3:GetObject"]["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [apk, "Arn"]}, f"/{APK_PREFIX}*"]]
    }
    assert by_action["s3:ListBucket"]["Resource"] == {"Fn::GetAtt": [apk, "Arn"]}
    assert by_action["s3:ListBucket"]["Condition"] == {"StringLike": {"s3:prefix": [f"{APK_PREFIX}*"]}}
    assert by_action["logs:PutLogEvents"]["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}
    for statement in found:
        if "*" in as_list(statement["Resource"]):
            assert all(a.startswith("xray:") for a in as_list(statement["Action"])), statement
    other_buckets = {k for k in of_type(tpl, "AWS::S3::Bucket") if k != apk}
    assert not any(bucket in json.dumps(found) for bucket in other_buckets)


def test_no_policy_in_any_stack_grants_wildcard_actions(built: Built) -> None:
    for env in ENVIRONMENTS:
        tpl = template(built, env)
        for name, policy in of_type(tpl, "AWS::IAM::Policy").items():
            for statement in statements(policy):
                assert all("*" not in a for a in as_list(statement["Action"])), (env, name, statement)


# --- REST API -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_api_stage_throttles_and_logs(built: Built, env: str) -> None:
    from aws_cdk.assertions import Match

    from infra.components.service import STAGE_NAME

    tpl = template(built, env)
    config = built.environments[env]
    access_logs = logical_id(tpl, "AWS::Logs::LogGroup", "ApiAccessLogs")
    built.templates[env].has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": STAGE_NAME,
            "TracingEnabled": True,
            "AccessLogSetting": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp(r"requestId"),
            },
            "MethodSettings": [
                {
                    "HttpMethod": "*",
                    "ResourcePath": "/*",
                    "LoggingLevel": "INFO",
                    "DataTraceEnabled": False,
                    "MetricsEnabled": True,
                    "ThrottlingRateLimit": config.throttle_rate,
                    "ThrottlingBurstLimit": config.throttle_burst,
                }
            ],
        },
    )
    stage = next(iter(of_type(tpl, "AWS::ApiGateway::Stage").values()))["Properties"]
    assert json.dumps({"Ref": access_logs}) in json.dumps(stage["AccessLogSetting"]["DestinationArn"])
    assert tpl["Resources"][access_logs]["Properties"]["RetentionInDays"] == config.log_retention_days
    assert not of_type(tpl, "AWS::ApiGateway::Account")  # cloud_watch_role=False by default


def _routes(tpl: dict[str, Any]) -> set[tuple[str, str]]:
    resources = of_type(tpl, "AWS::ApiGateway::Resource")

    def path(resource_id: str) -> str:
        props = resources[resource_id]["Properties"]
        parent = props["ParentId"]
        prefix = path(parent["Ref"]) if "Ref" in parent else ""
        return f"{prefix}/{props['PathPart']}"

    return {
        (m["Properties"]["HttpMethod"], path(m["Properties"]["ResourceId"]["Ref"]))
        for m in of_type(tpl, "AWS::ApiGateway::Method").values()
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_api_routes(built: Built, env: str) -> None:
    tpl = template(built, env)
    assert _routes(tpl) == {("GET", "/health"), ("GET", "/apk/latest"), ("GET", "/apk/{version}")}
    for method in of_type(tpl, "AWS::ApiGateway::Method").values():
        assert method["Properties"]["Integration"]["Type"] == "AWS_PROXY"
    # One invoke permission per route for the stage, scoped to the API.
    permissions = of_type(tpl, "AWS::Lambda::Permission")
    assert permissions and all(p["Properties"]["Principal"] == "apigateway.amazonaws.com" for p in permissions.values())


# --- outputs and tags -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_outputs_resolve_without_the_stage_resource(built: Built, env: str) -> None:
    from infra.components.service import STAGE_NAME

    tpl = template(built, env)
    outputs = tpl["Outputs"]
    assert set(outputs) >= OUTPUTS
    stage = logical_id(tpl, "AWS::ApiGateway::Stage", "DeploymentStage")
    assert stage not in json.dumps(outputs)  # moto skips ApiGateway::Stage: no output may reference it
    assert outputs["ApiStageName"]["Value"] == STAGE_NAME
    api = logical_id(tpl, "AWS::ApiGateway::RestApi", "Api")
    assert outputs["RestApiId"]["Value"] == {"Ref": api}
    assert json.dumps(outputs["ApiUrl"]["Value"]).endswith(f'"/{STAGE_NAME}/"]]}}')


def test_web_url_on_local_is_the_bucket_and_on_aws_the_distribution(local: Built, aws: Built) -> None:
    local_tpl, aws_tpl = template(local, "prod"), template(aws, "prod")
    web = logical_id(local_tpl, "AWS::S3::Bucket", "WebBucket")
    assert f'["{web}", "RegionalDomainName"]' in json.dumps(local_tpl["Outputs"]["WebUrl"])
    distribution = logical_id(aws_tpl, "AWS::CloudFront::Distribution", "Distribution")
    assert f'["{distribution}", "DomainName"]' in json.dumps(aws_tpl["Outputs"]["WebUrl"])
    assert "DistributionId" in aws_tpl["Outputs"] and "DistributionId" not in local_tpl["Outputs"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_everything_taggable_carries_environment_and_project(built: Built, env: str) -> None:
    tpl = template(built, env)
    tagged = 0
    for name, resource in tpl["Resources"].items():
        tags = resource.get("Properties", {}).get("Tags")
        if tags is None:
            continue
        tagged += 1
        pairs = {(t["Key"], t["Value"]) for t in tags} if isinstance(tags, list) else set(tags.items())
        assert ("environment", env) in pairs and ("project", PROJECT) in pairs, name
    assert tagged >= 7  # buckets, log groups, role, function, API, stage


def test_stacks_are_pinned_on_aws_and_environment_agnostic_on_local(local: Built, aws: Built) -> None:
    import aws_cdk as cdk

    for env in ENVIRONMENTS:
        assert cdk.Token.is_unresolved(local.stacks[env].account)
        assert (aws.stacks[env].account, aws.stacks[env].region) == (ACCOUNT, "eu-west-1")
        assert aws.stacks[env].stack_name == f"LatestApk-{env}"


# --- per target: alarms, canary, CloudFront -------------------------------------------------------------------


def test_local_target_has_nothing_moto_cannot_create(local: Built) -> None:
    for env in ENVIRONMENTS:
        tpl = template(local, env)
        kinds = {r["Type"] for r in tpl["Resources"].values()}
        assert not {k for k in kinds if k.startswith(("AWS::CloudFront::", "AWS::CodeDeploy::"))}
        assert "AWS::CloudWatch::Alarm" not in kinds
        assert "AWS::Lambda::Alias" not in kinds


@pytest.mark.parametrize(("env", "count"), [("dev", 0), ("preprod", 2), ("prod", 2)])
def test_alarms_where_enabled(aws: Built, env: str, count: int) -> None:
    tpl = template(aws, env)
    alarms = of_type(tpl, "AWS::CloudWatch::Alarm")
    assert len(alarms) == count
    if count:
        metrics = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()}
        assert metrics == {("AWS/Lambda", "Errors"), ("AWS/ApiGateway", "5XXError")}
        for alarm in alarms.values():
            props = alarm["Properties"]
            assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
            assert props["Threshold"] >= 1 and props["TreatMissingData"] == "notBreaching"


def test_prod_on_aws_shifts_traffic_with_a_canary_and_rolls_back_on_alarms(aws: Built) -> None:
    from aws_cdk.assertions import Match

    tpl = template(aws, "prod")
    alias = logical_id(tpl, "AWS::Lambda::Alias", "LiveAlias")
    assert tpl["Resources"][alias]["Properties"]["Name"] == "live"
    alarms = sorted(of_type(tpl, "AWS::CloudWatch::Alarm"))
    aws.templates["prod"].has_resource_properties(
        "AWS::CodeDeploy::DeploymentGroup",
        {
            "AlarmConfiguration": {"Enabled": True, "Alarms": Match.any_value()},
            "AutoRollbackConfiguration": {
                "Enabled": True,
                "Events": Match.array_with(["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]),
            },
        },
    )
    group = next(iter(of_type(tpl, "AWS::CodeDeploy::DeploymentGroup").values()))["Properties"]
    assert "Canary10Percent5Minutes" in json.dumps(group["DeploymentConfigName"])
    assert sorted(a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]) == alarms
    # The alias carries the CodeDeploy update policy, and the API invokes the alias, not $LATEST.
    assert "CodeDeployLambdaAliasUpdate" in tpl["Resources"][alias]["UpdatePolicy"]
    for method in of_type(tpl, "AWS::ApiGateway::Method").values():
        assert alias in json.dumps(method["Properties"]["Integration"]["Uri"])
    # The errors alarm watches the alias (the new version during a canary).
    errors = next(
        a for a in of_type(tpl, "AWS::CloudWatch::Alarm").values() if a["Properties"]["MetricName"] == "Errors"
    )
    dimensions = {d["Name"]: d["Value"] for d in errors["Properties"]["Dimensions"]}
    assert "live" in json.dumps(dimensions["Resource"])


@pytest.mark.parametrize("env", ["dev", "preprod"])
def test_other_environments_deploy_all_at_once(aws: Built, env: str) -> None:
    tpl = template(aws, env)
    assert not of_type(tpl, "AWS::CodeDeploy::DeploymentGroup")
    assert not of_type(tpl, "AWS::Lambda::Alias")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_aws_serves_the_web_bucket_through_cloudfront_with_origin_access_control(aws: Built, env: str) -> None:
    tpl = template(aws, env)
    web = logical_id(tpl, "AWS::S3::Bucket", "WebBucket")
    oac = logical_id(tpl, "AWS::CloudFront::OriginAccessControl", "OriginAccessControl")
    distribution = logical_id(tpl, "AWS::CloudFront::Distribution", "Distribution")
    oac_config = tpl["Resources"][oac]["Properties"]["OriginAccessControlConfig"]
    assert (oac_config["OriginAccessControlOriginType"], oac_config["SigningBehavior"]) == ("s3", "always")
    assert oac_config["SigningProtocol"] == "sigv4"
    config = tpl["Resources"][distribution]["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": [web, "RegionalDomainName"]}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac, "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert "ResponseHeadersPolicyId" in behavior
    assert config["DefaultRootObject"] == "index.html"
    assert config["Logging"]["Bucket"] == {
        "Fn::GetAtt": [logical_id(tpl, "AWS::S3::Bucket", "LogsBucket"), "RegionalDomainName"]
    }
    # The web bucket's policy: deny plain HTTP, allow GetObject to this distribution only.
    policy = next(
        p for p in of_type(tpl, "AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": web}
    )
    (allow,) = [s for s in statements(policy) if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == "s3:GetObject"
    assert set(allow["Condition"]) == {"StringEquals"}
    assert distribution in json.dumps(allow["Condition"]["StringEquals"]["AWS:SourceArn"])


def test_local_web_bucket_has_no_reader_at_all(local: Built) -> None:
    tpl = template(local, "prod")
    web = logical_id(tpl, "AWS::S3::Bucket", "WebBucket")
    policy = next(
        p for p in of_type(tpl, "AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": web}
    )
    assert [s["Effect"] for s in statements(policy)] == ["Deny"]
