"""Each validator runs once for all its files, across adapters, and still says which file failed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import pytest

from cicd import command
from cicd.adapters import nodetools, validate
from tests.adapters.conftest import by_name, spawned
from tests.adapters.test_validators import BROKEN, write

Rendered = dict[tuple[str, str], dict[str, str]]
PLANS = ("project", "project-approval", "toy")
TOOL_OF = {
    "schema": "schemacheck.py",
    "actionlint": "actionlint",
    "circleci-config-parser": "validate.cjs circleci",
    "codecatalyst-workflows-sdk": "validate.cjs codecatalyst",
}


def label(call: list[str]) -> str:
    """``schemacheck.py``, ``validate.cjs circleci``, ``actionlint``: the script (and its tool) or the program."""
    for i, arg in enumerate(call):
        if arg.endswith(".py"):
            return Path(arg).name
        if arg.endswith(".cjs"):
            return f"{Path(arg).name} {call[i + 1]}"
    return Path(call[0]).name


def files_of(rendered: Rendered, tmp_path: Path, adapter: str, validator: str) -> list[Path]:
    """``validator``'s files of ``adapter`` rendered from each plan, one folder per plan."""
    return [
        path
        for plan in PLANS
        for v, path in by_name(adapter).check_pairs(write(tmp_path / plan / adapter, rendered[(adapter, plan)]))
        if v == validator
    ]


def break_file(path: Path, validator: str) -> None:
    old, new = BROKEN[validator]
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.slow
def test_one_broken_file_fails_alone_in_a_check_jsonschema_batch(rendered: Rendered, tmp_path: Path) -> None:
    """Two schemas, three files each, in one process; the one broken file fails with its own error."""
    gitlab = files_of(rendered, tmp_path, "gitlab", "schema vendor.gitlab-ci")
    circleci = files_of(rendered, tmp_path, "circleci", "schema vendor.circle-ci")
    break_file(gitlab[1], "schema vendor.gitlab-ci")
    checks = [("gitlab", "schema vendor.gitlab-ci", p) for p in gitlab]
    checks += [("circleci", "schema vendor.circle-ci", p) for p in circleci]
    with spawned() as calls:
        results = validate.run_all(checks)
    assert [r.status for r in results] == ["passed", "failed", "passed", "passed", "passed", "passed"]
    assert results[1].file == ".gitlab-ci.yml" and results[1].adapter == "gitlab"
    assert results[1].detail == "$.default.interruptible: 'maybe' is not of type 'boolean'"
    assert len(calls) == 1, calls  # no file was checked again alone: the report named the broken one


@pytest.mark.slow
def test_one_broken_file_fails_alone_in_a_node_validator_batch(rendered: Rendered, tmp_path: Path) -> None:
    """The CodeCatalyst SDK on six workflows in one Node process, one of them invalid; the CircleCI parser on a
    file that is not even YAML beside valid configs (the file's error does not stop the others)."""
    codecatalyst = files_of(rendered, tmp_path, "codecatalyst", "codecatalyst-workflows-sdk")
    circleci = files_of(rendered, tmp_path, "circleci", "circleci-config-parser")
    break_file(codecatalyst[3], "codecatalyst-workflows-sdk")
    circleci[0].write_text("jobs: [\n")
    checks = [("codecatalyst", "codecatalyst-workflows-sdk", p) for p in codecatalyst]
    checks += [("circleci", "circleci-config-parser", p) for p in circleci]
    with spawned() as calls:
        results = validate.run_all(checks)
    assert len(codecatalyst) == 6
    failed = [(r.validator, checks[i][2]) for i, r in enumerate(results) if r.status == "failed"]
    assert failed == [
        ("codecatalyst-workflows-sdk", codecatalyst[3]),
        ("circleci-config-parser", circleci[0]),
    ], [r.line() for r in results]
    assert all(r.status == "passed" for r in results if r.status != "failed")
    assert results[3].detail.startswith("instance.Actions.lint: ")  # the action whose Timeout is out of range
    assert "circleci-config-parser:" in results[6].detail
    assert [c[2] for c in calls] == ["codecatalyst", "circleci"], calls  # one process per validator


@pytest.mark.slow
def test_the_check_starts_one_process_per_tool_for_every_adapter_and_plan(rendered: Rendered, tmp_path: Path) -> None:
    """Every adapter but Jenkins (its linter takes Java tens of seconds: the broken-adapter tests batch it), rendered
    from three plans: check-jsonschema once for all five schemas, actionlint once, each Node validator once, and the
    buildspec schema in this process."""
    adapters = ["github", "gitlab", "circleci", "bitbucket", "azure", "codecatalyst", "codebuild"]
    checks = [
        (name, v, path)
        for name in adapters
        for plan in PLANS
        for v, path in by_name(name).check_pairs(write(tmp_path / plan / name, rendered[(name, plan)]))
    ]
    with spawned() as calls:
        results = validate.run_all(checks)
    assert all(r.status == "passed" for r in results), [r.line() for r in results if r.status != "passed"]
    assert len(results) == len(checks)
    by_label = {label(call): call for call in calls}
    assert sorted(by_label) == sorted(TOOL_OF.values()) and len(calls) == len(TOOL_OF.values()), calls
    for _, validator, path in checks:
        if validator != "buildspec schema (repo)":  # in this process
            call = by_label[TOOL_OF["schema" if validator.startswith("schema ") else validator]]
            assert any(str(path) in arg for arg in call), (validator, path)


