"""Shared fixtures: the repository root, the report schema, hand-built step contexts, throw-away project copies;
and the hooks that hold unit tests to the rule of the unit tier (tests/unit_tier.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cicd import bytecode
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
FORCED_COLOR = ("FORCE_COLOR", "MYPY_FORCE_COLOR", "PY_COLORS", "CLICOLOR_FORCE")
"""What CI files set for coloured logs (the GitHub adapter sets ``FORCE_COLOR``): the suite reads its processes'
output as text, so none of them may colour it."""
if not os.environ.get("CICD_IT_OUTPUTS"):
    for _name in (*RUN_CONTEXT, *CI_VARIABLES):
        os.environ.pop(_name, None)
for _name in FORCED_COLOR:
    os.environ.pop(_name, None)
# Where bytecode writing is off, the suite keeps its bytecode in .cicd/pycache as the pipeline does (cicd.bytecode):
# this process from here on, and every process it starts (the xdist workers, the CLI, the tools, the servers).
if sys.dont_write_bytecode:
    bytecode.keep_in_process()
bytecode.keep(os.environ)
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


PIPELINED = "pipelined"
"""The xdist group of the tests that use the shared pipelined copy (they change it, so they share one worker)."""


def group_of(item: pytest.Item) -> str:
    """The xdist group of a test (see :func:`pytest_collection_modifyitems`)."""
    marker = item.get_closest_marker("xdist_group")
    if marker is not None:
        return str(marker.args[0] if marker.args else marker.kwargs.get("name", ""))
    uses = getattr(item, "fixturenames", ())
    if "pipelined_project" in uses:
        return PIPELINED
    if "pipelined_checkout" in uses:
        return item.nodeid  # it only reads the frozen checkout: alone, so the workers share these tests
    if item.get_closest_marker("spread") is not None:
        return item.nodeid
    return item.nodeid.split("::")[0]


def scheduling_rank(item: pytest.Item, group: str) -> int:
    """Where a test's group comes in the queue of ``--dist loadgroup`` (lower first). The pipelined copy's group
    first: it is the longest and holds the session's cold pipeline, which the checkout tests wait for; then the
    groups of other slow tests; then the checkout tests, by when the cold run is done, each followed by a group of
    the quick rest (:func:`queue_order`); the rest of those last, so the workers end close together."""
    if group == PIPELINED:
        return 0
    if "pipelined_checkout" in getattr(item, "fixturenames", ()):
        return 2
    return 1 if item.get_closest_marker("slow") is not None else 3


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the groups into scheduling scopes
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for ``pytest -n N --dist loadgroup`` (how `.ci/run` spreads the suite over the cores): every test that
    uses the shared pipelined copy runs in one worker, in collection order, since the suites after the end-to-end
    test change that copy; a test that only reads the frozen checkout of that copy's commit is a group of its own;
    a test that names its group keeps it; each test of a module marked ``spread`` is a group of its own; every other
    module stays whole in one worker, since some modules' tests build on each other. In an xdist worker the tests are
    ordered by the groups' :func:`scheduling_rank` (the queue follows that order: ``--no-loadscope-reorder``), each
    group's tests in collection order. Without ``-n`` neither the groups nor the order change anything."""
    ranks: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for item in items:
        group = group_of(item)
        ranks[group] = min(ranks.get(group, 3), scheduling_rank(item, group))
        sizes[group] = sizes.get(group, 0) + 1
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        position = {group: index for index, group in enumerate(queue_order(ranks, sizes))}
        items.sort(key=lambda item: position[group_of(item)])  # stable: collection order within a group


def queue_order(ranks: dict[str, int], sizes: dict[str, int]) -> list[str]:
    """The groups (in collection order, with their :func:`scheduling_rank` and number of tests) in the order of the
    queue. xdist's loadgroup scheduler gives a worker the next group whenever it has two tests or fewer left, so a
    worker that takes a checkout test (a group of one, minutes long) takes the next group at once: alone in the
    queue, the checkout tests piled up on one worker, which ran them one after the other while the other ran out of
    work. So each checkout test is followed by a quick group of more than two tests: a worker takes the two, no
    more."""
    by_rank: dict[int, list[str]] = {}
    for group, rank in ranks.items():
        by_rank.setdefault(rank, []).append(group)
    checkout = by_rank.get(2, [])
    fillers = [g for g in by_rank.get(3, []) if sizes[g] > 2][: len(checkout)]
    rest = [g for g in by_rank.get(3, []) if g not in fillers]
    mixed = [g for pair in zip(checkout, fillers, strict=False) for g in pair]
    return [*by_rank.get(0, []), *by_rank.get(1, []), *mixed, *checkout[len(fillers) :], *rest]


def shared_tmp(factory: pytest.TempPathFactory) -> Path:
    """The session's temporary folder that every pytest-xdist worker sees (each worker's own is inside it)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under xdist, the controller stops the shared pipelined copy's local AWS once every worker ended (a worker
    cannot know whether another still uses it); without xdist, :func:`first_pipeline_run` does. The controller (or
    the only process) drops the bytecode kept for the session's temporary folder, whose sources pytest removes."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    factory = getattr(session.config, "_tmp_path_factory", None)  # what the tmp_path_factory fixture returns
    if not isinstance(factory, pytest.TempPathFactory):
        return
    base = factory.getbasetemp()  # under xdist, the folder the workers' own are in
    if session.config.pluginmanager.has_plugin("dsession"):  # xdist's controller registers it
        from tests.harness import stop_first_run

        stop_first_run(base)
    prefix = os.environ.get(bytecode.PREFIX)
    if prefix:
        shutil.rmtree(Path(prefix) / base.resolve().relative_to(base.resolve().anchor), ignore_errors=True)


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
def first_pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    """The session's cold `inv pipeline` in a copy of the project (:func:`tests.harness.first_run`): made once per
    session, under xdist by whichever worker asks first."""
    from tests.harness import first_run, stop_first_run

    shared = shared_tmp(tmp_path_factory)
    yield first_run(shared)
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # under xdist the controller stops it (pytest_sessionfinish)
        stop_first_run(shared)


@pytest.fixture(scope="session")
def pipelined_project(first_pipeline_run: FirstRun) -> FirstRun:
    """One copy where `inv pipeline` ran once from a cold start, shared by the slow suites: the end-to-end test
    asserts on that first run, and the reliability suites start from its deployed environments (they run last:
    they change the copy). A cold pipeline is the most expensive thing the suite does, so it happens once per
    session."""
    return first_pipeline_run


@pytest.fixture(scope="session")
def pipelined_checkout(first_pipeline_run: FirstRun) -> Path:
    """A clone of the commit where the session's cold `inv pipeline` ran, with that run's step cache, taken before
    any other suite changed the copy (:func:`tests.harness.frozen_checkout`): for tests that only read it (the
    adapters' local runs clone it and restore its step cache). Read-only: tests run in clones of it."""
    return first_pipeline_run.checkout
