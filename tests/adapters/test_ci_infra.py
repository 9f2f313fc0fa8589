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
    "azure": {
        "organization_id": "org-guid",
        "tenant_id": "tenant-guid",
        "subjects": {e: f"/eid1/c/pub/t/VGVuYW50/a/QXBw/sc/org-guid/conn-{e}" for e in ENVIRONMENTS},
    },
    "codecatalyst": {"space_id": "space-id"},
    "jenkins": {
        "issuer": "https://jenkins.example.com/oidc",
        "job": "https://jenkins.example.com/job/apk-pipeline/job/main/",
    },
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
        (  # a misspelt change-set key would silently leave the approval step without a role
            {
                "bitbucket": {
                    **SETTINGS["bitbucket"],
                    "environment_uuids": {"dev": "1", "preprod": "2", "prod": "3", "prod-cs": "4"},
                }
            },
            "unknown keys prod-cs",
        ),
        ({"azure": {k: v for k, v in SETTINGS["azure"].items() if k != "tenant_id"}}, "needs tenant_id"),
        (
            {"azure": {**SETTINGS["azure"], "subjects": dict.fromkeys(ENVIRONMENTS, "sc://x/y/aws-dev")}},
            "not a service connection subject",
        ),
        ({"azure": {"organization_id": "o", "issuer": "vstoken"}}, "needs organization and project"),
        ({"jenkins": {"issuer": "http://jenkins/oidc", "job": "j"}}, "https issuer"),
        ({"bootstrap_qualifier": "a-b"}, "bootstrap qualifier"),
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
    for tool in ("github", "gitlab", "circleci", "codecatalyst", "jenkins"):  # Bitbucket, Azure: when configured
        assert roles[f"apk-pipeline-{tool}-prod-change-set"]["MaxSessionDuration"] == 3600
    templates["roles"].resource_count_is("AWS::IAM::OIDCProvider", 6)
    templates["roles"].resource_count_is("AWS::IAM::InstanceProfile", 0)


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
        ("gitlab-prod", "StringEquals", "gitlab.com:aud", "apk-pipeline-prod"),
        ("jenkins-prod", "StringEquals", "jenkins.example.com/oidc:aud", "apk-pipeline-prod"),
        (
            "jenkins-dev",
            "StringEquals",
            "jenkins.example.com/oidc:sub",
            "https://jenkins.example.com/job/apk-pipeline/job/main/",
        ),
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
        (
            "azure-prod",
            "StringEquals",
            "login.microsoftonline.com/tenant-guid/v2.0:sub",
            "/eid1/c/pub/t/VGVuYW50/a/QXBw/sc/org-guid/conn-prod",
        ),
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


def _policies(template: Any) -> dict[str, list[dict[str, Any]]]:
    found = template.find_resources("AWS::IAM::ManagedPolicy").values()
    return {p["Properties"]["ManagedPolicyName"]: p["Properties"]["PolicyDocument"]["Statement"] for p in found}


def _resolved(value: Any) -> Any:
    from infra.ci.trust import resolve

    return resolve(value, {"AWS::Partition": "aws"})


def _least_privilege_problems(statements: list[dict[str, Any]], env: str) -> list[str]:
    """What a deploy policy of ``env`` must never contain (see infra/ci/roles.py)."""
    from infra.ci.roles import BOOTSTRAP_ROLES  # not at the top: it imports the CDK (tests/infra/conftest.py)

    problems: list[str] = []
    account, region = "123456789012", "eu-west-1"
    bootstrap = {f"arn:aws:iam::{account}:role/cdk-hnb659fds-{k}-role-{account}-{region}" for k in BOOTSTRAP_ROLES}
    others = [e for e in ENVIRONMENTS if e != env]
    for statement in statements:
        actions = as_list(statement["Action"])
        resources = [str(r) for r in as_list(_resolved(statement["Resource"]))]
        if any(a == "*" or a.endswith(":*") for a in actions) and "*" in resources:
            problems.append(f"{statement.get('Sid')}: a service wildcard on every resource")
        if any(a.startswith("iam:") for a in actions):
            problems.append(f"{statement.get('Sid')}: an iam: action")
        if "sts:AssumeRole" in actions and set(resources) != bootstrap:
            problems.append(f"{statement.get('Sid')}: assumes {resources}, not exactly the bootstrap roles")
        for other in others:
            if any(f"-{other}-" in r or f"LatestApk-{other}/" in r for r in resources):
                problems.append(f"{statement.get('Sid')}: names {other}: {resources}")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("owner", ["ci", "codebuild"])
