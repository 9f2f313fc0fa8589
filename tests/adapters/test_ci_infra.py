"""The CI side of AWS (infra/ci): OIDC providers, per-environment roles with narrow trust, and the CodePipeline
stack built from the same plan as the CodeBuild adapter. CDK assertions on one synthesized app (slow)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from cicd import pipeline
from cicd.adapters import codebuild, codecatalyst
from cicd.adapters.facts import as_list
from cicd.adapters.plan import build_plan
from cicd.config import ENVIRONMENTS, PipelineConfig
from cicd.errors import ConfigError
from infra.ci.settings import CiSettings

SETTINGS: dict[str, Any] = {
    "github": {"repository": "example/apk-pipeline"},
    "gitlab": {"project": "example/apk-pipeline"},
    "circleci": {"organization_id": "org-uuid", "project_id": "proj-uuid"},
    "bitbucket": {
        "workspace": "example",
        "workspace_uuid": "{ws}",
        "repository_uuid": "{repo}",
        "environment_uuids": {"dev": "{d}", "preprod": "{pp}", "prod": "{p}"},
    },
    "azure": {"organization_id": "org-guid", "organization": "example", "project": "apk"},
    "codecatalyst": {"space_id": "space-id"},
    "jenkins": {},
    "codepipeline": {
        "connection_arn": "arn:aws:codeconnections:eu-west-1:123456789012:connection/abc",
        "repository": "example/apk-pipeline",
    },
}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"travis": {}}, "unknown CI tool 'travis'"),
        ({"github": {"repo": "x/y"}}, "unknown key ci.github.repo"),
        ({"github": {}}, "ci.github needs repository"),
        ({"github": {"repository": ""}}, "must be a non-empty string"),
        ({"bitbucket": {**SETTINGS["bitbucket"], "environment_uuids": {"dev": "{d}"}}}, "lacks preprod, prod"),
        ("yes", "must be an object"),
    ],
)
def test_bad_ci_settings_are_one_clear_configuration_error(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        CiSettings.parse(data)
    assert err.value.return_code == 2


def test_no_ci_context_means_no_tool() -> None:
    assert CiSettings.parse(None) == CiSettings()


@pytest.fixture(scope="session")
def templates() -> dict[str, Any]:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.ci import PIPELINE_STACK, ROLES_STACK, add_ci_stacks

    app = cdk.App(context={"ci": SETTINGS})
    stacks = add_ci_stacks(app, PipelineConfig(), env=cdk.Environment(account="123456789012", region="eu-west-1"))
    by_name = {s.stack_name: Template.from_stack(s) for s in stacks}
    return {"roles": by_name[ROLES_STACK], "pipeline": by_name[PIPELINE_STACK]}


def _roles(template: Any) -> dict[str, dict[str, Any]]:
    found = template.find_resources("AWS::IAM::Role")
    return {r["Properties"].get("RoleName", key): r["Properties"] for key, r in found.items()}


@pytest.mark.slow
def test_one_role_per_environment_per_federating_tool_with_one_hour_sessions(templates: dict[str, Any]) -> None:
    roles = _roles(templates["roles"])
    for tool in ("github", "gitlab", "circleci", "bitbucket", "azure", "codecatalyst", "jenkins"):
        for env in ENVIRONMENTS:
            role = roles[f"apk-pipeline-{tool}-{env}"]
            assert role["MaxSessionDuration"] == 3600
            assert len(role["ManagedPolicyArns"]) == 1
    templates["roles"].resource_count_is("AWS::IAM::OIDCProvider", 5)
    templates["roles"].resource_count_is("AWS::IAM::InstanceProfile", 3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("role", "condition", "key", "value"),
    [
        (
            "github-prod",
            "StringEquals",
            "token.actions.githubusercontent.com:sub",
            "repo:example/apk-pipeline:environment:prod",
        ),
        ("github-dev", "StringEquals", "token.actions.githubusercontent.com:aud", "sts.amazonaws.com"),
        ("gitlab-dev", "StringEquals", "gitlab.com:sub", "project_path:example/apk-pipeline:ref_type:branch:ref:main"),
        (
            "circleci-dev",
            "StringLike",
            "oidc.circleci.com/org/org-uuid:sub",
            "org/org-uuid/project/proj-uuid/user/*/vcs-origin/*/vcs-ref/refs/heads/main",
        ),
        (
            "bitbucket-preprod",
            "StringLike",
            "api.bitbucket.org/2.0/workspaces/example/pipelines-config/identity/oidc:sub",
            "{repo}:{pp}:*",
        ),
        ("azure-prod", "StringEquals", "vstoken.dev.azure.com/org-guid:sub", "sc://example/apk/aws-prod"),
    ],
)
def test_trust_is_pinned_to_repository_branch_or_environment(
    templates: dict[str, Any], role: str, condition: str, key: str, value: str
) -> None:
    statement = _roles(templates["roles"])[f"apk-pipeline-{role}"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"][condition][key] == value


@pytest.mark.slow
def test_codecatalyst_trust_is_its_space_and_matches_the_adapter(templates: dict[str, Any]) -> None:
    roles = _roles(templates["roles"])
    statements = roles[codecatalyst.role_name("prod")]["AssumeRolePolicyDocument"]["Statement"]
    principals = sorted(s["Principal"]["Service"] for s in statements)
    assert principals == ["codecatalyst-runner.amazonaws.com", "codecatalyst.amazonaws.com"]
    for statement in statements:
        assert ":codecatalyst:::space/space-id/project/*" in json.dumps(statement["Condition"]["ArnLike"])


@pytest.mark.slow
def test_deploy_policy_is_limited_to_the_environments_stack(templates: dict[str, Any]) -> None:
    policies = templates["roles"].find_resources("AWS::IAM::ManagedPolicy")
    dev = next(p for p in policies.values() if p["Properties"]["ManagedPolicyName"] == "apk-pipeline-ci-deploy-dev")
    text = json.dumps(dev["Properties"]["PolicyDocument"])
    assert "stack/LatestApk-dev/*" in text
    assert "LatestApk-prod" not in text and "LatestApk-preprod" not in text
    statements = dev["Properties"]["PolicyDocument"]["Statement"]
    assert not any(s.get("Action") in ("*", "iam:*") for s in statements)


@pytest.mark.slow
def test_codepipeline_matches_the_codebuild_adapter(templates: dict[str, Any]) -> None:
    layout = codebuild.layout(build_plan(pipeline.MODEL, PipelineConfig()))
    found = templates["pipeline"].find_resources("AWS::CodePipeline::Pipeline")
    by_name = {p["Properties"]["Name"]: p["Properties"] for p in found.values()}
    assert set(by_name) == {f"apk-pipeline-{name}" for name in layout}
    for name, spec in layout.items():
        props = by_name[f"apk-pipeline-{name}"]
        assert props["PipelineType"] == "V2"
        assert props["ExecutionMode"] == spec["execution_mode"]
        stages = props["Stages"]
        assert [s["Name"] for s in stages] == ["source", *(s["name"] for s in spec["stages"])]
        for stage, expected in zip(stages[1:], spec["stages"], strict=True):
            got = [(a["Name"], a["ActionTypeId"]["Category"], a["RunOrder"]) for a in stage["Actions"]]
            want = [
                (a["name"], "Approval" if a["type"] == "approval" else "Build", a["run_order"])
                for a in expected["actions"]
            ]
            assert got == want
    assert by_name["apk-pipeline-main"]["ExecutionMode"] == "QUEUED"
    jobs = {a["name"] for spec in layout.values() for s in spec["stages"] for a in s["actions"] if a["type"] == "build"}
    templates["pipeline"].resource_count_is("AWS::CodeBuild::Project", len(jobs))


@pytest.mark.slow
def test_environment_projects_run_under_that_environments_role(templates: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    templates["pipeline"].has_resource_properties(
        "AWS::CodeBuild::Project",
        {"Name": "apk-pipeline-prod", "TimeoutInMinutes": 45, "ServiceRole": Match.any_value()},
    )
    roles = _roles(templates["pipeline"])
    assert {f"apk-pipeline-codebuild-{e}" for e in ("dev", "preprod", "prod")} <= set(roles)
    projects = templates["pipeline"].find_resources("AWS::CodeBuild::Project")
    prod = next(p for p in projects.values() if p["Properties"]["Name"] == "apk-pipeline-prod")
    role_ref = prod["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    role = templates["pipeline"].find_resources("AWS::IAM::Role")[role_ref]
    assert role["Properties"]["RoleName"] == "apk-pipeline-codebuild-prod"


@pytest.mark.slow
def test_the_ci_stacks_pass_cdk_nag_with_every_waiver_written_down(tmp_path: Any) -> None:
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    from infra.ci import add_ci_stacks

    app = cdk.App(outdir=str(tmp_path), context={"ci": SETTINGS})
    add_ci_stacks(app, PipelineConfig(), env=cdk.Environment(account="123456789012", region="eu-west-1"))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()  # raises on any finding without an acknowledgement
    report = json.loads((tmp_path / "validation-report.json").read_text())
    suppressed = [v for p in report["pluginReports"] for v in p.get("suppressedViolations", [])]
    assert suppressed and all(len(v.get("reason", "x" * 20)) >= 20 for v in suppressed)
    assert not any(p["violations"] for p in report["pluginReports"])


@pytest.fixture(scope="session")
def approval_pipeline() -> Any:
    """The pipeline stack with the approval switch on (the gate and the approval job exist only then)."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.ci import PIPELINE_STACK, add_ci_stacks

    app = cdk.App(context={"ci": SETTINGS})
    config = PipelineConfig(approval_before_prod=True)
    stacks = add_ci_stacks(app, config, env=cdk.Environment(account="123456789012", region="eu-west-1"))
    return Template.from_stack(next(s for s in stacks if s.stack_name == PIPELINE_STACK))


