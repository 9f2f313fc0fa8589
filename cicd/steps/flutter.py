"""Flutter app steps: ``flutter-check`` (offline checks, plus the SDK's own when installed) and ``flutter-build``.

**flutter-check has two halves.** The *offline half* always runs, on any machine, with tools from the Python lock:

* every ``.dart`` file under ``flutter/`` must parse (tree-sitter + tree-sitter-dart, which knows Dart 3);
  each ERROR/MISSING node is reported as ``flutter/lib/x.dart:LINE:COL: syntax error near '...'``;
* on the same parse trees, the analyzer rule ``prefer_final_locals`` (enabled in ``flutter/analysis_options.yaml``)
  where the tree allows it: a local ``var x = ...;`` / ``Type x = ...;`` in a function body, or a ``var``/typed
  variable in a switch case, switch expression case or if-case pattern (``_Loaded loaded =>``), that is neither
  ``final`` nor ``const`` and is never assigned (``=``, ``+=``, ``??=``, ``++``/``--``, pattern assignment,
  ``for (x in ...)``) in its scope is reported as ``flutter/lib/x.dart:LINE:COL: prefer_final_locals: ...``, and
  all such findings are written to ``reports/dart-rules.sarif``. Out of scope, as in the analyzer or on purpose:
  for-loop variables, ``late`` variables, declarations without an initializer, parameters, ``_``, and files that
  do not parse (their syntax errors are reported instead);
* ``flutter/pubspec.yaml`` must be valid YAML without duplicate keys and must validate against
  ``cicd/schemas/pubspec.schema.json`` (bounded SDK constraint, every dependency bounded or pinned, known keys in
  the ``flutter:`` section); errors name the file, the line and the key;
* semgrep (isolated tool environment, ``cicd/tools.py``) runs the rules in ``semgrep/dart/`` over ``flutter/``
  with SARIF into ``reports/semgrep-dart.sarif``; every finding fails the step.

The *SDK half* runs when ``flutter`` is on PATH (the CI adapters install it): ``flutter pub get``,
``flutter analyze`` (fatal on infos too) and ``flutter test --machine``, whose event stream is kept as
``reports/flutter-test.jsonl`` and converted to ``reports/flutter-junit.xml``. Without the SDK the step still
passes on the offline half, and its note says plainly that analyze/test did not run. A CI job that installs
Flutter sets ``CICD_REQUIRE_FLUTTER=1`` (or the step option ``require_sdk``), so that a broken SDK install fails
with exit code 3 instead of quietly skipping the SDK half.

**flutter-build** needs the SDK (skipped with the reason otherwise, or exit 3 under ``CICD_REQUIRE_FLUTTER``).
The repository keeps no generated platform folders: the step runs
``flutter create --platforms=android,web --project-name latest_apk_app .`` (which only adds missing files) when
``android/`` or ``web/`` is absent, adds the INTERNET permission to the generated release manifest (the template
only grants it to debug builds), then builds the web app and the release APK with ``--build-name``/
``--build-number`` from :func:`cicd.versioning.build_version`. Outputs go to the run folder:
``flutter/app-release.apk``, ``flutter/web/`` and ``flutter/build.json`` (version, commit, APK size and sha256),
and that ``flutter/`` folder is mirrored into ``.cicd/artifact/flutter/`` (an older copy removed first): the folder
a CI job uploads, so the ``package`` job receives the Flutter build.

**API URL per environment.** The artifacts are built once and promoted through dev, preprod and prod, but each
environment has its own API URL. The web app therefore reads ``config.json`` next to its ``index.html`` at start-up
(``{"api_base_url": "...", "environment": "dev"}``) and falls back to the compile-time
``--dart-define=API_BASE_URL/APP_ENV`` values only when that file is absent. The publish step of each environment
copies ``web/`` and calls :func:`write_runtime_config` with that environment's API URL; a missing URL is a
:class:`~cicd.errors.ConfigError` (exit 2), never a silently broken site. The APK cannot fetch a file beside a
page, so it carries the build-time ``API_BASE_URL`` (step option ``api_base_url`` or the ``API_BASE_URL``
variable); built without one, the app shows its configuration-error screen rather than calling a wrong host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as ET  # nosec B405 - builds the JUnit report, parses no XML
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tree_sitter
import tree_sitter_dart
import yaml

from cicd import command, tools, versioning
from cicd.context import StepContext
from cicd.errors import ConfigError, MissingToolError, StepFailed
from cicd.results import Outcome

APP_DIR = "flutter"
PROJECT_NAME = "latest_apk_app"
PUBSPEC_SCHEMA = "cicd/schemas/pubspec.schema.json"
SEMGREP_RULES = "semgrep/dart"
RUNTIME_CONFIG_FILE = "config.json"
PLATFORMS = ("android", "web")
APK_OUTPUT = "build/app/outputs/flutter-apk/app-release.apk"
WEB_OUTPUT = "build/web"
ANDROID_MANIFEST = "android/app/src/main/AndroidManifest.xml"
INTERNET_PERMISSION = "android.permission.INTERNET"
NO_SDK = "Flutter SDK not on PATH"
# Folders under flutter/ that hold generated or fetched code, not the app's sources.
_SKIPPED_DIRS = frozenset({"build"})
_MAX_SYNTAX_ERRORS_PER_FILE = 5
_MAX_PROBLEMS_IN_MESSAGE = 5
_SNIPPET_CHARS = 30
PREFER_FINAL_LOCALS = "prefer_final_locals"
DART_RULES_SARIF = "dart-rules.sarif"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_TRUE = frozenset({"1", "true", "yes", "on"})


# --------------------------------------------------------------------------------------------------------------------
# Dart syntax (tree-sitter)
# --------------------------------------------------------------------------------------------------------------------


def dart_sources(app_dir: Path) -> list[Path]:
    """Every ``.dart`` file under ``app_dir``, skipping ``build/`` and hidden folders such as ``.dart_tool/``."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(app_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        found.extend(Path(folder, name) for name in files if name.endswith(".dart"))
    return sorted(found)


