"""Generation and drift: ``generate`` writes every file the model renders, ``drift`` names what differs, the
committed files are in sync, and the ``adapters-check`` step fails on drift with one clear line."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from cicd import pipeline
from cicd.adapters import cli, extras, guide
from cicd.adapters.plan import build_plan
from cicd.adapters.registry import ADAPTERS
from cicd.config import PipelineConfig
from cicd.context import StepContext
from cicd.errors import StepFailed
from tests.adapters.toy import toy_model

ROOT = Path(__file__).resolve().parents[2]


def test_generate_writes_every_file_then_nothing_changes(tmp_path: Path) -> None:
    written = cli.generate(tmp_path)
    rel = {str(p.relative_to(tmp_path)) for p in written}
    assert "ci-adapters/github/.github/workflows/pipeline.yml" in rel
    assert "ci-adapters/gitlab/.gitlab-ci.yml" in rel
    assert {guide.PATH, extras.PRE_COMMIT, extras.DEPENDABOT, extras.RENOVATE} <= rel
    assert all(any(r.startswith(a.folder + "/") for r in rel) for a in ADAPTERS)
    assert cli.generate(tmp_path) == []
    assert cli.drift(tmp_path) == []


def test_drift_names_an_edited_and_a_missing_file(tmp_path: Path) -> None:
    cli.generate(tmp_path)
    edited = tmp_path / "ci-adapters/gitlab/.gitlab-ci.yml"
    edited.write_text(edited.read_text() + "# hand edit\n")
    (tmp_path / "ci-adapters/jenkins/Jenkinsfile").unlink()
    problems = cli.drift(tmp_path)
    assert "ci-adapters/gitlab/.gitlab-ci.yml differs from what the model renders" in problems
    assert "ci-adapters/jenkins/Jenkinsfile is missing" in problems


def test_a_model_change_flows_into_every_adapter(tmp_path: Path) -> None:
    cli.generate(tmp_path, model=toy_model())
    for adapter in ADAPTERS:
        texts = "\n".join(p.read_text() for p in (tmp_path / adapter.folder).rglob("*") if p.is_file())
        assert "uv run inv promote --to prod" in texts and "--target" not in texts, adapter.name
        assert "CICD_TARGET" in texts, adapter.name  # set once, where the tool sets variables for every job
        assert "uv run inv adapters-check" in texts, adapter.name


@pytest.mark.component  # the committed ci-adapters/ files against the project's settings
def test_committed_files_are_what_the_model_renders() -> None:
    assert cli.drift(ROOT) == [], "run `inv adapters.generate` and commit"


def test_check_reports_parity_properties_and_lines_without_validators(tmp_path: Path) -> None:
    cli.generate(tmp_path, model=toy_model())
    report = cli.check(tmp_path, model=toy_model(), validators=False)
    assert report.failed == []
    assert set(report.lines) == {a.name for a in ADAPTERS}
    text = cli.describe(report)
    assert "lines   github" in text and "(anchor: 214" in text
    (tmp_path / "ci-adapters/github/.github/workflows/pipeline.yml").write_text("# nothing\njobs: {}\n")
    broken = cli.check(tmp_path, model=toy_model(), validators=False)
    assert any("differs" in p for p in broken.drift)
    assert any(p.startswith("github pr: never runs") for p in broken.parity)


def test_the_step_fails_on_drift_with_one_line_and_the_fix(
    tmp_path: Path, make_ctx: Callable[..., StepContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    ctx = make_ctx(root=tmp_path, step="adapters-check")
    monkeypatch.setattr(cli, "check", lambda root, **kw: cli.CheckReport(drift=["ci-adapters/x is missing"]))
    with pytest.raises(StepFailed) as err:
        cli.adapters_check(ctx)
    assert str(err.value) == "adapters: ci-adapters/x is missing (run `inv adapters.generate` and commit)"
    assert err.value.return_code == 1


def test_the_step_passes_and_names_skipped_validators(
    make_ctx: Callable[..., StepContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cicd.adapters.validate import Validation

    report = cli.CheckReport(
        validations=[
            Validation("github", "actionlint", "pipeline.yml", "passed"),
            Validation("jenkins", "npm-groovy-lint", "Jenkinsfile", "skipped", "java not installed"),
        ]
    )
    monkeypatch.setattr(cli, "check", lambda root, **kw: report)
    outcome = cli.adapters_check(make_ctx(step="adapters-check"))
    assert outcome is not None
    assert outcome.reason == "1 validations passed; skipped: npm-groovy-lint (java not installed)"


def test_pre_commit_hooks_call_the_fast_tasks_of_the_model() -> None:
    doc = yaml.safe_load(extras.pre_commit(build_plan(toy_model(), PipelineConfig())))
    hooks = {h["id"]: h for h in doc["repos"][0]["hooks"]}
    assert hooks["lint"]["entry"] == "uv run inv lint" and hooks["lint"]["language"] == "system"
    assert "unit-test" not in hooks  # tests run before a push, with the whole selection
    project = yaml.safe_load(extras.pre_commit(build_plan(pipeline.MODEL, PipelineConfig())))
    assert {h["id"] for h in project["repos"][0]["hooks"]}.isdisjoint({"unit-test", "component-test", "coverage"})
    assert hooks["pr-checks"]["stages"] == ["pre-push"]
    import re

    assert re.match(hooks["lint"]["files"], "cicd/adapters/plan.py")
    assert not re.match(hooks["lint"]["files"], "README.md")


def test_dependency_updates_cover_every_ecosystem() -> None:
    doc = yaml.safe_load(extras.dependabot())
    assert {u["package-ecosystem"] for u in doc["updates"]} == {"uv", "npm", "github-actions", "pub"}
    import json

    renovate = json.loads(extras.renovate())
    assert {"pep621", "npm", "pub", "github-actions", "gitlabci", "circleci", "bitbucket-pipelines"} <= set(
        renovate["enabledManagers"]
    )
    assert any("pins" in m["managerFilePatterns"][0] for m in renovate["customManagers"])


def test_guide_has_the_graph_the_tables_and_every_adapter_verbatim() -> None:
    plan = build_plan(toy_model(), PipelineConfig())
    text = guide.render(plan)[guide.PATH]
    assert "```mermaid\nflowchart LR" in text
    for adapter in ADAPTERS:
        assert f"### {adapter.title}" in text
        for rendered in adapter.render(plan):
            assert rendered.text.rstrip("\n") in text
    assert "| **One deploy at a time** |" in text
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert any(r.startswith("| **Step cache") for r in rows)
    for row in rows:  # an unescaped pipe inside a cell would add a column
        assert len(re.split(r"(?<!\\)\|", row)) == len(ADAPTERS) + 3, row
    assert "[^bb-run]: Executed here" in text
