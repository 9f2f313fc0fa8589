"""Shared fixtures: the repository root, the report schema, hand-built step contexts, throw-away project copies;
and the hooks that hold unit tests to the rule of the unit tier (tests/unit_tier.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cicd.context import StepContext
from cicd.sandbox import copy_project, git  # noqa: F401 - git is re-exported for the test modules
from tests.unit_tier import UNIT_TIER

if TYPE_CHECKING:
    from tests.harness import FirstRun

ROOT = Path(__file__).resolve().parent.parent
CI_VARIABLES = (
    "GITHUB_ACTIONS",
    "GITHUB_STEP_SUMMARY",
    "GITLAB_CI",
    "CIRCLECI",
    "JENKINS_URL",
    "CATALYST_WORKFLOW_NAME",
    "TF_BUILD",
    "BITBUCKET_BUILD_NUMBER",
    "CODEBUILD_BUILD_ID",
    "CI",
)
RUN_CONTEXT = (
    "CICD_TARGET",
    "CICD_LOCAL_HOME",
    "CICD_LOCAL_PORT",
    "CICD_CACHE_VERIFY",
    "CICD_CACHE_SECRET",
    "CICD_CACHE_MAX_MB",
    "CICD_BRANCH",
    "CICD_BUILD_COMMIT",
    "CICD_BUILD_VERSION",
    "CICD_REQUIRE_FLUTTER",
    "CICD_DEPLOY_LOCK_TIMEOUT",
    "CICD_SECRET_VARS",
    "CICD_NAG",
    "CICD_UNPINNED",
    "CICD_ACT_STORE",
)
"""Variables that describe the run a pipeline step is part of. The suite describes its own context: when a CI job's
``unit-test`` runs it, the job's target, shared local AWS or cache verification must not change what a test sees.
The integration suite, which a pipeline runs against a deployed environment, keeps its environment."""
if not os.environ.get("CICD_IT_OUTPUTS"):
    for _name in (*RUN_CONTEXT, *CI_VARIABLES):
        os.environ.pop(_name, None)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # Started in the background by a shell without job control, which ignores Ctrl-C for it, and every process
    # inherits that: the tests that press Ctrl-C on a run need the runs to take it, as from a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)


# The rule holds while a unit test's set-up, call and tear-down run (not while pytest reports on them).
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with UNIT_TIER.watching(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with UNIT_TIER.watching(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    with UNIT_TIER.watching(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport() -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A phase in which the unit tier refused something fails with that message, even if the code caught it."""
    report = yield
    if UNIT_TIER.refused:
        first = UNIT_TIER.refused[0]
        report.longrepr = f"{first}\n\n{report.longrepr}" if report.failed and report.longrepr else first
        report.outcome = "failed"
        UNIT_TIER.refused.clear()
    return report


SYSTEM_PACKAGES = {"rsync": "rsync", "java": "default-jre-headless"}
"""The system programs some tests need beyond the README's two commands, with the Debian package of each (the
README's prerequisites name them; `.ci/run` installs them)."""


def needs_program(program: str, why: str) -> pytest.MarkDecorator:
    """Skip, saying why and how to install it, where ``program`` is not installed."""
    return pytest.mark.skipif(
        shutil.which(program) is None,
        reason=f"{why} needs {program}, which is not installed: sudo apt-get install {SYSTEM_PACKAGES[program]}",
    )


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the groups into scheduling scopes
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for ``pytest -n N --dist loadgroup`` (how `.ci/run` spreads the suite over the cores): every test that
    uses the shared pipelined copy runs in one worker, in collection order, since the suites after the end-to-end
    test change that copy; every other module stays whole in one worker, since some modules' tests build on each
    other. Without ``-n`` the groups change nothing."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        uses_copy = "pipelined_project" in getattr(item, "fixturenames", ())
        item.add_marker(pytest.mark.xdist_group("pipelined" if uses_copy else item.nodeid.split("::")[0]))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def report_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((ROOT / "cicd" / "schemas" / "report.schema.json").read_text())
    return schema


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[Callable[..., StepContext]]:
    """Build a StepContext by hand: ``make_ctx(root=..., step="x", env=None)``; logs go to tmp."""
    handles = []

    def factory(
        root: Path = ROOT, step: str = "test-step", env: str | None = None, target: str = "local"
    ) -> StepContext:
        run_dir = tmp_path / "run"
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        log_path = run_dir / "logs" / f"{step}.log"
        handle = log_path.open("w", encoding="utf-8")
        handles.append(handle)
        return StepContext(root=root, run_dir=run_dir, step=step, env=env, target=target, log=handle, log_path=log_path)

    yield factory
    for handle in handles:
        handle.close()


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project")


@pytest.fixture(scope="session")
def pipelined_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    """One copy where `inv pipeline` ran once from a cold start, shared by the slow suites: the end-to-end test
    asserts on that first run, the adapters' local runs restore its step cache, and the reliability suites start
    from its deployed environments (they run last: they change the copy). A cold pipeline is the most expensive
    thing the suite does, so it happens once."""
    from tests.harness import pipelined_copy

    first = pipelined_copy(tmp_path_factory.mktemp("pipelined"))
    try:
        yield first
    finally:
        first.project.down()