def _dart_parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_dart.language()))


def _problem_nodes(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """ERROR and MISSING nodes, outermost first; the inside of an ERROR node is not reported again."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            yield node
            continue
        if node.has_error:
            stack.extend(reversed(node.children))


def _line_text(source: bytes, line_start: int) -> bytes:
    end = source.find(b"\n", line_start)
    return source[line_start : end if end >= 0 else len(source)]


def _position(source: bytes, node: tree_sitter.Node) -> tuple[int, int]:
    """1-based line and column of a node's start; the column counts characters, not bytes."""
    row, byte_col = node.start_point
    line_start = node.start_byte - byte_col
    return row + 1, len(source[line_start : node.start_byte].decode("utf-8", errors="replace")) + 1


def _snippet(text: bytes) -> str:
    shown = text.decode("utf-8", errors="replace").strip().splitlines()
    first = shown[0].strip() if shown else ""
    return first if len(first) <= _SNIPPET_CHARS else first[: _SNIPPET_CHARS - 3] + "..."


def dart_syntax_errors(path: Path, display: str, parser: tree_sitter.Parser | None = None) -> list[str]:
    """``display:LINE:COL: syntax error near '...'`` for each syntax error in one Dart file (none when it parses)."""
    source = path.read_bytes()
    tree = (parser or _dart_parser()).parse(source)
    if not tree.root_node.has_error:
        return []
    errors: list[str] = []
    for node in _problem_nodes(tree.root_node):
        if len(errors) == _MAX_SYNTAX_ERRORS_PER_FILE:
            errors.append(f"{display}: more syntax errors not shown")
            break
        line, col = _position(source, node)
        line_start = node.start_byte - node.start_point[1]
        rest_of_line = _line_text(source, node.start_byte)
        if node.is_missing:
            near = _snippet(rest_of_line) or _snippet(_line_text(source, line_start))
            errors.append(f"{display}:{line}:{col}: syntax error near '{near}': missing '{node.type}'")
        else:
            near = _snippet(source[node.start_byte : node.end_byte]) or _snippet(rest_of_line)
            errors.append(f"{display}:{line}:{col}: syntax error near '{near}'")
    return errors


# --------------------------------------------------------------------------------------------------------------------
# Dart rules on the parse tree (prefer_final_locals)
# --------------------------------------------------------------------------------------------------------------------

_FUNCTION_BODIES = frozenset({"function_body", "function_expression_body"})
# The nodes that hold a local declaration's scope: a block, a switch statement's cases, or a body without a block.
_LOCAL_SCOPES = frozenset({"block", "switch_block", *_FUNCTION_BODIES})
# Where a variable pattern declares a fresh variable for one case: switch statement/expression cases and if-case
# (statement or collection element). Patterns of `var (a, b) = ...` and `for (var (a, b) in ...)` are not here.
_CASE_HOSTS = frozenset({"switch_expression_case", "switch_statement_case", "if_statement", "if_element"})
# A declaration with one of these is final, constant, or late (out of scope: assigned later, maybe lazily).
_NOT_REPORTED_MODIFIERS = frozenset({"final_builtin", "const_builtin", "late"})
_WILDCARD = "_"


@dataclass(frozen=True)
class DartFinding:
    """One finding of a rule checked on the tree-sitter parse tree; ``str()`` is ``path:LINE:COL: rule: message``."""

    path: str
    line: int
    column: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.rule}: {self.message}"


def _text(source: bytes, node: tree_sitter.Node) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


