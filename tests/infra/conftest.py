"""Session fixtures: the CDK app for each target is built and synthesized once (cdk-nag included), and every
test reads the same stacks (``Template.from_stack``) and assemblies.

Test modules import the CDK (``aws_cdk``, ``infra.components``, ``infra.waivers``, ``infra.ci.roles``) inside their
tests and fixtures, never at the top: importing it starts the jsii kernel, a node process in the checkout, and a
process started while a module is collected makes the test steps' selection collect that module on every run
(``tests/unit/test_select_audit.py`` checks that importing the test modules starts no process)."""

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
