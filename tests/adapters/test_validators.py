"""Each adapter passes its tool's own validators (schemas, actionlint, parsers, linters), and a broken one fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from cicd.adapters import validate
from tests.adapters.conftest import adapter_ids, by_name, spawned
from tests.conftest import needs_program

# Each case runs a real validator (check-jsonschema, actionlint, node tools): seconds apiece.
pytestmark = pytest.mark.slow

NEEDS_JAVA = needs_program("java", "npm-groovy-lint (the Jenkinsfile validator runs CodeNarc on Java)")
NODE_VALIDATORS = {"circleci-config-parser", "codecatalyst-workflows-sdk", "npm-groovy-lint"}

# One way per validator to make a file invalid for it: (text in the file, replacement).
BROKEN: dict[str, tuple[str, str]] = {
    "schema vendor.github-workflows": ("runs-on: ubuntu-24.04", "runs-onn: ubuntu-24.04"),
    "actionlint": ("${{ matrix.job }}", "${{ matrix.nope( }}"),
    "schema vendor.gitlab-ci": ("  interruptible: true", "  interruptible: maybe"),
    "schema vendor.circle-ci": ("resource_class: medium", "resource_class: [medium]"),
    "circleci-config-parser": ("      - flutter-build: {requires", "      - flutter-bild: {requires"),
    "schema vendor.azure-pipelines": ("lockBehavior: sequential", "lockBehavior: sometimes"),
    "schema vendor.bitbucket-pipelines": ("max-time: 45", "max-time: forever"),
    "codecatalyst-workflows-sdk": ("Timeout: 20", "Timeout: 999"),
    "npm-groovy-lint": ("pipeline {", "pipeline {("),
    "buildspec schema (repo)": ("version: 0.2", "version: 0.3"),
}


def write(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def pairs(name: str, folder: Path, *, node: bool) -> list[tuple[str, Path]]:
    return [(v, path) for v, path in by_name(name).check_pairs(folder) if (v in NODE_VALIDATORS) == node]


def assert_all_pass(results: list[validate.Validation]) -> None:
    assert results, "no validator ran"
    assert all(r.status == "passed" for r in results), [r.line() for r in results]


@pytest.mark.parametrize("plan_name", ["project", "project-approval", "toy"])
@pytest.mark.parametrize(
    "adapter_name", [n for n in adapter_ids() if any(v not in NODE_VALIDATORS for v, _ in by_name(n).checks)]
)
def test_adapter_passes_its_validators(
    adapter_name: str, plan_name: str, rendered: dict[tuple[str, str], dict[str, str]], tmp_path: Path
) -> None:
    folder = write(tmp_path, rendered[(adapter_name, plan_name)])
    assert_all_pass(validate.run(adapter_name, pairs(adapter_name, folder, node=False)))


@pytest.mark.slow
@pytest.mark.parametrize("plan_name", ["project", "project-approval", "toy"])
@pytest.mark.parametrize("adapter_name", ["circleci", "codecatalyst", pytest.param("jenkins", marks=NEEDS_JAVA)])
def test_adapter_passes_its_npm_validators(
    adapter_name: str, plan_name: str, rendered: dict[tuple[str, str], dict[str, str]], tmp_path: Path
) -> None:
    folder = write(tmp_path, rendered[(adapter_name, plan_name)])
    assert_all_pass(validate.run(adapter_name, pairs(adapter_name, folder, node=True)))


def broken_cases() -> list[tuple[str, str]]:
    return [(a, v) for a in adapter_ids() for v, _ in by_name(a).checks]


def npm_cases() -> list[tuple[str, str]]:
    return [c for c in broken_cases() if c[1] in NODE_VALIDATORS]


@pytest.mark.parametrize(("adapter_name", "validator"), [c for c in broken_cases() if c[1] not in NODE_VALIDATORS])
def test_a_broken_adapter_fails_its_validators(
    adapter_name: str, validator: str, rendered: dict[tuple[str, str], dict[str, str]], tmp_path: Path
) -> None:
    check_breaks(adapter_name, validator, rendered, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("adapter_name", "validator"),
    [
        pytest.param(*c, marks=NEEDS_JAVA) if c[1] == "npm-groovy-lint" else c
        for c in broken_cases()
        if c[1] in NODE_VALIDATORS
    ],
)
def test_a_broken_adapter_fails_its_npm_validators(
    adapter_name: str, validator: str, rendered: dict[tuple[str, str], dict[str, str]], tmp_path: Path
) -> None:
    check_breaks(adapter_name, validator, rendered, tmp_path)


def check_breaks(
    adapter_name: str, validator: str, rendered: dict[tuple[str, str], dict[str, str]], tmp_path: Path
) -> None:
    """Each file broken in turn and checked in one batch with the intact files of another plan: only it fails, and
    its failure comes from the tool's report, not from checking it again alone."""
    old, new = BROKEN[validator]
    adapter = by_name(adapter_name)
    folder = write(tmp_path / "broken", rendered[(adapter_name, "toy")])
    intact = [
        path
        for v, path in adapter.check_pairs(write(tmp_path / "intact", rendered[(adapter_name, "project")]))
        if v == validator
    ]
    targets = [path for v, path in adapter.check_pairs(folder) if v == validator]
    assert targets and intact
    for path in targets:
        text = path.read_text()
        assert old in text, f"{old!r} not in {path.name}"
        path.write_text(text.replace(old, new, 1))
        with spawned() as calls:
            *others, result = validate.run(adapter_name, [(validator, p) for p in [*intact, path]])
        assert result.status == "failed", result.line()
        assert result.detail
        assert [r.status for r in others] == ["passed"] * len(intact), [r.line() for r in others]
        assert len(calls) <= 1, calls
        path.write_text(text)


def test_a_missing_file_is_a_failure_not_a_skip(tmp_path: Path) -> None:
    (result,) = validate.run("github", [("actionlint", tmp_path / "nope.yml")])
    assert result.status == "failed" and "does not exist" in result.detail


@pytest.mark.slow
def test_a_malformed_conditional_step_fails_the_circleci_validator(
    rendered: dict[tuple[str, str], dict[str, str]], tmp_path: Path
) -> None:
    """The SDK parser has no conditional steps: validate.cjs checks their shape itself before inlining them."""
    files = dict(rendered[("circleci", "project")])
    folder = write(tmp_path, files)
    (path,) = [p for v, p in by_name("circleci").check_pairs(folder) if v == "circleci-config-parser"]
    text = path.read_text()
    assert "      - when:\n          condition:" in text
    path.write_text(text.replace("      - when:\n          condition:", "      - when:\n          conditon:", 1))
    (result,) = validate.run("circleci", [("circleci-config-parser", path)])
    assert result.status == "failed", result.line()
    assert "when step without a condition" in result.detail
