"""Jenkins specifics the shared checks cannot see: the stash chain, the target-conditional OIDC binding, and the
``input`` gate (with a ``submitter``) that holds prod only when the approval switch is on."""

from __future__ import annotations

import re

import pytest

from cicd import pipeline
from cicd.adapters import jenkins
from cicd.adapters.facts import AdapterFacts
from cicd.adapters.plan import build_plan
from cicd.config import PipelineConfig


def read(*, approval: bool) -> tuple[str, AdapterFacts]:
    plan = build_plan(pipeline.MODEL, PipelineConfig(approval_before_prod=approval))
    text = jenkins.render(plan)[0].text
    return text, jenkins.facts({jenkins.PATH: text})


@pytest.mark.parametrize("approval", [False, True])
def test_each_stage_unstashes_what_the_one_before_stashed(approval: bool) -> None:
    _, facts = read(approval=approval)
    taken = {j.id: [h.name for h in j.receives] for j in facts.jobs if j.receives}
    kept = {j.id: [(h.name, h.paths, h.root) for h in j.hands_on] for j in facts.jobs if j.hands_on}
    expected = {"package": ["artifact-flutter-build"], "dev": ["artifact-package"], "preprod": ["artifact-dev"]}
    expected["prod"] = ["artifact-preprod"]
    expected["coverage"] = ["handoff-unit-test", "handoff-component-test"]
    if approval:
        expected["approve-prod"] = ["artifact-preprod"]
    assert taken == expected
    assert kept == {
        **{
            job: [(f"artifact-{job}", (".cicd/artifact/**",), ".")]
            for job in ("flutter-build", "package", "dev", "preprod", "prod")
        },
        **{tier: [(f"handoff-{tier}", (f".cicd/handoff/{tier}/**",), ".")] for tier in ("unit-test", "component-test")},
    }


def test_the_target_is_set_once_and_credentials_are_bound_only_for_aws() -> None:
    text, facts = read(approval=True)
    assert re.findall(r"CICD_TARGET = '(\w+)'", text) == ["aws"]
    assert all(j.variables.get("CICD_TARGET") == "aws" for j in facts.jobs)
    helper = text.split("def withAws(", 1)[1].split("\n}\n", 1)[0]
    assert "if (env.CICD_TARGET != 'aws') { return body() }" in helper  # OIDC only: no instance-role way around
    assert "variable: 'AWS_WEB_IDENTITY_TOKEN_FILE'" in helper and "variable: 'AWS_ROLE_ARN'" in helper
    assert {j.id for j in facts.jobs if j.credentials == "oidc"} == {"dev", "preprod", "approve-prod", "prod"}
    assert "--target" not in text


def test_no_gate_without_the_approval_switch() -> None:
    text, facts = read(approval=False)
    assert "input " not in text and "change-set" not in text
    assert not any(j.gate for j in facts.jobs)


def test_with_the_switch_the_change_set_then_an_input_with_a_submitter_holds_prod() -> None:
    text, facts = read(approval=True)
    assert facts.job("approve-prod").commands == ["change-set --env prod"]
    assert not any(c.startswith("approve") for j in facts.jobs for c in j.commands)
    assert [j.id for j in facts.jobs if j.gate] == ["prod"]
    gate = text.split("stage('gate-prod') {", 1)[1].split("\n    }\n", 1)[0]
    assert "agent none" in gate and "submitter: 'prod-approvers'" in gate
    anyone = jenkins.facts({jenkins.PATH: re.sub(r", submitter: '[^']+'", "", text)})
    assert not any(j.gate for j in anyone.jobs), "an input anyone may answer is no approval"
