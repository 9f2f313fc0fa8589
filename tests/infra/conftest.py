"""Session fixtures: the CDK app for each target is built and synthesized once (cdk-nag included), and every
test reads the same stacks (``Template.from_stack``) and assemblies."""

from __future__ import annotations

import pytest

from cicd import config as cfg
from tests.infra.infra_helpers import Built, build


@pytest.fixture(scope="session")
def local(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("local"), cfg.LOCAL)


@pytest.fixture(scope="session")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("aws"), cfg.AWS)


@pytest.fixture(scope="session", params=["local", "aws"])
def built(request: pytest.FixtureRequest) -> Built:
    """Each target in turn (for properties that hold on both)."""
    value = request.getfixturevalue(request.param)
    assert isinstance(value, Built)
    return value
