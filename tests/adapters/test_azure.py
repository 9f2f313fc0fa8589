"""Azure Pipelines specifics: the target variable, per-stage variable groups, the credential condition, the artifact
hand-off by name, the ManualValidation gate (only with the approval switch on) and ``set -e`` in multi-line scripts."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from cicd import pipeline
from cicd.adapters import azure
from cicd.adapters.facts import Handoff
from cicd.adapters.plan import build_plan
from cicd.config import PipelineConfig


def _text(approval: bool) -> str:
    return azure.render(build_plan(pipeline.MODEL, PipelineConfig(approval_before_prod=approval)))[0].text


def _stages(text: str) -> dict[str, dict[str, Any]]:
    return {str(s["stage"]): s for s in yaml.safe_load(text)["stages"]}


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = job["strategy"]["runOnce"]["deploy"]["steps"] if "deployment" in job else job["steps"]
    return steps


@pytest.mark.parametrize("approval", [False, True])
def test_target_is_set_once_and_each_stage_takes_its_own_role(approval: bool) -> None:
    text = _text(approval)
    assert yaml.safe_load(text)["variables"]["CICD_TARGET"] == "aws"
    assert "--target" not in text
    stages = _stages(text)
    for env in ("dev", "preprod", "prod"):
        assert stages[env]["variables"] == [{"group": f"aws-{env}"}]
        steps = _steps(stages[env]["jobs"][0])
        login = next(s for s in steps if s.get("task") == "AzureCLI@2")
        assert login["condition"] == "and(succeeded(), eq(variables['CICD_TARGET'], 'aws'))"
        assert login["inputs"]["azureSubscription"] == f"aws-{env}"
        assert "##vso[task.setvariable variable=AWS_WEB_IDENTITY_TOKEN_FILE]" in login["inputs"]["inlineScript"]
        assert not any("uv run inv" in str(s.get("inputs", {}).get("inlineScript", "")) for s in steps)


def test_each_job_hands_the_artifact_to_the_next_by_name() -> None:
    facts = azure.facts({azure.PATH: _text(False)})
    chain = [("flutter-build", None), ("package", "flutter-build"), ("dev", "package"), ("preprod", "dev")]
    chain.append(("prod", "preprod"))
    for job_id, source in chain:
        job = facts.job(job_id)
        assert job.hands_on == [Handoff(f"artifact-{job_id}", (".cicd/artifact",), root=".cicd/artifact")]
        expected = [Handoff(f"artifact-{source}", dest=".cicd/artifact")] if source else []
        assert job.receives == expected, job_id


def test_a_deployment_job_without_download_none_gets_every_artifact_beside_the_sources() -> None:
    text = re.sub(r"^ *- \{download: none\}\n", "", _text(False), flags=re.MULTILINE)
    received = azure.facts({azure.PATH: text}).job("preprod").receives
    assert Handoff("artifact-package", dest="../artifact-package") in received
    assert received[-1] == Handoff("artifact-dev", dest=".cicd/artifact")


def test_the_gate_exists_only_with_the_approval_switch() -> None:
    assert "ManualValidation" not in _text(False)
    stage = _stages(_text(True))["approve_prod"]
    # the read-only identity: its group holds the change-set role's ARN (and APPROVERS), its connection logs in
    assert stage["variables"] == [{"group": "aws-prod-change-set"}]
    job, gate = stage["jobs"]
    script = "\n".join(str(s.get("script", "")) for s in job["steps"])
    assert "uv run inv change-set --env prod" in script and "inv approve" not in script
    logins = [s for s in job["steps"] if s.get("task") == "AzureCLI@2"]
    assert [s["inputs"]["azureSubscription"] for s in logins] == ["aws-prod-change-set"]
    assert gate["pool"] == "server" and int(gate["timeoutInMinutes"]) > gate["steps"][0]["timeoutInMinutes"]
    inputs = gate["steps"][0]["inputs"]
    assert gate["steps"][0]["task"] == "ManualValidation@1"
    assert inputs["approvers"] == "$(APPROVERS)" and inputs["allowApproversToApproveTheirOwnRuns"] is False
    assert azure.facts({azure.PATH: _text(True)}).job("prod").gate


def test_multi_line_scripts_stop_at_the_first_failing_line() -> None:
    for stage in _stages(_text(True)).values():
        for job in stage["jobs"]:
            for step in _steps(job) if "steps" in job or "strategy" in job else []:
                body = str(step.get("script") or (step.get("inputs") or {}).get("inlineScript") or "")
                if "\n" in body:
                    assert body.startswith("set -e\n"), body
