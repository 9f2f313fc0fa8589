"""cdk-nag and checkov waivers: nothing open, every waiver written down with its reason, enforce mode blocks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from cicd import config as cfg
from cicd.errors import StepFailed
from cicd.steps import iac
from infra import app as infra_app
from tests.infra.infra_helpers import Built

pytestmark = pytest.mark.slow

# The accepted exceptions, by rule (the finding suffix in brackets dropped). A new waiver must be added here on
# purpose, so none slips in unnoticed.
NAG_WAIVED = {
    "local": {"AwsSolutions-APIG2", "AwsSolutions-APIG3", "AwsSolutions-APIG4", "AwsSolutions-COG4",
              "AwsSolutions-IAM5", "AwsSolutions-L1"},
}  # fmt: skip
NAG_WAIVED["aws"] = NAG_WAIVED["local"] | {
    "AwsSolutions-CFR1",
    "AwsSolutions-CFR2",
    "AwsSolutions-CFR4",
    "AwsSolutions-IAM4",
}


def report(built: Built) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((built.assembly / infra_app.VALIDATION_REPORT).read_text())
    return data


def test_cdk_nag_ran_and_reports_no_open_finding(built: Built) -> None:
    plugins = {p["pluginName"]: p for p in report(built)["pluginReports"]}
    assert "AwsSolutions" in plugins
    for name, plugin in plugins.items():
        assert plugin["violations"] == [], name
        assert plugin["conclusion"] == "success", name
    assert infra_app.count_violations(built.assembly / infra_app.VALIDATION_REPORT) == 0


def test_every_nag_acknowledgement_has_a_reason(built: Built) -> None:
    suppressed = report(built)["pluginReports"][0]["suppressedViolations"]
    waived = {entry["ruleName"].split("[", 1)[0] for entry in suppressed}
    assert waived == NAG_WAIVED[built.target.name]
    for entry in suppressed:
        assert len(entry["reason"].strip()) >= 20, entry["ruleName"]
        assert entry["acknowledgedId"] == f"AwsSolutions::{entry['ruleName']}"


def test_nag_findings_of_the_assembly_are_all_waived_and_located(built: Built) -> None:
    findings = iac.nag_findings(built.assembly)
    assert findings and all(f.waived for f in findings)
    assert all(f.template and f.template.endswith(".template.json") and f.line for f in findings)


def test_every_checkov_skip_in_the_templates_has_a_comment(built: Built) -> None:
    skips: list[dict[str, str]] = []
    for stack in iac.assembly_stacks(built.assembly):
        template = json.loads((built.assembly / stack.template).read_text())
        for resource in template["Resources"].values():
            skips += resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    assert {s["id"] for s in skips} >= {"CKV_AWS_18", "CKV_AWS_59", "CKV_AWS_115", "CKV_AWS_158"}
    for skip in skips:
        assert set(skip) == {"id", "comment"} and len(skip["comment"].strip()) >= 20, skip


@pytest.mark.parametrize(
    ("rule", "reason", "problem"),
    [
        ("AwsSolutions-S1", "", "needs a written reason"),
        ("AwsSolutions-S1", "   because   ", "needs a written reason"),
        ("S1", "a reason that is long enough to count", "unknown rule id"),
        ("CKV_GCP_1", "a reason that is long enough to count", "unknown rule id"),
    ],
)
def test_waiver_requires_a_known_rule_and_a_reason(rule: str, reason: str, problem: str) -> None:
    from infra.waivers import Waiver

    with pytest.raises(ValueError, match=problem):
        Waiver(rule, reason)


def test_checkov_waiver_needs_a_cloudformation_resource() -> None:
    import aws_cdk as cdk
    from constructs import Construct

    from infra.waivers import Waiver, waive

    scope = Construct(cdk.Stack(cdk.App(), "S"), "Plain")
    with pytest.raises(TypeError, match="no CloudFormation resource"):
        waive(scope, Waiver("CKV_AWS_18", "a reason that is long enough to count"))


def _noncompliant_app(settings: infra_app.Settings, outdir: Path) -> tuple[Any, dict[str, Any]]:
    """An app with one bucket that breaks AwsSolutions-S1/S10, for the enforce/report modes."""
    import aws_cdk as cdk
    from aws_cdk import aws_s3 as s3
    from cdk_nag import AwsSolutionsChecks

    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "Bad", synthesizer=cdk.CliCredentialsStackSynthesizer())
    s3.Bucket(stack, "Open")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, {"dev": stack}


def _settings(nag: str) -> infra_app.Settings:
    settings = infra_app.Settings.from_environ(infra_app.ROOT, {"CICD_NAG": nag})
    return dataclasses.replace(settings, nag=nag)


def test_enforce_mode_fails_and_leaves_the_outdir_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infra_app, "build_app", _noncompliant_app)
    outdir = tmp_path / "cdk.out"
    outdir.mkdir()
    (outdir / "previous.txt").write_text("kept")
    with pytest.raises(StepFailed, match=r"unacknowledged finding") as info:
        infra_app.synthesize(_settings("enforce"), outdir)
    assert info.value.return_code == 1
    assert sorted(p.name for p in outdir.iterdir()) == ["previous.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdk.out"]  # no temporary folder left behind


def test_report_mode_publishes_the_assembly_with_its_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infra_app, "build_app", _noncompliant_app)
    outdir = infra_app.synthesize(_settings("report"), tmp_path / "cdk.out")
    assert (outdir / "manifest.json").is_file()
    assert infra_app.count_violations(outdir / infra_app.VALIDATION_REPORT, "AwsSolutions") >= 2
    rules = {f.rule for f in iac.nag_findings(outdir) if not f.waived}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")  # moto names what it skips, as documented
def test_local_templates_create_in_moto_and_every_output_resolves(
    local: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the local target relies on: moto's CloudFormation creates each stack and resolves every output."""
    import io
    import zipfile

    import boto3
    from moto import mock_aws

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        s3 = boto3.client("s3")
        cfn = boto3.client("cloudformation")
        for stack in iac.assembly_stacks(local.assembly):
            assets = json.loads((local.assembly / stack.template.replace(".template.json", ".assets.json")).read_text())
            for asset in assets["files"].values():
                for dest in asset["destinations"].values():
                    bucket = (
                        dest["bucketName"]
                        .replace("${AWS::AccountId}", "123456789012")
                        .replace("${AWS::Region}", "us-east-1")
                    )
                    if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
                        s3.create_bucket(Bucket=bucket)
                    payload = io.BytesIO()
                    with zipfile.ZipFile(payload, "w") as archive:
                        archive.writestr("latest_apk/handler.py", "")
                    s3.put_object(Bucket=bucket, Key=dest["objectKey"], Body=payload.getvalue())
            cfn.create_stack(
                StackName=stack.stack_name,
                TemplateBody=(local.assembly / stack.template).read_text(),
                Capabilities=["CAPABILITY_IAM"],
            )
            described = cfn.describe_stacks(StackName=stack.stack_name)["Stacks"][0]
            assert described["StackStatus"] == "CREATE_COMPLETE"
            outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
            assert set(outputs) >= {"ApiUrl", "RestApiId", "ApiStageName", "ApkBucketName", "WebBucketName"}
            assert not [k for k, v in outputs.items() if not v or "None" in v], outputs
            assert outputs["ApiUrl"] == f"https://{outputs['RestApiId']}.execute-api.us-east-1.amazonaws.com/v1/"
            function = boto3.client("lambda").get_function_configuration(FunctionName=outputs["FunctionName"])
            assert function["Environment"]["Variables"]["APK_BUCKET"] == outputs["ApkBucketName"]
            assert function["Handler"] == "latest_apk.handler.handler"


def test_the_optional_api_logging_role_is_created_and_explained(tmp_path: Path) -> None:
    """``api_cloudwatch_role = true`` (aws target) adds the account-wide API Gateway logging role, still nag-clean."""
    from aws_cdk.assertions import Template

    env = dataclasses.replace(
        infra_app.Settings.from_environ(infra_app.ROOT, {}).config.environment("dev"),
        account="111122223333",
        api_cloudwatch_role=True,
    )
    settings = dataclasses.replace(
        infra_app.Settings.from_environ(infra_app.ROOT, {"CICD_ENVIRONMENTS": "dev"}),
        target=cfg.AWS,
        environments=(env,),
        nag="report",
    )
    outdir = infra_app.synthesize(settings, tmp_path / "cdk.out")
    assert infra_app.count_violations(outdir / infra_app.VALIDATION_REPORT) == 0
    stack = next(iter(iac.assembly_stacks(outdir)))
    template = Template.from_json(json.loads((outdir / stack.template).read_text()))
    template.resource_count_is("AWS::ApiGateway::Account", 1)