def _pipelines(template: Any) -> dict[str, dict[str, Any]]:
    found = template.find_resources("AWS::CodePipeline::Pipeline")
    return {p["Properties"]["Name"]: p["Properties"] for p in found.values()}


def _build_actions(props: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        a["Name"]: a for stage in props["Stages"] for a in stage["Actions"] if a["ActionTypeId"]["Category"] == "Build"
    }


@pytest.mark.slow
def test_codepipeline_sets_the_target_once_and_passes_it_to_every_action(templates: dict[str, Any]) -> None:
    for props in _pipelines(templates["pipeline"]).values():
        assert props["Variables"] == [{"Name": "CICD_TARGET", "DefaultValue": "aws"}]
        for name, action in _build_actions(props).items():
            env = {v["name"]: v["value"] for v in json.loads(action["Configuration"]["EnvironmentVariables"])}
            assert env["CICD_TARGET"] == "#{variables.CICD_TARGET}", name
            assert env["CICD_BRANCH"] == "#{SourceVariables.BranchName}", name


@pytest.mark.slow
def test_codebuild_clones_the_repository_through_the_connection(templates: dict[str, Any]) -> None:
    """A full clone (versions from git, the secrets scan's history): the source hands CodeBuild a clone reference,
    and every project's role may use the connection under either service prefix."""
    arn = SETTINGS["codepipeline"]["connection_arn"]
    for props in _pipelines(templates["pipeline"]).values():
        source = props["Stages"][0]["Actions"][0]
        assert source["Configuration"]["OutputArtifactFormat"] == "CODEBUILD_CLONE_REF"
    projects = templates["pipeline"].find_resources("AWS::CodeBuild::Project")
    policies = templates["pipeline"].find_resources("AWS::IAM::Policy").values()
    for project in projects.values():
        role = project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
        actions: set[str] = set()
        for policy in policies:
            if {"Ref": role} not in policy["Properties"]["Roles"]:
                continue
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if statement.get("Resource") == arn:
                    actions.update(as_list(statement["Action"]))
        assert {"codestar-connections:UseConnection", "codeconnections:UseConnection"} <= actions, role


