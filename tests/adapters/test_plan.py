"""The job plan: how the model is cut into CI jobs."""

from __future__ import annotations

import pytest

from cicd import pipeline
from cicd.adapters.plan import build_plan
from cicd.errors import ConfigError
from cicd.pipeline import Model, Step
from tests.adapters.toy import toy_model


def test_every_pr_step_of_the_project_is_a_check_job_and_nothing_deploys() -> None:
    plan = build_plan(pipeline.MODEL)
    pr_commands = [c for j in plan.for_trigger("pr") for c in j.commands]
    assert sorted(pr_commands) == sorted(
        pipeline.MODEL.step(n.step).task_command(n.env) for n in pipeline.select(pipeline.MODEL, "pr")
    )
    assert all(j.kind != "deploy" and not j.credentials for j in plan.for_trigger("pr"))


def test_toy_plan_groups_environments_builds_once_and_gates_prod() -> None:
    plan = build_plan(toy_model())
    assert [j.id for j in plan.order(plan.for_trigger("main"))][-4:] == ["dev", "preprod", "approve-prod", "prod"]
    dev = plan.job("dev")
    assert dev.commands == (
        "deploy --env dev --target aws",
        "publish --env dev --target aws",
        "integration-test --env dev --target aws",
    )
    assert dev.kind == "deploy" and dev.credentials and dev.downloads and not dev.gated
    assert plan.job("prod").gated and plan.job("prod").needs[0] == "approve-prod"
    approval = plan.job("approve-prod")
    assert approval.kind == "approval" and not approval.credentials
    # a check that needs exactly one check joins its job (the scan reads the assembly of the same workspace)
    assert plan.job("synth").commands == ("synth", "iac-scan")
    assert {j.id for j in plan.jobs if j.uploads} == {"flutter-build", "package"}
    assert plan.job("flutter-check").flutter and not plan.job("lint").flutter


def test_without_the_approval_switch_nothing_is_gated() -> None:
    plan = build_plan(toy_model(approval=False))
    assert not any(j.kind == "approval" or j.gated for j in plan.jobs)
    assert plan.job("prod").needs[0] == "preprod"


def test_a_cycle_between_jobs_is_a_configuration_error() -> None:
    # a step without environments that needs a deploy, and a deploy that needs it: fine as nodes, a cycle as jobs
    model = Model(
        (
            Step("deploy", "x:d", "d", stage="deploy", envs=("dev",)),
            Step("report", "x:r", "r", stage="build", needs=("deploy:dev",), triggers=frozenset({"main"})),
            Step("check", "x:c", "c", stage="verify", envs=("dev",), needs=("report",), triggers=frozenset({"main"})),
        )
    )
    with pytest.raises(ConfigError, match="cycle") as err:
        build_plan(model)
    assert err.value.return_code == 2
