"""The model: selections, ordering, dependency resolution and configuration errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cicd import pipeline
from cicd.errors import ConfigError, UsageError
from cicd.pipeline import Model, Node, Step, select, subset


def step(
    name: str, *, needs: tuple[str, ...] = (), triggers: tuple[str, ...] = ("pr", "main"), envs: tuple[str, ...] = ()
) -> Step:
    return Step(name, f"x:{name}", name, stage="s", needs=needs, triggers=frozenset(triggers), envs=envs)


def toy() -> Model:
    return Model(
        (
            step("lint"),
            step("test"),
            step("package", needs=("lint", "test"), triggers=("main",)),
            step("deploy", needs=("package",), triggers=("main",), envs=("dev",)),
            step("itest", needs=("deploy|promote",), triggers=("main",), envs=("dev", "preprod")),
            step("promote", needs=("itest:<previous>",), triggers=("main",), envs=("preprod", "prod")),
        )
    )


def test_pr_is_a_subset_of_main_and_ordered() -> None:
    model = toy()
    assert select(model, "pr") == [Node("lint"), Node("test")]
    main = select(model, "main")
    ids = [n.id for n in main]
    assert ids[:3] == ["lint", "test", "package"]
    assert ids.index("deploy:dev") < ids.index("itest:dev") < ids.index("promote:preprod")
    assert ids.index("promote:preprod") < ids.index("promote:prod")


def test_previous_environment_and_same_environment_needs_resolve() -> None:
    model = toy()
    assert model.needs_of(Node("promote", "prod")) == (Node("itest", "preprod"),)
    assert model.needs_of(Node("promote", "preprod")) == (Node("itest", "dev"),)
    assert model.needs_of(Node("itest", "dev")) == (Node("deploy", "dev"),)
    assert model.needs_of(Node("itest", "preprod")) == (Node("promote", "preprod"),)
    with pytest.raises(ConfigError, match="none runs in dev"):
        Model((step("a", envs=("dev",), needs=("b|c",)), step("b", envs=("prod",)), step("c", envs=("preprod",))))


def test_cycle_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="cycle") as err:
        Model((step("a", needs=("b",)), step("b", needs=("a",))))
    assert err.value.return_code == 2


def test_unknown_dependency_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="unknown step 'nope'"):
        Model((step("a", needs=("nope",)),))


def test_duplicate_step_unknown_trigger_and_environment_are_errors() -> None:
    with pytest.raises(ConfigError, match="defined twice"):
        Model((step("a"), step("a")))
    with pytest.raises(ConfigError, match="trigger"):
        Model((step("a", triggers=("nightly",)),))
    with pytest.raises(ConfigError, match="environment"):
        Model((step("a", envs=("qa",)),))


def test_pr_step_needing_a_main_only_step_is_an_error() -> None:
    model = Model((step("build", triggers=("main",)), step("check", needs=("build",))))
    with pytest.raises(ConfigError, match="does not"):
        select(model, "pr")


def test_from_selects_the_step_and_what_needs_it() -> None:
    model = toy()
    ids = [n.id for n in select(model, "main", start="promote:preprod")]
    assert ids[0] == "promote:preprod"
    assert "lint" not in ids and "package" not in ids
    assert "promote:prod" in ids


def test_from_unknown_step_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown step 'nope'") as err:
        select(toy(), "pr", start="nope")
    assert err.value.return_code == 2
    with pytest.raises(UsageError, match="not part of the pr selection"):
        select(toy(), "pr", start="package")
    with pytest.raises(UsageError, match="unknown trigger"):
        select(toy(), "nightly")


def test_subset_orders_and_expands_environments() -> None:
    ids = [n.id for n in subset(toy(), ["promote", "itest:dev"])]
    assert sorted(ids) == ["itest:dev", "promote:preprod", "promote:prod"]
    assert ids.index("itest:dev") < ids.index("promote:preprod")
    with pytest.raises(UsageError, match="does not run in environment"):
        subset(toy(), ["deploy:prod"])


def test_task_commands() -> None:
    assert step("lint").task_command(None) == "lint"
    assert step("deploy", envs=("dev",)).task_command("dev") == "deploy --env dev"


def test_project_model_pr_selection_holds_the_checks() -> None:
    pr = {n.id for n in select(pipeline.MODEL, "pr")}
    assert {"lint", "typecheck", "unit-test", "component-test", "sast", "secrets-scan", "sca", "sbom"} <= pr
    for s in pipeline.MODEL.steps:
        assert s.doc and s.run.count(":") == 1, s.name
        # A cacheable step's key follows files: its inputs, or the assembly it scans (the synth's inputs without one)
        assert s.inputs or "assembly" in s.key_extras or not s.cacheable, f"cacheable step {s.name} declares no inputs"


def test_project_model_step_functions_exist() -> None:
    from cicd.runner import load_function

    for s in pipeline.MODEL.steps:
        assert callable(load_function(s.run)), s.name


def test_graph_renders_every_node_and_edge() -> None:
    from cicd.graph import mermaid

    text = mermaid(toy())
    assert text.startswith("flowchart LR")
    assert "itest_dev --> promote_preprod" in text
    assert "package --> deploy_dev" in text


@pytest.mark.component  # the project's own README
def test_readme_graph_is_rendered_from_the_current_model(repo_root: Path) -> None:
    from cicd.graph import mermaid, replace_block

    readme = (repo_root / "README.md").read_text()
    assert "flowchart LR" in readme
    assert replace_block(readme, mermaid(pipeline.MODEL)) == readme, "run `uv run inv graph --write`"