@pytest.mark.slow
def test_flutter_projects_run_on_an_image_with_the_android_sdk(templates: dict[str, Any]) -> None:
    """``aws/codebuild/standard:7.0`` has no Android SDK: the Flutter jobs run on the pinned Flutter image."""
    from cicd.adapters import pins

    images = {
        p["Properties"]["Name"]: p["Properties"]["Environment"]["Image"]
        for p in templates["pipeline"].find_resources("AWS::CodeBuild::Project").values()
    }
    assert images["apk-pipeline-flutter-build"] == pins.image("instrumentisto/flutter")
    assert images["apk-pipeline-flutter-check"] == pins.image("instrumentisto/flutter")
    assert images["apk-pipeline-package"] == "aws/codebuild/standard:7.0"


@pytest.mark.slow
def test_each_action_takes_the_artifact_handed_on_just_before_it(templates: dict[str, Any]) -> None:
    actions = _build_actions(_pipelines(templates["pipeline"])["apk-pipeline-main"])
    inputs = {name: [i["Name"] for i in a.get("InputArtifacts", [])] for name, a in actions.items()}
    assert inputs["package"] == ["source", "artifact_flutter_build"]
    assert inputs["dev"] == ["source", "artifact_package"]
    assert inputs["preprod"] == ["source", "artifact_dev"]
    assert inputs["prod"] == ["source", "artifact_preprod"]
    for name in ("package", "dev", "preprod", "prod"):
        assert actions[name]["Configuration"]["PrimarySource"] == "source"
        assert f"artifact_{name}" in [o["Name"] for o in actions[name]["OutputArtifacts"]]