def test_deploy_policies_reach_only_their_environment_through_the_bootstrap_roles(
    templates: dict[str, Any], owner: str
) -> None:
    policies = _policies(templates["roles" if owner == "ci" else "pipeline"])
    for env in ENVIRONMENTS:
        statements = policies[f"apk-pipeline-{owner}-deploy-{env}"]
        assert _least_privilege_problems(statements, env) == []
        text = json.dumps(statements)
        assert f"latestapk-{env}-state-123456789012-eu-west-1" in text
        assert f"stack/LatestApk-{env}/*" in text
    # Breakers: each rule catches what it guards.
    dev = policies[f"apk-pipeline-{owner}-deploy-dev"]
    wide = [*dev, {"Sid": "Wide", "Action": "s3:*", "Resource": "*"}]
    assert any("service wildcard" in p for p in _least_privilege_problems(wide, "dev"))
    iam_write = [*dev, {"Sid": "Iam", "Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/x"}]
    assert any("iam: action" in p for p in _least_privilege_problems(iam_write, "dev"))
    prods = [json.loads(json.dumps(dev).replace("latestapk-dev-", "latestapk-prod-"))]
    assert any("names prod" in p for p in _least_privilege_problems(prods[0], "dev"))
    assume_any = [
        {**s, "Resource": "arn:aws:iam::123456789012:role/*"} if s.get("Sid") == "CdkBootstrapRoles" else s for s in dev
    ]
    assert any("not exactly the bootstrap roles" in p for p in _least_privilege_problems(assume_any, "dev"))


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["apk-pipeline-ci-change-set-prod", "apk-pipeline-codebuild-change-set-prod"])
def test_the_change_set_role_may_only_look_up_and_read_prod(
    templates: dict[str, Any], approval_pipeline: Any, policy: str
) -> None:
    stack = templates["roles"] if "-ci-" in policy else approval_pipeline
    statements = _policies(stack)[policy]
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert not any(a in actions for a in ("s3:PutObject", "cloudformation:CreateChangeSet", "iam:PassRole"))
    assumed = {
        str(r)
        for s in statements
        if "sts:AssumeRole" in as_list(s["Action"])
        for r in as_list(_resolved(s["Resource"]))
    }
    assert assumed == {"arn:aws:iam::123456789012:role/cdk-hnb659fds-lookup-role-123456789012-eu-west-1"}


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
    projects = {
        a["project"] for spec in layout.values() for s in spec["stages"] for a in s["actions"] if a["type"] == "build"
    }
    assert "apk-pipeline-pr-lint" in projects and "apk-pipeline-lint" in projects
    templates["pipeline"].resource_count_is("AWS::CodeBuild::Project", len(projects))


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


