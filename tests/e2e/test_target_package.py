"""A package is built for the target it deploys to: ``CICD_TARGET=aws`` packages what production gets (CloudFront,
alarms, the prod canary), and a deploy to the local target refuses that artifact before touching anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cicd.sandbox import copy_project, git
from tests.harness import Project, no_traceback, tail

pytestmark = pytest.mark.slow

ACCOUNTS = "".join(
    f'\n[tool.cicd.environments.{env}]\naccount = "11112222333{i}"\nregion = "eu-west-1"\n'
    for i, env in enumerate(("dev", "preprod", "prod"))
)


def test_an_aws_package_carries_the_aws_assembly_and_a_local_deploy_refuses_it(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "project", share_node_modules=True)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text(encoding="utf-8") + ACCOUNTS)
    git(root, "commit", "-qam", "accounts for the aws target")
    project = Project(root)
    try:
        packaged = project.inv("package", env={"CICD_TARGET": "aws"})
        assert packaged.returncode == 0, packaged.stdout[-3000:] + packaged.stderr[-2000:]
        manifest = json.loads((root / ".cicd" / "artifact" / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["target"] == "aws"
        prod = next(
            p
            for p in (root / ".cicd" / "artifact" / "cdk.out").rglob("*.template.json")
            if "prod" in p.name and "preprod" not in p.name
        )
        types = {r["Type"] for r in json.loads(prod.read_text(encoding="utf-8"))["Resources"].values()}
        assert {"AWS::CloudFront::Distribution", "AWS::CloudWatch::Alarm", "AWS::CodeDeploy::DeploymentGroup"} <= types
        refused = project.inv("deploy", "--env", "dev", env={"CICD_TARGET": "local"})
        assert refused.returncode == 2, tail(refused)  # a configuration error: the wrong target's artifact
        no_traceback(refused)
        assert "packaged for the aws target: refusing to deploy it to dev on the local target" in refused.stdout
        assert project.server() is None or project.stacks() == {}  # nothing was deployed
    finally:
        project.down()