def _walk(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def _in_function_body(node: tree_sitter.Node) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type in _FUNCTION_BODIES:
            return True
        parent = parent.parent
    return False


def _assigned_names(scope: tree_sitter.Node, source: bytes) -> frozenset[str]:
    """Every name written somewhere under ``scope``, nested closures included.

    ``x = ...``, ``x += ...``, ``x ??= ...``, ``x++``, ``--x`` (a bare name as an ``assignable_expression``), the
    names of a pattern assignment ``(x, y) = ...`` and the variable of ``for (x in ...)``. A same-named variable of
    an inner scope counts too: that can only hide a finding, never invent one.
    """
    names: set[str] = set()
    for node in _walk(scope):
        if node.type == "assignable_expression":
            if node.child_count == 1 and node.children[0].type == "identifier":
                names.add(_text(source, node.children[0]))
        elif node.type == "pattern_assignment" and node.named_children:
            names.update(_text(source, n) for n in _walk(node.named_children[0]) if n.type == "identifier")
        elif node.type == "for_loop_parts" and any(child.type == "in" for child in node.children):
            before_in: list[tree_sitter.Node] = []
            for child in node.children:
                if child.type == "in":
                    break
                if child.is_named:
                    before_in.append(child)
            if len(before_in) == 1 and before_in[0].type == "identifier":
                names.add(_text(source, before_in[0]))
    return frozenset(names)


def _final_spelling(source: bytes, start: tree_sitter.Node, end: tree_sitter.Node) -> str:
    """The declaration from ``start`` to the end of ``end`` as it would read with ``final``: ``final int x``."""
    text = " ".join(source[start.start_byte : end.end_byte].decode("utf-8", errors="replace").split())
    if start.type == "inferred_type":  # `var x` -> `final x`
        return "final" + text[len(_text(source, start)) :]
    return f"final {text}"


@dataclass(frozen=True)
class _Candidate:
    """A non-final declaration: where to report it, the names it declares, the scope to search, the fix."""

    anchor: tree_sitter.Node
    names: tuple[str, ...]
    scope: tree_sitter.Node
    what: str
    fix: str


def _initialized_names(definition: tree_sitter.Node, source: bytes) -> list[tree_sitter.Node] | None:
    """The name nodes of ``int x = 1, y = 2``; None when one has no initializer (``int x;`` is assigned later: out
    of scope, as in the analyzer) or is the wildcard ``_``."""
    first = definition.child_by_field_name("name")
    declarators = [(first, definition)]
    for extra in (c for c in definition.named_children if c.type == "initialized_identifier"):
        declarators.append((next((c for c in extra.children if c.type == "identifier"), None), extra))
    names: list[tree_sitter.Node] = []
    for name, declarator in declarators:
        if name is None or _text(source, name) == _WILDCARD or not any(c.type == "=" for c in declarator.children):
            return None
        names.append(name)
    return names


def _local_candidate(node: tree_sitter.Node, source: bytes) -> _Candidate | None:
    """``var x = 1;`` / ``int x = 1, y = 2;`` in a function body, not final/const/late, every variable initialized."""
    parent = node.parent
    if parent is None or parent.type == "for_loop_parts" or not _in_function_body(node):
        return None
    definition = next((c for c in node.named_children if c.type == "initialized_variable_definition"), None)
    if definition is None or not definition.children:
        return None
    if any(child.type in _NOT_REPORTED_MODIFIERS for child in definition.children):
        return None
    names = _initialized_names(definition, source)
    if not names:
        return None
    scope = parent
    while scope.type not in _LOCAL_SCOPES and scope.parent is not None:
        scope = scope.parent
    return _Candidate(
        definition,
        tuple(_text(source, name) for name in names),
        scope,
        "local variable",
        _final_spelling(source, definition.children[0], names[0]),
    )


def _pattern_candidate(node: tree_sitter.Node, source: bytes) -> _Candidate | None:
    """``_Loaded loaded`` / ``var v`` declared by a switch case, switch expression case or if-case, not final."""
    if not node.children or any(child.type == "final_builtin" for child in node.children):
        return None
    host = node.parent
    while host is not None and host.type.endswith("_pattern"):
        host = host.parent
    if host is None or host.type not in _CASE_HOSTS or not _in_function_body(host):
        return None
    name = next((c for c in reversed(node.children) if c.type == "identifier"), None)
    if name is None or _text(source, name) == _WILDCARD:
        return None
    # The cases of a switch statement can share one body (`case A a: case B a: body`): search the whole switch.
    scope = host.parent if host.type == "switch_statement_case" and host.parent is not None else host
    return _Candidate(
        node, (_text(source, name),), scope, "pattern variable", _final_spelling(source, node.children[0], name)
    )


def non_final_locals(path: Path, display: str, parser: tree_sitter.Parser | None = None) -> list[DartFinding]:
    """``prefer_final_locals`` findings of one Dart file, as far as the parse tree shows them.

    A local declaration (``var x = ...;``, ``Type x = ...;``, every variable of it initialized) or a variable
    pattern of a switch case, switch expression case or if-case (``_Loaded loaded =>``, ``case var v:``) that is
    neither ``final`` nor ``const`` and whose names are never assigned in their scope. Out of scope: for-loop
    variables, ``late`` and uninitialized declarations, parameters, ``_``, and ``var (a, b) = ...`` (tree-sitter
    cannot tell its names from constants). A file that does not parse gives no finding: its syntax errors are
    reported, and a broken tree could hide an assignment.
    """
    source = path.read_bytes()
    tree = (parser or _dart_parser()).parse(source)
    if tree.root_node.has_error:
        return []
    assigned: dict[int, frozenset[str]] = {}
    findings: list[DartFinding] = []
    for node in _walk(tree.root_node):
        if node.type == "local_variable_declaration":
            candidate = _local_candidate(node, source)
        elif node.type == "variable_pattern":
            candidate = _pattern_candidate(node, source)
        else:
            continue
        if candidate is None:
            continue
        if candidate.scope.id not in assigned:
            assigned[candidate.scope.id] = _assigned_names(candidate.scope, source)
        if any(name in assigned[candidate.scope.id] for name in candidate.names):
            continue
        line, column = _position(source, candidate.anchor)
        quoted = ", ".join(f"'{name}'" for name in candidate.names)
        if len(candidate.names) == 1:
            message = f"{candidate.what} {quoted} is never reassigned; declare it final: '{candidate.fix}'"
        else:
            message = f"{candidate.what}s {quoted} are never reassigned; declare them final"
        findings.append(DartFinding(display, line, column, PREFER_FINAL_LOCALS, message))
    return findings


def write_dart_rules_sarif(findings: Sequence[DartFinding], path: Path) -> Path:
    """SARIF 2.1.0 of the parse-tree rules' findings (an empty run when there are none)."""
    rule = {
        "id": PREFER_FINAL_LOCALS,
        "shortDescription": {"text": "Prefer final for variable declarations if they are not reassigned."},
        "helpUri": "https://dart.dev/tools/linter-rules/prefer_final_locals",
    }
    results = [
        {
            "ruleId": finding.rule,
            "level": "error",
            "message": {"text": finding.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": finding.path},
                        "region": {"startLine": finding.line, "startColumn": finding.column},
                    }
                }
            ],
        }
        for finding in findings
    ]
    driver = {"name": "flutter-check (tree-sitter-dart)", "rules": [rule]}
    sarif = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": results}]}
    path.write_text(json.dumps(sarif, indent=2) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------------------------
# pubspec.yaml (YAML with line numbers + the project's JSON Schema)
# --------------------------------------------------------------------------------------------------------------------

PathKey = tuple[str | int, ...]


@dataclass
class _YamlIndex:
    """Line numbers (1-based) of every key and sequence item of a YAML document, by JSON path."""

    lines: dict[PathKey, int] = field(default_factory=dict)
    duplicates: list[tuple[int, str]] = field(default_factory=list)

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of ``path``, or of its nearest ancestor that has one (1 for the document)."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return 1


def _index_yaml(node: yaml.Node, path: PathKey, index: _YamlIndex) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            dotted = ".".join(str(p) for p in (*path, key))
            if key in seen:
                index.duplicates.append((line, dotted))
            seen.add(key)
            index.lines.setdefault((*path, key), line)
            _index_yaml(value_node, (*path, key), index)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            index.lines[(*path, position)] = item.start_mark.line + 1
            _index_yaml(item, (*path, position), index)


def _dotted(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _short(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_problem(error: Any, index: _YamlIndex, display: str) -> list[str]:
    """One or more ``file:LINE: key: message`` lines for one JSON Schema validation error."""
    path = list(error.absolute_path)
    where = _dotted(path)
    if error.validator == "required":
        match = re.match(r"'(.+?)' is a required property", error.message)
        missing = match.group(1) if match else error.message
        return [f"{display}:{index.line_of(path)}: {where}: missing required key '{missing}'"]
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = set(error.schema.get("properties", {}))
        extras = [key for key in error.instance if key not in known] or ["?"]
        return [
            f"{display}:{index.line_of([*path, key])}: {_dotted([*path, key])}: unknown key"
            + (f" ({error.schema['description']})" if "description" in error.schema else "")
            for key in extras
        ]
    description = error.schema.get("description") if isinstance(error.schema, Mapping) else None
    message = f"{_short(error.instance)} is invalid; expected {description}" if description else error.message
    return [f"{display}:{index.line_of(path)}: {where}: {message}"]


def pubspec_problems(pubspec: Path, schema_path: Path, display: str) -> list[str]:
    """Problems of a pubspec.yaml, each naming the file and line: YAML syntax, duplicate keys, schema violations."""
    if not pubspec.is_file():
        return [f"{display}: file not found"]
    try:
        text = pubspec.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return [f"{display}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        return [f"{display}:{line}: invalid YAML: {what}"]
    except yaml.YAMLError as exc:
        return [f"{display}:1: invalid YAML: {exc}"]
    if node is None or not isinstance(data, dict):
        return [f"{display}:1: a pubspec must be a YAML mapping (name:, environment:, dependencies:, ...)"]
    index = _YamlIndex()
    _index_yaml(node, (), index)
    problems = [f"{display}:{line}: duplicate key '{key}'" for line, key in index.duplicates]

    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
    except (OSError, ValueError, SchemaError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"the pubspec schema {schema_path} cannot be used: {first}") from exc
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(data), key=lambda e: index.line_of(list(e.absolute_path)))
    for error in errors:
        problems.extend(_schema_problem(error, index, display))
    return problems


# --------------------------------------------------------------------------------------------------------------------
# semgrep
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SemgrepRun:
    rules: int
    scanned: tuple[str, ...]
    problems: tuple[str, ...]
    sarif: Path


def _count_rules(rules_dir: Path, root: Path) -> tuple[int, list[str]]:
    files = sorted([*rules_dir.glob("*.yaml"), *rules_dir.glob("*.yml")])
    if not files:
        return 0, [f"{_rel(rules_dir, root)}: no semgrep rule files (*.yaml)"]
    count, problems = 0, []
    for rule_file in files:
        try:
            doc = yaml.safe_load(rule_file.read_text(encoding="utf-8"))
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark is not None else 1
            problems.append(f"{_rel(rule_file, root)}:{line}: invalid YAML: {exc.problem}")
            continue
        rules = doc.get("rules") if isinstance(doc, dict) else None
        if not isinstance(rules, list) or not rules:
            problems.append(f"{_rel(rule_file, root)}:1: expected a non-empty 'rules:' list")
            continue
        count += len(rules)
    return count, problems


def sarif_findings(sarif: Mapping[str, Any]) -> list[str]:
    """``file:LINE: rule-id: message`` for each result of a SARIF log (rule ids without the config-path prefix)."""
    findings: list[str] = []
    for run in sarif.get("runs", []):
        for result in run.get("results", []):
            rule = str(result.get("ruleId", "?")).rsplit(".", 1)[-1]
            text = str(result.get("message", {}).get("text", "")).strip()
            sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
            location = (result.get("locations") or [{}])[0].get("physicalLocation", {})
            uri = location.get("artifactLocation", {}).get("uri", "?")
            line = location.get("region", {}).get("startLine", 1)
            findings.append(f"{uri}:{line}: {rule}: {sentence}")
    return findings


def run_semgrep(ctx: StepContext) -> SemgrepRun:
    """semgrep with ``semgrep/dart`` over ``flutter/``: SARIF and JSON into the run folder, findings as problems."""
    rules_dir = ctx.root / SEMGREP_RULES
    sarif = ctx.out("reports", "semgrep-dart.sarif")
    count, problems = _count_rules(rules_dir, ctx.root)
    if problems:
        return SemgrepRun(count, (), tuple(problems), sarif)
    results_json = ctx.out("reports", "semgrep-dart.json")
    exe = tools.ensure(tools.SEMGREP, ctx.root)
    result = ctx.run(
        [
            exe,
            "scan",
            "--metrics=off",
            "--disable-version-check",
            "--error",
            "--config",
            SEMGREP_RULES,
            f"--sarif-output={sarif}",
            f"--json-output={results_json}",
            APP_DIR,
        ],
        env={"SEMGREP_SEND_METRICS": "off", "SEMGREP_ENABLE_VERSION_CHECK": "0"},
        check=False,
    )
    if result.returncode not in (0, 1) or not sarif.is_file():
        raise StepFailed(
            f"semgrep could not run the rules in {SEMGREP_RULES}/ (exit {result.returncode}); "
            f"see {ctx.rel(ctx.log_path)}"
        )
    findings = sarif_findings(json.loads(sarif.read_text(encoding="utf-8")))
    scanned: tuple[str, ...] = ()
    if results_json.is_file():
        scanned = tuple(json.loads(results_json.read_text(encoding="utf-8")).get("paths", {}).get("scanned", []))
    lib_files = [ctx.rel(p) for p in dart_sources(ctx.root / APP_DIR / "lib")]
    unscanned = [f"{p}: not scanned by semgrep (ignored by a .semgrepignore?)" for p in lib_files if p not in scanned]
    if result.returncode == 1 and not findings:
        findings = [f"semgrep reported findings that are not in {ctx.rel(sarif)}"]
    return SemgrepRun(count, scanned, (*findings, *unscanned), sarif)


# --------------------------------------------------------------------------------------------------------------------
# flutter test --machine -> JUnit
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class TestReport:
    """What a ``flutter test --machine`` event stream says."""

    total: int = 0
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: int = 0
    success: bool | None = None

    @property
    def summary(self) -> str:
        text = f"{self.passed} passed"
        if self.failed:
            text += f", {len(self.failed)} failed"
        if self.skipped:
            text += f", {self.skipped} skipped"
        return text


def _events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        stripped = line.strip()
        if not stripped.startswith("{"):
            continue
        try:
            event = json.loads(stripped)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            yield event


@dataclass
class _TestRun:
    """One test of the event stream, from ``testStart`` to ``testDone``."""

    name: str
    suite: str
    start_ms: float
    skip: bool
    errors: list[str] = field(default_factory=list)
    result: str | None = None
    hidden: bool = False
    skipped: bool = False
    seconds: float = 0.0


def _suite_name(path: str, base: str | None) -> str:
    if base and path.startswith(base.rstrip("/") + "/"):
        return path[len(base.rstrip("/")) + 1 :]
    return path


def _collect_tests(lines: Iterable[str], base: str | None) -> tuple[list[_TestRun], bool | None]:
    suites: dict[int, str] = {}
    tests: dict[int, _TestRun] = {}
    success: bool | None = None
    for event in _events(lines):
        kind = event.get("type")
        if kind == "suite":
            suite = event.get("suite") or {}
            suites[int(suite.get("id", -1))] = _suite_name(str(suite.get("path") or "unknown"), base)
        elif kind == "testStart":
            test = event.get("test") or {}
            tests[int(test.get("id", -1))] = _TestRun(
                name=str(test.get("name", "")),
                suite=suites.get(int(test.get("suiteID", -1)), "unknown"),
                start_ms=float(event.get("time", 0)),
                skip=bool((test.get("metadata") or {}).get("skip")),
            )
        elif kind in ("error", "testDone") and int(event.get("testID", -1)) in tests:
            run = tests[int(event["testID"])]
            if kind == "error":
                run.errors.append(str(event.get("error", "")).strip())
            else:
                run.result = str(event.get("result", "error"))
                run.hidden = bool(event.get("hidden"))
                run.skipped = bool(event.get("skipped")) or run.skip
                run.seconds = max(0.0, (float(event.get("time", 0)) - run.start_ms) / 1000)
        elif kind == "done":
            success = bool(event.get("success"))
    for run in tests.values():
        if run.result is None:
            run.result = "error"
            run.errors.append("the test did not finish")
    return list(tests.values()), success


def machine_to_junit(lines: Iterable[str], base: str | None = None) -> tuple[ET.Element, TestReport]:
    """Convert the JSON reporter's events (``flutter test --machine``) to a JUnit ``<testsuites>`` element.

    Suite paths under ``base`` are shown relative to it. Hidden tests (the runner's "loading <file>" entries) are
    left out unless they fail: that is how a test file that does not compile shows up.
    """
    runs, success = _collect_tests(lines, base)
    report = TestReport(success=success)
    root = ET.Element("testsuites", name="flutter test")
    suites: dict[str, ET.Element] = {}
    for run in runs:
        failed = run.result in ("failure", "error")
        if run.hidden and not failed:
            continue
        suite = suites.get(run.suite)
        if suite is None:
            suite = suites[run.suite] = ET.SubElement(
                root, "testsuite", name=run.suite, tests="0", failures="0", errors="0", skipped="0", time="0"
            )
        case = ET.SubElement(suite, "testcase", name=run.name, classname=run.suite, time=f"{run.seconds:.3f}")
        _bump(suite, "tests")
        suite.set("time", f"{float(suite.get('time', '0')) + run.seconds:.3f}")
        report.total += 1
        if failed:
            tag = "failure" if run.result == "failure" else "error"
            text = "\n\n".join(run.errors) or tag
            ET.SubElement(case, tag, message=text.splitlines()[0][:200]).text = text
            _bump(suite, "failures" if tag == "failure" else "errors")
            report.failed.append(f"{run.suite}: {run.name}")
        elif run.skipped:
            ET.SubElement(case, "skipped")
            _bump(suite, "skipped")
            report.skipped += 1
        else:
            report.passed += 1
    return root, report


def _bump(element: ET.Element, attribute: str) -> None:
    element.set(attribute, str(int(element.get(attribute, "0")) + 1))


# --------------------------------------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------------------------------------


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _require_sdk(ctx: StepContext) -> bool:
    flag = ctx.options.get("require_sdk") or ctx.environ.get("CICD_REQUIRE_FLUTTER", "")
    return flag.strip().lower() in _TRUE


def _no_sdk(ctx: StepContext, what: str, why: str = NO_SDK) -> str:
    """The reason the SDK half cannot run; raises instead when this job requires the SDK."""
    reason = f"{why}: {what}"
    if _require_sdk(ctx):
        raise MissingToolError(reason, hint="install the Flutter SDK or unset CICD_REQUIRE_FLUTTER")
    return reason


def _join(problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:_MAX_PROBLEMS_IN_MESSAGE])
    more = len(problems) - _MAX_PROBLEMS_IN_MESSAGE
    return shown + (f" (and {more} more)" if more > 0 else "")


def _analyze_issues(output: str) -> list[str]:
    """The issue lines of ``flutter analyze`` (``  info • message • lib/x.dart:3:5 • rule``)."""
    pattern = re.compile(r"^\s*(error|warning|info)\s+[•-]\s+(.+)$")
    return [f"{m.group(1)}: {m.group(2).strip()}" for m in map(pattern.match, output.splitlines()) if m]


def sdk_checks(ctx: StepContext, app: Path) -> tuple[list[str], str, dict[str, str]]:
    """flutter pub get / analyze / test; returns (problems, note, report paths)."""
    version = _flutter_version(ctx, app)
    pub = ctx.run(["flutter", "pub", "get"], cwd=app, check=False)
    if pub.returncode != 0:
        return [f"`flutter pub get` failed (exit {pub.returncode}); analyze and test not run"], "", {}
    problems: list[str] = []
    analyze = ctx.run(["flutter", "analyze"], cwd=app, check=False)
    if analyze.returncode != 0:
        issues = _analyze_issues(analyze.output)
        first = f": {issues[0]}" if issues else ""
        problems.append(f"flutter analyze found {len(issues) or 'some'} issue(s){first}")
    test = ctx.run(["flutter", "test", "--machine"], cwd=app, check=False)
    events_path = ctx.out("reports", "flutter-test.jsonl")
    events_path.write_text(test.output, encoding="utf-8")
    junit_el, report = machine_to_junit(test.output.splitlines(), str(app))
    junit_path = ctx.out("reports", "flutter-junit.xml")
    ET.ElementTree(junit_el).write(junit_path, encoding="utf-8", xml_declaration=True)
    if report.failed:
        problems.append(f"flutter test: {len(report.failed)} failed: {_join(report.failed)}")
    elif test.returncode != 0 or report.success is False:
        problems.append(f"flutter test failed (exit {test.returncode}) without a failing test; see the log")
    elif report.total == 0:
        problems.append("flutter test ran no tests")
    note = f"flutter analyze clean, flutter test {report.summary} (Flutter {version})"
    return problems, note, {"junit": ctx.rel(junit_path), "test_events": ctx.rel(events_path)}


def _flutter_info(ctx: StepContext, app: Path) -> dict[str, Any]:
    result = ctx.run(["flutter", "--version", "--machine"], cwd=app, check=False)
    start = result.output.find("{")
    try:
        info = json.loads(result.output[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        info = {}
    return info if isinstance(info, dict) else {}


def _flutter_version(ctx: StepContext, app: Path) -> str:
    return str(_flutter_info(ctx, app).get("frameworkVersion") or "unknown version")


STAND_IN_NOTE = "a stand-in flutter (cicd/adapters/flutter_stand_in.py: placeholder builds only) is on PATH"


def _is_stand_in(ctx: StepContext, app: Path) -> bool:
    """True when the ``flutter`` on PATH is the project's stand-in, which writes placeholder builds and can check
    nothing: its analyze/test never count as run."""
    return bool(_flutter_info(ctx, app).get("standIn"))


def flutter_check(ctx: StepContext) -> Outcome:
    """Offline: Dart syntax and prefer_final_locals, pubspec.yaml, semgrep Dart rules. With the SDK: analyze, test."""
    app = ctx.root / APP_DIR
    if not app.is_dir():
        raise StepFailed(f"{APP_DIR}/ does not exist: there is no Flutter app to check")
    has_sdk = command.which("flutter") is not None
    if has_sdk and _is_stand_in(ctx, app):
        has_sdk = False
        sdk_note = _no_sdk(ctx, "flutter analyze/test not run", STAND_IN_NOTE)
    else:
        sdk_note = "" if has_sdk else _no_sdk(ctx, "flutter analyze/test not run")
    problems: list[str] = []

    sources = dart_sources(app)
    if not any(p.is_relative_to(app / "lib") for p in sources):
        problems.append(f"{APP_DIR}/lib: no .dart files")
    parser = _dart_parser()
    rule_findings: list[DartFinding] = []
    for path in sources:
        problems.extend(dart_syntax_errors(path, ctx.rel(path), parser))
        rule_findings.extend(non_final_locals(path, ctx.rel(path), parser))
    ctx.note(f"dart syntax: {len(sources)} file(s) parsed with tree-sitter-dart")
    rules_sarif = write_dart_rules_sarif(rule_findings, ctx.out("reports", DART_RULES_SARIF))
    problems.extend(str(finding) for finding in rule_findings)
    ctx.note(f"dart rules: {PREFER_FINAL_LOCALS}: {len(rule_findings)} finding(s), SARIF in {ctx.rel(rules_sarif)}")

    pubspec = app / "pubspec.yaml"
    problems.extend(pubspec_problems(pubspec, ctx.root / PUBSPEC_SCHEMA, ctx.rel(pubspec)))
    ctx.note(f"pubspec: {ctx.rel(pubspec)} checked against {PUBSPEC_SCHEMA}")

    semgrep = run_semgrep(ctx)
    problems.extend(semgrep.problems)

    details: dict[str, Any] = {
        "dart_files": len(sources),
        "semgrep_rules": semgrep.rules,
        "sarif": ctx.rel(semgrep.sarif),
        "dart_rules_sarif": ctx.rel(rules_sarif),
        "sdk_checks": "ran" if has_sdk else "not run",
    }
    if has_sdk:
        sdk_problems, sdk_note, reports = sdk_checks(ctx, app)
        problems.extend(sdk_problems)
        details.update(reports)

    for problem in problems:
        ctx.note(f"problem: {problem}")
    if problems:
        raise StepFailed(f"flutter-check found {len(problems)} problem(s): {_join(problems)}")
    offline = f"{len(sources)} Dart files, pubspec, {semgrep.rules} semgrep rules"
    return Outcome.passed(f"offline checks passed ({offline}); {sdk_note}", **details)


def write_runtime_config(web_dir: Path, *, api_base_url: str | None, environment: str) -> Path:
    """Write the web app's ``config.json`` for one environment (used by the publish step of each environment)."""
    url = (api_base_url or "").strip().rstrip("/")
    if not url:
        raise ConfigError(
            f"no API URL for environment '{environment}': cannot write {web_dir / RUNTIME_CONFIG_FILE}",
            hint=f"deploy the API to {environment} first (its URL is a stack output) or pass the URL explicitly",
        )
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigError(f"the API URL for environment '{environment}' is not an absolute http(s) URL: {url}")
    if not web_dir.is_dir():
        raise ConfigError(f"{web_dir} is not a built web app folder", hint="run the flutter-build step first")
    target = web_dir / RUNTIME_CONFIG_FILE
    target.write_text(json.dumps({"api_base_url": url, "environment": environment}, indent=2) + "\n", encoding="utf-8")
    return target


def ensure_internet_permission(manifest: Path) -> bool:
    """Add the INTERNET permission to an Android manifest that lacks it; True when the file was changed."""
    text = manifest.read_text(encoding="utf-8")
    if INTERNET_PERMISSION in text:
        return False
    match = re.search(r"<manifest\b[^>]*>", text)
    if match is None:
        raise StepFailed(f"{manifest}: no <manifest> element; cannot add the INTERNET permission")
    line = f'\n    <uses-permission android:name="{INTERNET_PERMISSION}"/>'
    manifest.write_text(text[: match.end()] + line + text[match.end() :], encoding="utf-8")
    return True


def _sha256(path: Path) -> str:
    from cicd.artifact import sha256_file

    return sha256_file(path)


def flutter_build(ctx: StepContext) -> Outcome:
    """flutter build web and apk (release) with the pipeline's version; outputs copied into the run folder."""
    if command.which("flutter") is None:
        return Outcome.skipped(_no_sdk(ctx, "flutter build web/apk cannot run here"))
    app = ctx.root / APP_DIR
    if not (app / "pubspec.yaml").is_file():
        raise StepFailed(f"{APP_DIR}/pubspec.yaml does not exist: there is no Flutter app to build")
    build = versioning.build_version(ctx.root)
    flutter_info = _flutter_info(ctx, app)
    flutter_version = str(flutter_info.get("frameworkVersion") or "unknown version")
    placeholder = bool(flutter_info.get("standIn"))
    if placeholder:
        ctx.note(f"{STAND_IN_NOTE}: the APK and web build are placeholders")

    missing = [p for p in PLATFORMS if not (app / p).is_dir()]
    if missing:
        ctx.note(f"platform folders missing ({', '.join(missing)}): generating them with flutter create")
        ctx.run(
            ["flutter", "create", f"--platforms={','.join(PLATFORMS)}", "--project-name", PROJECT_NAME, "."],
            cwd=app,
        )
    manifest = app / ANDROID_MANIFEST
    if not manifest.is_file():
        raise StepFailed(f"{ctx.rel(manifest)} does not exist after `flutter create`")
    if ensure_internet_permission(manifest):
        ctx.note(f"added {INTERNET_PERMISSION} to {ctx.rel(manifest)} (release builds call the API)")

    api_url = (ctx.options.get("api_base_url") or ctx.environ.get("API_BASE_URL", "")).strip()
    app_env = ctx.options.get("app_env") or ctx.env or ctx.environ.get("APP_ENV", "")
    # Unset values are left out, so the app's own defaults apply (no API URL -> its configuration-error screen).
    defines = [f"--dart-define={k}={v}" for k, v in (("API_BASE_URL", api_url), ("APP_ENV", app_env)) if v]
    version_args = ["--build-name", build.version, "--build-number", str(build.build_number)]
    if not api_url:
        ctx.note("no API_BASE_URL at build time: the web app needs config.json; the APK shows its config error")
    ctx.run(["flutter", "pub", "get"], cwd=app)
    web_args = ["flutter", "build", "web", "--release", *defines, *version_args]
    if ctx.options.get("base_href"):
        web_args.append(f"--base-href={ctx.options['base_href']}")
    ctx.run(web_args, cwd=app)
    ctx.run(["flutter", "build", "apk", "--release", *defines, *version_args], cwd=app)

    apk_src, web_src = app / APK_OUTPUT, app / WEB_OUTPUT
    if not apk_src.is_file():
        raise StepFailed(f"`flutter build apk` finished but {ctx.rel(apk_src)} does not exist")
    if not (web_src / "index.html").is_file():
        raise StepFailed(f"`flutter build web` finished but {ctx.rel(web_src / 'index.html')} does not exist")
    apk = ctx.out(APP_DIR, "app-release.apk")
    shutil.copy2(apk_src, apk)
    web = ctx.out(APP_DIR, "web")
    shutil.rmtree(web, ignore_errors=True)
    shutil.copytree(web_src, web)
    (web / RUNTIME_CONFIG_FILE).unlink(missing_ok=True)  # written per environment at publish time
    sha = _sha256(apk)
    info = {
        "version": build.version,
        "build_number": build.build_number,
        "commit": build.commit,
        "flutter": flutter_version,
        "apk": {"file": apk.name, "size": apk.stat().st_size, "sha256": sha},
        "web": {"dir": web.name, "files": sum(1 for p in web.rglob("*") if p.is_file())},
        "api_base_url": api_url or None,
        "app_env": app_env or None,
        "placeholder": placeholder,
    }
    build_json = ctx.out(APP_DIR, "build.json")
    build_json.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    handoff = _mirror_for_ci(ctx, ctx.run_dir / APP_DIR)
    ctx.note(f"Flutter build mirrored into {ctx.rel(handoff)} (the folder a CI job hands to the package job)")
    what = "placeholder web build and APK (stand-in flutter)" if placeholder else "web and APK"
    return Outcome.passed(
        f"built {what} {build.version} (sha256 {sha[:12]}...)",
        apk=ctx.rel(apk),
        web=ctx.rel(web),
        build_json=ctx.rel(build_json),
        ci_artifact=ctx.rel(handoff),
    )


def _mirror_for_ci(ctx: StepContext, built: Path) -> Path:
    """Copy the run folder's ``flutter/`` to ``.cicd/artifact/flutter/`` (replacing an older one), so that a CI job
    uploading ``.cicd/artifact/`` hands the APK, ``web/`` and ``build.json`` to the ``package`` job."""
    from cicd.artifact import CI_ARTIFACT

    target = ctx.root / CI_ARTIFACT / APP_DIR
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(built, target)
    return target