@pytest.mark.slow
def test_the_approval_switch_adds_the_change_set_job_and_a_manual_approval(
    templates: dict[str, Any], approval_pipeline: Any
) -> None:
    default = _pipelines(templates["pipeline"])["apk-pipeline-main"]
    assert not any(a["ActionTypeId"]["Category"] == "Approval" for s in default["Stages"] for a in s["Actions"])
    main = _pipelines(approval_pipeline)["apk-pipeline-main"]
    prod = next(s for s in main["Stages"] if s["Name"] == "prod")
    assert [(a["Name"], a["ActionTypeId"]["Category"], a["RunOrder"]) for a in prod["Actions"]] == [
        ("gate-prod", "Approval", 1),
        ("prod", "Build", 2),
    ]
    projects = approval_pipeline.find_resources("AWS::CodeBuild::Project")
    approval = next(p for p in projects.values() if p["Properties"]["Name"] == "apk-pipeline-approve-prod")
    role = approval_pipeline.find_resources("AWS::IAM::Role")[approval["Properties"]["ServiceRole"]["Fn::GetAtt"][0]]
    assert role["Properties"]["RoleName"] == "apk-pipeline-codebuild-prod"  # the diff needs prod's credentials
    spec = {
        r.path: r.text for r in codebuild.render(build_plan(pipeline.MODEL, PipelineConfig(approval_before_prod=True)))
    }
    assert "uv run inv change-set --env prod" in spec["buildspecs/approve-prod.yml"]
    assert "inv approve" not in spec["buildspecs/approve-prod.yml"]


@pytest.mark.parametrize("tool", ["codebuild", "codecatalyst"])
def test_the_aws_tools_hand_the_artifact_on_job_by_job(tool: str) -> None:
    """Read back from the committed files: each main job from package on receives, in .cicd/artifact, what the job
    before it handed on (secondary inputs land outside the working folder; only the copy step brings them in)."""
    from pathlib import Path

    from cicd.adapters.cli import committed_facts
    from cicd.adapters.registry import BY_NAME

    facts = committed_facts(Path(__file__).resolve().parents[2], BY_NAME[tool])
    chain = ["flutter-build", "package", "dev", "preprod", "prod"]
    for before, job_id in itertools.pairwise(chain):
        job = facts.job(job_id)
        handed = [h for h in facts.job(before).hands_on if h.name.startswith("artifact_")]
        assert [h.name for h in job.receives] == [h.name for h in handed], job_id
        assert job.variables["CICD_TARGET"] == "aws"
    dev = facts.job("dev")
    if tool == "codebuild":
        assert dev.receives[0].dest == ".cicd/artifact" and dev.hands_on[-1].root == ".cicd/artifact"
        broken = dict(facts.files)
        broken["buildspecs/dev.yml"] = "\n".join(
            line for line in broken["buildspecs/dev.yml"].splitlines() if "CODEBUILD_SRC_DIR_" not in line
        )
    else:
        assert dev.receives[0].dest == "." and dev.hands_on[0].paths == (".cicd/artifact/**/*",)
        path = ".codecatalyst/workflows/main.yaml"
        broken = dict(facts.files)
        broken[path] = "\n".join(
            line for line in broken[path].splitlines() if "CATALYST_SOURCE_DIR_artifact_package" not in line
        )
    assert BY_NAME[tool].facts(broken).job("dev").receives == []
