"""Fixtures of the reliability suites (see ``harness.py`` for how they run the pipeline)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability import harness


@pytest.fixture(scope="session")
def deployed_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Project]:
    """One copy where the pipeline ran once (dev, preprod and prod deployed on its own local AWS), shared by the
    suites: a deployment is the expensive part, and every case says what it expects relative to what it found."""
    project = harness.deployed_copy(tmp_path_factory.mktemp("reliability"))
    try:
        yield project
    finally:
        project.down()
