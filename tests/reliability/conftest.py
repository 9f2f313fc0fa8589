"""Fixtures of the reliability suites (see ``tests/harness.py`` for how they run the pipeline)."""

from __future__ import annotations

import pytest

from tests import harness


@pytest.fixture(scope="session")
def deployed_project(pipelined_project: harness.FirstRun) -> harness.Project:
    """The copy where the pipeline ran once (dev, preprod and prod deployed on its own local AWS), shared with the
    other slow suites: a deployment is the expensive part, and every case says what it expects relative to what it
    found."""
    first = pipelined_project
    assert first.proc.returncode == 0, harness.tail(first.proc)
    return first.project
