"""Parity with the model and the "better than the anchors" properties, on every adapter and plan; and every
breaker in ``breakers.py`` (a hand edit or renderer bug) is caught."""

from __future__ import annotations

import pytest

from cicd.adapters.facts import line_count, parity, properties
from cicd.adapters.plan import Plan
from tests.adapters.breakers import BREAKERS, COMMON_TEXT, Breaker
from tests.adapters.conftest import PLANS, adapter_ids, by_name


@pytest.mark.parametrize("plan_name", PLANS)
@pytest.mark.parametrize("adapter_name", adapter_ids())
def test_adapter_is_in_parity_with_the_model_and_holds_every_property(
    adapter_name: str, plan_name: str, plans: dict[str, Plan], rendered: dict[tuple[str, str], dict[str, str]]
) -> None:
    adapter = by_name(adapter_name)
    plan = plans[plan_name]
    facts = adapter.facts(rendered[(adapter_name, plan_name)])
    assert parity(plan, facts) == []
    assert properties(plan, facts, adapter.budget) == []
    assert facts.jobs, "the adapter has no jobs"


def test_line_counts_are_printed_and_below_the_anchors(
    plans: dict[str, Plan], rendered: dict[tuple[str, str], dict[str, str]]
) -> None:
    for name in adapter_ids():
        adapter = by_name(name)
        for plan_name in PLANS:
            lines = line_count(adapter.facts(rendered[(name, plan_name)]))
            print(f"{name:12} {plan_name:16} {lines:4} lines (anchor: {adapter.budget.lines})")
            if adapter.budget.lines is not None:
                assert lines < adapter.budget.lines


CASES = [(name, b) for name in adapter_ids() for b in [*BREAKERS.get(name, []), *COMMON_TEXT]]


def test_every_adapter_has_breakers() -> None:
    assert all(BREAKERS.get(name) for name in adapter_ids())


@pytest.mark.parametrize(("adapter_name", "breaker"), CASES, ids=[f"{n}-{b.name}" for n, b in CASES])
def test_a_broken_adapter_fails_the_checks(
    adapter_name: str, breaker: Breaker, plans: dict[str, Plan], rendered: dict[tuple[str, str], dict[str, str]]
) -> None:
    adapter = by_name(adapter_name)
    plan = plans["toy"]
    files = dict(rendered[(adapter_name, "toy")])
    target = breaker.file or adapter.main_file
    if target.endswith(".json") and breaker in COMMON_TEXT:  # a comment line cannot go into JSON: use a YAML file
        target = next(path for path in sorted(files) if path.endswith(".yml"))
    files[target] = breaker.edit(files[target])
    facts = adapter.facts(files)
    problems = parity(plan, facts) + properties(plan, facts, adapter.budget)
    assert any(breaker.expect in p for p in problems), problems
