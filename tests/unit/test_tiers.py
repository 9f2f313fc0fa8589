"""The rule of the unit tier (tests/unit_tier.py): a unit test starts no process and opens no project file but
Python source and the tests' own files; a component test may."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.unit_tier import ROOT, UNIT_TIER


@contextmanager
def refused() -> Iterator[pytest.ExceptionInfo[PermissionError]]:
    """The code inside is refused; the refusal, provoked on purpose, is taken back so this test's report stands."""
    with pytest.raises(PermissionError) as err:
        yield err
    assert UNIT_TIER.refused == [str(err.value)]
    UNIT_TIER.refused.clear()


def test_a_unit_test_that_starts_a_process_is_refused_naming_the_marker() -> None:
    with refused() as err:
        subprocess.run([sys.executable, "-c", "pass"], check=False)
    message = str(err.value)
    assert message.startswith(
        "tests/unit/test_tiers.py::test_a_unit_test_that_starts_a_process_is_refused_naming_the_marker is a unit test"
    )
    assert f"started a process (subprocess.Popen: {sys.executable})" in message
    assert "at tests/unit/test_tiers.py:" in message and "@pytest.mark.component" in message


def test_a_unit_test_that_reads_the_working_tree_is_refused() -> None:
    with refused() as err:
        (ROOT / "README.md").read_text()
    assert "opened README.md, a file of the project's working tree" in str(err.value)


def test_source_the_tests_own_files_and_package_data_may_be_read() -> None:
    assert "MODEL" in (ROOT / "cicd" / "pipeline.py").read_text()
    assert (ROOT / "tests" / "unit" / "fixtures" / "contract" / "openapi.yaml").read_text().startswith("openapi:")
    assert (ROOT / "cicd" / "schemas" / "report.schema.json").read_text().startswith("{")
    assert not UNIT_TIER.refused


@pytest.mark.component
def test_a_component_test_may_start_processes_and_read_the_project() -> None:
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0
    assert (ROOT / "README.md").read_text()
    assert not UNIT_TIER.refused
