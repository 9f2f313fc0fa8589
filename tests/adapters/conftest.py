"""Shared fixtures: plans of the project's model and of the toy trunk model, and every adapter rendered from each."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from cicd import command, pipeline
from cicd.adapters.plan import Plan, build_plan
from cicd.adapters.registry import ADAPTERS, Adapter
from cicd.config import PipelineConfig
from tests.adapters.toy import toy_model

PLANS = ("project", "project-approval", "toy", "toy-no-approval")


def make_plan(name: str) -> Plan:
    """The project's model with the approval switch off (the default) and on; the toy model with its approval step
    and the switch on, and without either."""
    if name.startswith("project"):
        return build_plan(pipeline.MODEL, PipelineConfig(approval_before_prod=name == "project-approval"))
    return build_plan(toy_model(approval=name == "toy"), PipelineConfig(approval_before_prod=name == "toy"))


@pytest.fixture(scope="session")
def plans() -> dict[str, Plan]:
    return {name: make_plan(name) for name in PLANS}


@pytest.fixture(scope="session")
def rendered(plans: dict[str, Plan]) -> dict[tuple[str, str], dict[str, str]]:
    """``{(adapter, plan): {path: text}}`` for every adapter and plan."""
    return {
        (adapter.name, name): {r.path: r.text for r in adapter.render(plan)}
        for adapter in ADAPTERS
        for name, plan in plans.items()
    }


def adapter_ids() -> list[str]:
    return [a.name for a in ADAPTERS]


def by_name(name: str) -> Adapter:
    return next(a for a in ADAPTERS if a.name == name)


@contextlib.contextmanager
def spawned() -> Iterator[list[list[str]]]:
    """The command lines ``cicd.command.run`` starts inside the block, each run for real."""
    calls: list[list[str]] = []
    real = command.run

    def spy(cmd: Sequence[str | os.PathLike[str]], **kwargs: Any) -> command.CommandResult:
        calls.append([os.fspath(c) for c in cmd])
        return real(cmd, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(command, "run", spy)
        yield calls