@pytest.fixture(scope="session")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Both CI stacks (approval switch on: the gate and the approvers group exist) synthesized with cdk-nag."""
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    from infra.ci import add_ci_stacks

    outdir = tmp_path_factory.mktemp("ci-assembly")
    app = cdk.App(outdir=str(outdir), context={"ci": SETTINGS})
    config = PipelineConfig(approval_before_prod=True)
    add_ci_stacks(app, config, env=cdk.Environment(account="123456789012", region="eu-west-1"))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()  # raises on any finding without an acknowledgement
    return outdir


@pytest.mark.slow
def test_the_ci_stacks_pass_cdk_nag_with_every_waiver_written_down(assembly: Any) -> None:
    report = json.loads((assembly / "validation-report.json").read_text())
    suppressed = [v for p in report["pluginReports"] for v in p.get("suppressedViolations", [])]
    assert suppressed and all(len(v.get("reason", "x" * 20)) >= 20 for v in suppressed)
    assert not any(p["violations"] for p in report["pluginReports"])


@pytest.mark.slow
def test_the_ci_stacks_pass_checkov_with_every_skip_explained(assembly: Any, tmp_path: Any) -> None:
    """checkov as ``iac-scan`` runs it (the isolated checkov of .cicd/tools, same arguments) on the CI templates."""
    import subprocess
    from pathlib import Path

    from cicd import tools
    from cicd.steps.iac import checkov_command, checkov_findings

    checkov = tools.ensure(tools.CHECKOV, Path(__file__).resolve().parents[2])
    run = subprocess.run(checkov_command(checkov, str(assembly), tmp_path), capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-4000:]
    findings = checkov_findings(tmp_path / "results_sarif.sarif")
    assert findings and all(f.reason and len(f.reason) >= 20 for f in findings)  # only skips, each with a reason
    assert {f.rule for f in findings} <= {"CKV_AWS_18", "CKV_AWS_21"}


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
    # the diff reads prod, read-only: not the prod deploy role
    assert role["Properties"]["RoleName"] == "apk-pipeline-codebuild-prod-change-set"
    spec = {
        r.path: r.text for r in codebuild.render(build_plan(pipeline.MODEL, PipelineConfig(approval_before_prod=True)))
    }
    assert "uv run inv change-set --env prod" in spec["buildspecs/approve-prod.yml"]
    assert "inv approve" not in spec["buildspecs/approve-prod.yml"]


@pytest.mark.component  # the committed ci-adapters/ files
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


def _project_roles(template: Any) -> dict[str, str]:
    """Project name -> logical id of its service role."""
    found = template.find_resources("AWS::CodeBuild::Project").values()
    return {p["Properties"]["Name"]: p["Properties"]["ServiceRole"]["Fn::GetAtt"][0] for p in found}


def _role_grants(template: Any, role: str) -> str:
    """Every policy statement attached to one role, as text."""
    policies = template.find_resources("AWS::IAM::Policy").values()
    return json.dumps(
        [p["Properties"]["PolicyDocument"] for p in policies if {"Ref": role} in p["Properties"]["Roles"]]
    )


def _cache_problems(template: Any) -> list[str]:
    """Main must not restore what a pull request wrote; build/approval/deploy projects restore nothing."""
    problems: list[str] = []
    buckets = {k for k in template.find_resources("AWS::S3::Bucket") if k.startswith(("Cachemain", "Artifactsmain"))}
    roles = _project_roles(template)
    projects = {
        p["Properties"]["Name"]: p["Properties"] for p in template.find_resources("AWS::CodeBuild::Project").values()
    }
    for name, props in projects.items():
        cache = props.get("Cache", {"Type": "NO_CACHE"})
        if name.startswith("apk-pipeline-pr-"):
            grants = _role_grants(template, roles[name])
            problems += [f"{name} may reach {b}" for b in buckets if b in grants]
            if any(b in json.dumps(cache) for b in buckets):
                problems.append(f"{name} caches in a main bucket")
        delivery = name.removeprefix("apk-pipeline-") in {"flutter-build", "package", "approve-prod", *ENVIRONMENTS}
        if delivery and cache.get("Type") != "NO_CACHE":
            problems.append(f"{name} has a cache")
    return problems


@pytest.mark.slow
def test_pull_request_projects_cannot_reach_main_caches_and_delivery_projects_have_none(
    approval_pipeline: Any,
) -> None:
    assert _cache_problems(approval_pipeline) == []
    layout = codebuild.layout(build_plan(pipeline.MODEL, PipelineConfig(approval_before_prod=True)))
    spec = {
        r.path: r.text for r in codebuild.render(build_plan(pipeline.MODEL, PipelineConfig(approval_before_prod=True)))
    }
    for stage in layout["main"]["stages"]:
        for action in stage["actions"]:
            if action["type"] == "build" and not action["cache"]:
                assert "\ncache:" not in spec[action["buildspec"]], action["name"]
    assert "\ncache:" in spec["buildspecs/lint.yml"]
    # Breakers: a PR role granted the main cache, or a deploy project given a cache, is caught.
    broken = json.loads(json.dumps(approval_pipeline.to_json()))
    from aws_cdk.assertions import Template

    resources = broken["Resources"]
    main_cache = next(k for k in resources if k.startswith("Cachemain"))
    pr_role = _project_roles(approval_pipeline)["apk-pipeline-pr-lint"]
    policy = next(
        p
        for p in resources.values()
        if p["Type"] == "AWS::IAM::Policy" and {"Ref": pr_role} in p["Properties"]["Roles"]
    )
    policy["Properties"]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::GetAtt": [main_cache, "Arn"]}}
    )
    prod = next(
        p
        for p in resources.values()
        if p["Type"] == "AWS::CodeBuild::Project" and p["Properties"]["Name"] == "apk-pipeline-prod"
    )
    prod["Properties"]["Cache"] = {"Type": "S3", "Location": "x/prod"}
    problems = _cache_problems(Template.from_json(broken))
    assert any("apk-pipeline-pr-lint may reach" in p for p in problems)
    assert "apk-pipeline-prod has a cache" in problems


@pytest.mark.slow
def test_only_the_environments_own_project_may_assume_its_codebuild_role(approval_pipeline: Any) -> None:
    from infra.ci.trust import allows, service

    roles = _roles(approval_pipeline)
    for env in ENVIRONMENTS:
        document = _resolved(roles[f"apk-pipeline-codebuild-{env}"]["AssumeRolePolicyDocument"])
        for project in ("apk-pipeline-dev", "apk-pipeline-prod", "apk-pipeline-approve-prod", "apk-pipeline-pr-lint"):
            arn = f"arn:aws:codebuild:eu-west-1:123456789012:project/{project}"
            request = service("codebuild.amazonaws.com", source_arn=arn, source_account="123456789012")
            assert allows(document, request) == (project == f"apk-pipeline-{env}"), (env, project)
        elsewhere = service(
            "codebuild.amazonaws.com",
            source_arn=f"arn:aws:codebuild:eu-west-1:999999999999:project/apk-pipeline-{env}",
            source_account="999999999999",
        )
        assert not allows(document, elsewhere)
    change_set = _resolved(roles["apk-pipeline-codebuild-prod-change-set"]["AssumeRolePolicyDocument"])
    approval = "arn:aws:codebuild:eu-west-1:123456789012:project/apk-pipeline-approve-prod"
    assert allows(change_set, service("codebuild.amazonaws.com", source_arn=approval, source_account="123456789012"))


@pytest.mark.slow
def test_only_the_approvers_group_may_approve_the_prod_gate(approval_pipeline: Any, templates: dict[str, Any]) -> None:
    templates["pipeline"].resource_count_is("AWS::IAM::Group", 0)
    groups = approval_pipeline.find_resources("AWS::IAM::Group")
    assert [g["Properties"]["GroupName"] for g in groups.values()] == ["apk-pipeline-prod-approvers"]
    statements = _resolved(_policies(approval_pipeline)["apk-pipeline-prod-approvers"])
    pipeline_arn = "arn:aws:codepipeline:eu-west-1:123456789012:apk-pipeline-main"
    assert {(s["Action"], s["Resource"]) for s in statements} == {
        ("codepipeline:PutApprovalResult", f"{pipeline_arn}/prod/gate-prod"),
        ("codepipeline:GetPipelineState", pipeline_arn),
    }
