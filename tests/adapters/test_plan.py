"""The job plan: how the model is cut into CI jobs."""

from __future__ import annotations

import pytest

from cicd import pipeline
from cicd.adapters.plan import build_plan
from cicd.config import PipelineConfig
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
    plan = build_plan(toy_model(), PipelineConfig(approval_before_prod=True))
    assert [j.id for j in plan.order(plan.for_trigger("main"))][-4:] == ["dev", "preprod", "approve-prod", "prod"]
    dev = plan.job("dev")
    # no --target: every task reads CICD_TARGET, which the adapter sets once
    assert dev.commands == ("deploy --env dev", "publish --env dev", "integration-test --env dev")
    assert dev.kind == "deploy" and dev.credentials and dev.downloads and not dev.gated
    assert plan.job("prod").gated and plan.job("prod").needs[0] == "approve-prod"
    approval = plan.job("approve-prod")
    # the approval job shows the change set (with the environment's credentials); it never records an approval
    assert approval.kind == "approval" and approval.credentials and not approval.uploads
    assert not any(c.startswith("approve ") for c in approval.commands)
    # a check that needs exactly one check joins its job (the scan reads the assembly of the same workspace)
    assert plan.job("synth").commands == ("synth", "iac-scan")
    # builds hand on what they built, every environment job hands the artifact on with its evidence
    assert {j.id for j in plan.jobs if j.uploads} == {"flutter-build", "package", "dev", "preprod", "prod"}
    assert plan.handed_from(plan.job("preprod")) == plan.job("dev")
    assert plan.handed_from(plan.job("prod")) == plan.job("preprod")
    assert plan.handed_from(plan.job("dev")) == plan.job("package")
    assert plan.job("flutter-check").flutter and not plan.job("lint").flutter


@pytest.mark.parametrize("approval_step", [True, False])
def test_without_the_approval_switch_there_is_no_approval_job(approval_step: bool) -> None:
    plan = build_plan(toy_model(approval=approval_step))
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


def test_a_check_of_seconds_runs_in_the_job_it_names_and_every_environment_job_runs_dast() -> None:
    plan = build_plan(pipeline.MODEL)
    assert plan.job("lint").commands == ("lint", "api-contract")
    assert "api-contract" not in {j.id for j in plan.jobs}
    assert plan.job("dev").commands == (
        "deploy --env dev",
        "integration-test --env dev",
        "dast --env dev",
        "publish --env dev",
    )
    assert "dast --env preprod" in plan.job("preprod").commands
    assert not any(c.startswith("dast") for c in plan.job("prod").commands)  # prod's smoke test runs the short profile


@pytest.mark.parametrize("host", ["nowhere", "deploy", "package"])
def test_a_check_can_only_share_the_job_of_an_earlier_check(host: str) -> None:
    steps = (
        Step("package", "m:f", "d", stage="build", triggers=frozenset({"main"})),
        Step("deploy", "m:f", "d", stage="deploy", envs=("dev",), triggers=frozenset({"main"})),
        Step("quick", "m:f", "d", stage="checks", ci_job=host),
    )
    with pytest.raises(ConfigError, match=rf"'quick' shares the CI job of '{host}'"):
        Model(steps)


def test_the_two_test_tiers_run_in_parallel_jobs_and_hand_their_data_to_the_coverage_job() -> None:
    """Each tier is a job of its own (they run side by side); the gate's job runs after both and takes their
    hand-offs; nothing else takes them (``package`` needs the tiers to pass, not their data)."""
    plan = build_plan(pipeline.MODEL)
    unit, component, gate = plan.job("unit-test"), plan.job("component-test"), plan.job("coverage")
    assert (unit.commands, component.commands, gate.commands) == (("unit-test",), ("component-test",), ("coverage",))
    assert not unit.needs and not component.needs and set(gate.needs) == {"unit-test", "component-test"}
    assert unit.handoff == ("unit-test",) and unit.handoff_paths == (".cicd/handoff/unit-test",)
    assert component.handoff_name == "handoff-component-test"
    assert gate.takes == ("unit-test", "component-test") and gate.kind == "check" and gate.on_pr
    assert {j.id for j in plan.jobs if j.takes} == {"coverage"}
    assert {j.id for j in plan.jobs if j.handoff} == {"unit-test", "component-test"}
    assert [j.id for j in plan.first_checks if j.id in ("unit-test", "component-test", "coverage")] == [
        "unit-test",
        "component-test",
    ]


def test_a_step_may_read_only_the_hand_off_of_a_step_it_needs() -> None:
    from cicd.errors import ConfigError
    from cicd.pipeline import Model, Step

    tier = Step("tier", "m:t", "t", stage="checks", outputs=("reports/d",), handoff=("reports/d",))
    with pytest.raises(ConfigError, match=r"step 'gate' reads the hand-off of \['tier'\]: each must be a step it"):
        Model((tier, Step("gate", "m:g", "g", stage="checks", reads=("tier",))))
    with pytest.raises(ConfigError, match=r"reads the hand-off of \['lint'\]"):
        Model(
            (
                Step("lint", "m:l", "l", stage="checks"),
                Step("gate", "m:g", "g", stage="checks", needs=("lint",), reads=("lint",)),
            )
        )
