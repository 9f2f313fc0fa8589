"""The test tiers' hand-offs reach the coverage job in every adapter, by the tool's own mechanism as each file says
it (what a job hands on, what a later job receives and where), replayed on real folders with the job-by-job
runner's hand-off rules (:mod:`cicd.adapters.jobrun`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cicd.adapters.facts import AdapterFacts
from cicd.adapters.jobrun import Runner
from cicd.adapters.plan import HANDOFF_DIR, Plan
from tests.adapters.conftest import adapter_ids, by_name


def arrived(facts: AdapterFacts, plan: Plan, work: Path) -> dict[str, list[str]]:
    """``{taking job: files of .cicd/handoff/ in its fresh workspace}`` after every giving job handed on a
    workspace holding ``.cicd/handoff/<step>/data-<step>.json``."""
    runner = Runner(facts, source=work, work=work, environ={}, venv=work)
    for job in plan.jobs:
        if not job.handoff:
            continue
        workspace = work / "givers" / job.id
        for step in job.handoff:
            (workspace / HANDOFF_DIR / step).mkdir(parents=True)
            (workspace / HANDOFF_DIR / step / f"data-{step}.json").write_text(step)
        for handoff in facts.job(job.id).hands_on:
            runner.hand_on(handoff, workspace)
    found: dict[str, list[str]] = {}
    for job in plan.jobs:
        if not job.takes:
            continue
        workspace = work / "takers" / job.id
        workspace.mkdir(parents=True)
        for handoff in facts.job(job.id).receives:
            runner.receive(handoff, workspace)
        folder = workspace / HANDOFF_DIR
        found[job.id] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return found


@pytest.mark.parametrize("adapter_name", adapter_ids())
def test_the_coverage_job_receives_both_tiers_hand_offs_where_the_gate_looks(
    adapter_name: str, plans: dict[str, Plan], rendered: dict[tuple[str, str], dict[str, str]], tmp_path: Path
) -> None:
    plan = plans["project"]
    facts = by_name(adapter_name).facts(rendered[(adapter_name, "project")])
    assert arrived(facts, plan, tmp_path) == {
        "coverage": ["component-test/data-component-test.json", "unit-test/data-unit-test.json"]
    }


def test_a_coverage_job_that_downloads_one_tier_only_is_caught(
    plans: dict[str, Plan], rendered: dict[tuple[str, str], dict[str, str]], tmp_path: Path
) -> None:
    text = rendered[("github", "project")][".github/workflows/pipeline.yml"]
    broken, dropped = re.subn(
        r"\n +- \{uses: \"actions/download-artifact@[0-9a-f]+\", with: \{name: handoff-unit-test[^\n]*", "", text
    )
    assert dropped == 1
    facts = by_name("github").facts({".github/workflows/pipeline.yml": broken})
    assert arrived(facts, plans["project"], tmp_path) == {"coverage": ["component-test/data-component-test.json"]}
