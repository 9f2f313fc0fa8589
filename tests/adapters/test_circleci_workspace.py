"""CircleCI specifics the shared checks cannot see: the workspace model of its facts, CICD_TARGET, the OIDC
condition and the approval gate (switch on and off)."""

from __future__ import annotations

import re

import yaml

from cicd import pipeline
from cicd.adapters import circleci
from cicd.adapters.facts import AdapterFacts
from cicd.adapters.plan import Plan, build_plan
from cicd.config import PipelineConfig
from tests.adapters.toy import toy_model


def _text(plan: Plan) -> str:
    return circleci.render(plan)[0].text


def _facts(text: str) -> AdapterFacts:
    return circleci.facts({circleci.PATH: text})


def _main_jobs(text: str) -> list[str]:
    entries = yaml.safe_load(text)["workflows"]["main"]["jobs"]
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def test_every_job_gets_cicd_target_aws_from_its_executor() -> None:
    text = _text(build_plan(pipeline.MODEL, PipelineConfig()))
    doc = yaml.safe_load(text)
    assert "environment" not in doc
    assert all(e["environment"]["CICD_TARGET"] == "aws" for e in doc["executors"].values())
    assert all(job.variables.get("CICD_TARGET") == "aws" for job in _facts(text).jobs)
    assert "--target" not in text


def test_a_job_environment_overrides_its_executor() -> None:
    text = _text(build_plan(pipeline.MODEL, PipelineConfig())).replace(
        '    environment: {AWS_REGION: eu-west-1, UV_NO_SYNC: "1"}',
        '    environment: {AWS_REGION: eu-west-1, UV_NO_SYNC: "1", CICD_TARGET: local}',
        1,
    )
    dev = _facts(text).job("dev")
    assert dev.variables["CICD_TARGET"] == "local"
    assert dev.variables["AWS_REGION"] == "eu-west-1"


def test_the_oidc_token_is_handed_on_only_when_the_target_is_aws() -> None:
    text = _text(build_plan(pipeline.MODEL, PipelineConfig()))
    script = _facts(text).job("dev").script
    condition = script.index('if [ "${CICD_TARGET:-}" != aws ]; then')
    assert condition < script.index("CIRCLE_OIDC_TOKEN_V2") < script.index("uv run inv deploy --env dev")


def test_attach_workspace_gets_every_upstream_layer_in_workflow_order() -> None:
    facts = _facts(_text(build_plan(pipeline.MODEL, PipelineConfig())))
    layers = {j.id: [h.name for h in j.hands_on] for j in facts.jobs}
    assert layers["flutter-build"] == ["workspace:flutter-build"]
    assert layers["package"] == ["workspace:package"]
    assert all(layers[env] == [f"workspace:{env}"] for env in ("dev", "preprod", "prod"))
    tiers = ("unit-test", "component-test")  # the test tiers hand their coverage data to the coverage job
    assert all(layers[t] == [f"workspace:{t}"] for t in tiers)
    assert all(layers[j.id] == [] for j in facts.jobs if j.triggers == {"pr", "main"} and j.id not in tiers)
    received = {j.id: [h.name for h in j.receives] for j in facts.jobs}
    assert received["coverage"] == ["workspace:unit-test", "workspace:component-test"]
    assert facts.job("unit-test").hands_on[0].paths == (".cicd/handoff/unit-test",)
    assert received["flutter-build"] == []
    assert received["package"] == ["workspace:unit-test", "workspace:component-test", "workspace:flutter-build"]
    tier_layers = ["workspace:unit-test", "workspace:component-test"]  # every upstream layer; these go unread
    assert received["preprod"] == [*tier_layers, "workspace:flutter-build", "workspace:package", "workspace:dev"]
    assert received["prod"][-1] == "workspace:preprod", "the newest layer (preprod's evidence) is applied last"
    handoff = facts.job("dev").hands_on[0]
    assert handoff.paths == (".cicd/artifact",) and handoff.root == "."
    assert {h.dest for j in facts.jobs for h in j.receives} == {"."}


def test_paths_are_kept_relative_to_the_persist_root() -> None:
    text = _text(build_plan(pipeline.MODEL, PipelineConfig()))
    moved = re.sub(
        r"(  dev:\n(?:.*\n)*?)      - persist_to_workspace: \{root: \"\.\", paths: \[\.cicd/artifact\]\}",
        r"\1      - persist_to_workspace: {root: .cicd, paths: [artifact]}",
        text,
        count=1,
    )
    assert moved != text
    handoff = _facts(moved).job("dev").hands_on[0]
    assert handoff.paths == (".cicd/artifact",) and handoff.root == ".cicd"


def test_an_environment_job_that_persists_nothing_hands_no_evidence_on() -> None:
    text = _text(build_plan(pipeline.MODEL, PipelineConfig()))
    broken = re.sub(
        r"(  dev:\n(?:.*\n)*?)      - persist_to_workspace: .*\n",
        r"\1",
        text,
        count=1,
    )
    assert broken != text
    facts = _facts(broken)
    assert facts.job("dev").hands_on == []
    assert "workspace:dev" not in [h.name for h in facts.job("preprod").receives]


def test_no_approval_job_with_the_switch_off() -> None:
    text = _text(build_plan(pipeline.MODEL, PipelineConfig()))
    assert "type: approval" not in text
    assert "change-set" not in text
    assert _main_jobs(text)[-2:] == ["preprod", "prod"]


def test_with_the_switch_on_the_approval_job_shows_the_change_set_and_a_hold_gates_prod() -> None:
    for model in (pipeline.MODEL, toy_model()):
        plan = build_plan(model, PipelineConfig(approval_before_prod=True))
        text = _text(plan)
        entries = {
            (e if isinstance(e, str) else next(iter(e))): ({} if isinstance(e, str) else next(iter(e.values())))
            for e in yaml.safe_load(text)["workflows"]["main"]["jobs"]
        }
        assert entries["hold-prod"] == {"type": "approval", "requires": ["approve-prod"]}
        assert "hold-prod" in entries["prod"]["requires"]
        assert entries["approve-prod"]["context"] == ["aws-prod-change-set"]  # the read-only role's ARN
        facts = _facts(text)
        approval = facts.job("approve-prod")
        assert approval.commands == list(plan.job("approve-prod").commands)
        assert approval.credentials == "oidc" and approval.hands_on == []
        assert approval.receives, "the change set is computed from the artifact handed on"
        assert facts.job("prod").gate
        if model is pipeline.MODEL:
            assert approval.commands == ["change-set --env prod"]
            assert not any(c.startswith("approve") for j in facts.jobs for c in j.commands)