def fake_tool(calls: list[list[validate.Key]]) -> validate.Tool:
    """Reports only on the first of several files (a tool that stopped half-way); alone, on ``b.yml`` only."""

    def tool(keys: Sequence[validate.Key], log: IO[str] | None) -> validate.Batch:
        calls.append(list(keys))
        if len(keys) > 1:
            return {keys[0]: ("passed", "")}, "stopped after the first file"
        return ({keys[0]: ("failed", "b is bad")} if keys[0][1].name == "b.yml" else {}), "no report\nsegfault"

    return tool


def test_a_file_a_batch_says_nothing_about_is_checked_again_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[validate.Key]] = []
    monkeypatch.setitem(validate.VALIDATORS, "fake", fake_tool(calls))
    a, b, c = (write(tmp_path, {name: "x: 1\n"}) / name for name in ("a.yml", "b.yml", "c.yml"))
    results = validate.run_all([("one", "fake", a), ("one", "fake", b), ("two", "fake", c)])
    assert [(r.adapter, r.file, r.status, r.detail) for r in results] == [
        ("one", "a.yml", "passed", ""),
        ("one", "b.yml", "failed", "b is bad"),
        ("two", "c.yml", "failed", "no report | segfault"),  # alone and still nothing: a failure, with its output
    ]
    assert calls == [[("fake", a), ("fake", b), ("fake", c)], [("fake", b)], [("fake", c)]]


def test_validators_sharing_a_tool_share_one_run_and_results_keep_the_order_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[validate.Key]] = []

    def tool(keys: Sequence[validate.Key], log: IO[str] | None) -> validate.Batch:
        calls.append(list(keys))
        return {key: ("passed", key[0]) for key in keys}, ""

    monkeypatch.setitem(validate.VALIDATORS, "first", tool)
    monkeypatch.setitem(validate.VALIDATORS, "second", tool)
    a, b = (write(tmp_path, {name: "x: 1\n"}) / name for name in ("a.yml", "b.yml"))
    checks = [("one", "first", a), ("two", "second", b), ("three", "first", b), ("four", "first", a)]
    results = validate.run_all(checks)
    assert [(r.adapter, r.validator, r.file, r.detail) for r in results] == [
        ("one", "first", "a.yml", "first"),
        ("two", "second", "b.yml", "second"),
        ("three", "first", "b.yml", "first"),
        ("four", "first", "a.yml", "first"),
    ]
    assert calls == [[("first", a), ("second", b), ("first", b)]]  # once, and a file twice for one validator once


def test_groovy_lint_checks_copies_in_a_folder_of_their_own_and_reads_its_report_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CodeNarc walks the folder its files have in common: two Jenkinsfiles in unrelated places would make it walk
    the file system. A stand-in for npm-groovy-lint writes the JSON report it would; only error-level findings
    fail a file."""
    first = write(tmp_path / "a" / "deep", {"Jenkinsfile": "pipeline {}\n"}) / "Jenkinsfile"
    second = write(tmp_path / "b", {"Jenkinsfile": "pipeline {(\n"}) / "Jenkinsfile"
    seen: dict[str, list[str]] = {}

    def lint(cmd: Sequence[str], *, cwd: Path, **kwargs: object) -> command.CommandResult:
        folder = Path(cwd)
        seen.update(cmd=list(cmd), listing=sorted(str(p.relative_to(folder)) for p in folder.rglob("*")))
        files = [a for a in cmd if a.endswith("Jenkinsfile")]
        found = {
            str(folder / files[0]): {"errors": [{"line": "1", "severity": "warning", "msg": "w", "rule": "R"}]},
            str(folder / files[1]): {
                "errors": [{"line": "1", "severity": "error", "msg": "Unexpected input\n^", "rule": "NglParseError"}]
            },
        }
        out = cmd[cmd.index("--output") + 1]
        Path(out).write_text(json.dumps({"files": found}))
        return command.CommandResult(" ".join(cmd), 1, "GroovyLint: Logged results")

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(nodetools, "ensure", lambda: tmp_path / "node_modules")
    monkeypatch.setattr(nodetools, "node", lambda: (Path("node"), Path("npm")))
    monkeypatch.setattr(command, "run", lint)
    results = validate.run_all([("jenkins", "npm-groovy-lint", first), ("toy", "npm-groovy-lint", second)])
    assert [(r.adapter, r.status, r.detail) for r in results] == [
        ("jenkins", "passed", ""),
        ("toy", "failed", "line 1: Unexpected input [NglParseError]"),
    ]
    assert seen["listing"] == ["0", "0/Jenkinsfile", "1", "1/Jenkinsfile"]  # the copies and nothing else
    assert f"--javaoptions={validate.GROOVY_JAVA_OPTIONS}" in seen["cmd"]
