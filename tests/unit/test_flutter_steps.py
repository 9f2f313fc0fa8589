"""The Flutter steps: offline checks (tree-sitter, pubspec schema, semgrep), the SDK half and the build.

Faults are planted in a copy of a fixture app (``tests/unit/fixtures/flutter-app``) or, for the component tests that
check the project's own app, of ``flutter/``, ``semgrep/`` and ``cicd/schemas/``, under a temporary folder, never in
the repository. The Flutter SDK is absent or replaced by ``cicd/adapters/flutter_stand_in.py`` through PATH, so
no test depends on what the machine has installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypedDict

import pytest

from cicd import tools
from cicd.adapters import flutter_stand_in
from cicd.context import StepContext
from cicd.errors import ConfigError, MissingToolError, StepFailed
from cicd.results import Status
from cicd.steps import flutter

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "flutter"
FIXTURE_APP = Path(__file__).parent / "fixtures" / "flutter-app"
STAND_IN = Path(flutter_stand_in.__file__)
PUBSPEC = "flutter/pubspec.yaml"
SCHEMA = REPO / "cicd" / "schemas" / "pubspec.schema.json"

MakeCtx = Callable[..., StepContext]


def _copy_project(dest: Path) -> Path:
    """The project's own app, its Dart rules and the pubspec schema (for the tests of the real app)."""
    ignore = shutil.ignore_patterns("build", ".dart_tool", "android", "web")
    shutil.copytree(REPO / "flutter", dest / "flutter", ignore=ignore)
    shutil.copytree(REPO / "semgrep" / "dart", dest / "semgrep" / "dart")
    shutil.copytree(REPO / "cicd" / "schemas", dest / "cicd" / "schemas")
    return dest


def _fixture_project(dest: Path) -> Path:
    """The fixture app (one Dart file, a pubspec, one Dart rule) with the pubspec schema the step reads."""
    shutil.copytree(FIXTURE_APP, dest)
    shutil.copytree(REPO / "cicd" / "schemas", dest / "cicd" / "schemas")
    return dest


def _path_without_flutter() -> str:
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not (Path(d) / "flutter").exists())


@pytest.fixture
def no_flutter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _path_without_flutter())
    monkeypatch.delenv("CICD_REQUIRE_FLUTTER", raising=False)


@pytest.fixture
def fake_flutter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the fake ``flutter`` first on PATH; returns the file its calls are recorded in."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    script = bin_dir / "flutter"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STAND_IN}" "$@"\n')
    script.chmod(0o755)
    calls = tmp_path / "flutter-calls.jsonl"
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), _path_without_flutter()]))
    monkeypatch.setenv("FAKE_FLUTTER_LOG", str(calls))
    monkeypatch.setenv("FAKE_FLUTTER_AS_SDK", "1")  # the whole SDK, not the placeholder-only stand-in
    monkeypatch.setenv("FAKE_FLUTTER_TEST_EVENTS", str(FIXTURES / "machine-pass.jsonl"))
    monkeypatch.delenv("FAKE_FLUTTER_ANALYZE_OUTPUT", raising=False)
    monkeypatch.delenv("FAKE_FLUTTER_PUB_GET_EXIT", raising=False)
    for name in ("CICD_REQUIRE_FLUTTER", "API_BASE_URL", "APP_ENV"):
        monkeypatch.delenv(name, raising=False)
    return calls


class Call(TypedDict):
    """One call of the fake ``flutter``, as ``cicd/adapters/flutter_stand_in.py`` records it."""

    argv: list[str]
    cwd: str


def _calls(log: Path) -> list[Call]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def flutter_ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeCtx]:
    """Build StepContexts by hand: run folder in tmp, log file open, semgrep from the shared tool folder."""
    monkeypatch.setenv("CICD_TOOLS_DIR", os.environ.get("CICD_TOOLS_DIR", str(REPO / ".cicd" / "tools")))
    opened: list[IO[str]] = []

    def make(root: Path, step: str = "flutter-check", options: dict[str, str] | None = None) -> StepContext:
        run_dir = tmp_path / "runs" / f"{step}-{len(opened)}"
        log_path = run_dir / "logs" / f"{step}.log"
        log_path.parent.mkdir(parents=True)
        log = log_path.open("w", encoding="utf-8")
        opened.append(log)
        return StepContext(
            root=root,
            run_dir=run_dir,
            step=step,
            env=None,
            target="local",
            log=log,
            log_path=log_path,
            environ=dict(os.environ),
            options=options or {},
        )

    yield make
    for log in opened:
        log.close()


def _log(ctx: StepContext) -> str:
    ctx.log.flush()
    return ctx.log_path.read_text()


def _plant(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _edit(root: Path, relative: str, old: str, new: str) -> None:
    path = root / relative
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# --------------------------------------------------------------------------------------------------------------------
# Dart syntax
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.component  # the project's own app
def test_every_dart_file_of_the_app_parses() -> None:
    sources = flutter.dart_sources(REPO / "flutter")
    names = {p.relative_to(REPO).as_posix() for p in sources}
    assert {"flutter/lib/main.dart", "flutter/lib/src/api_client.dart", "flutter/test/widget_test.dart"} <= names
    for path in sources:
        assert flutter.dart_syntax_errors(path, path.name) == []


def test_dart_sources_skip_build_and_hidden_folders(tmp_path: Path) -> None:
    for relative in ("lib/a.dart", "build/web/gen.dart", ".dart_tool/x.dart", "test/b.dart", "lib/notes.txt"):
        _plant(tmp_path, relative, "void main() {}\n")

    found = [p.relative_to(tmp_path).as_posix() for p in flutter.dart_sources(tmp_path)]

    assert found == ["lib/a.dart", "test/b.dart"]


def test_a_syntax_error_is_reported_with_file_line_column_and_snippet(tmp_path: Path) -> None:
    source = tmp_path / "broken.dart"
    source.write_text(
        "import 'package:flutter/material.dart';\n"
        "\n"
        "class Broken {\n"
        "  void ok() {}\n"
        "  void f() { final y = (1 + ; }\n"
        "}\n"
    )

    errors = flutter.dart_syntax_errors(source, "flutter/lib/broken.dart")

    assert errors == ["flutter/lib/broken.dart:5:22: syntax error near '= (1 +'"]


def test_a_missing_token_is_named(tmp_path: Path) -> None:
    source = tmp_path / "missing.dart"
    source.write_text("void f() {\n  g(1, 2;\n  final x = 1\n}\n")

    errors = flutter.dart_syntax_errors(source, "flutter/lib/missing.dart")

    assert errors == [
        "flutter/lib/missing.dart:2:9: syntax error near ';': missing ')'",
        "flutter/lib/missing.dart:3:14: syntax error near 'final x = 1': missing ';'",
    ]


def test_syntax_errors_are_capped_per_file(tmp_path: Path) -> None:
    source = tmp_path / "many.dart"
    source.write_text("".join(f"void f{i}() {{ final x{i} = ; }}\n" for i in range(8)))

    errors = flutter.dart_syntax_errors(source, "m.dart")

    assert len(errors) == 6
    assert errors[-1] == "m.dart: more syntax errors not shown"
    assert [e.split(":")[1] for e in errors[:5]] == ["1", "2", "3", "4", "5"]


def test_columns_count_characters_not_bytes(tmp_path: Path) -> None:
    source = tmp_path / "utf8.dart"
    source.write_text("void f() {\n  final s = 'héllo'; final t = (1 + ; \n}\n", encoding="utf-8")

    errors = flutter.dart_syntax_errors(source, "x.dart")

    assert errors and errors[0].startswith("x.dart:2:")
    column = int(errors[0].split(":")[2])
    line = "  final s = 'héllo'; final t = (1 + ; "
    assert line[column - 1 :].startswith(errors[0].split("near '")[1][:1])


# --------------------------------------------------------------------------------------------------------------------
# prefer_final_locals on the parse tree
# --------------------------------------------------------------------------------------------------------------------


def _final_locals(tmp_path: Path, body: str, *, wrap: bool = True) -> list[str]:
    """The prefer_final_locals findings of a Dart snippet (wrapped in a function unless ``wrap`` is False)."""
    source = tmp_path / "snippet.dart"
    source.write_text(f"void f(Object v) {{\n{body}\n}}\n" if wrap else body, encoding="utf-8")
    return [str(finding) for finding in flutter.non_final_locals(source, "flutter/lib/snippet.dart")]


SEALED_VIEWS = """\
sealed class _View {}

final class _Empty extends _View {}

final class _Loaded extends _View {
  int get size => 1;
}

int describe(_View view) {
  return switch (view) {
    _Empty() => 0,
    {loaded} => loaded.size,
  };
}
"""


def test_a_var_that_is_never_reassigned_is_a_finding(tmp_path: Path) -> None:
    findings = _final_locals(tmp_path, "  var x = 1;\n  print(x);")

    assert findings == [
        "flutter/lib/snippet.dart:2:3: prefer_final_locals: local variable 'x' is never reassigned; "
        "declare it final: 'final x'"
    ]


def test_a_typed_local_that_is_never_reassigned_is_a_finding(tmp_path: Path) -> None:
    findings = _final_locals(tmp_path, "  if (v is int) {\n    List<int> xs = <int>[v];\n    xs.add(2);\n  }")

    assert findings == [
        "flutter/lib/snippet.dart:3:5: prefer_final_locals: local variable 'xs' is never reassigned; "
        "declare it final: 'final List<int> xs'"
    ]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("  final x = 1;\n  print(x);", id="final"),
        pytest.param("  const int x = 1;\n  print(x);", id="const"),
        pytest.param("  var i = 0;\n  i++;\n  print(i);", id="postfix-increment"),
        pytest.param("  var i = 0;\n  --i;", id="prefix-decrement"),
        pytest.param("  int n = 0;\n  n += 2;", id="compound-assignment"),
        pytest.param("  String? s = null;\n  s ??= 'a';", id="null-aware-assignment"),
        pytest.param("  var s = 'a';\n  if (v is int) {\n    s = 'b';\n  }\n  print(s);", id="assigned-in-a-block"),
        pytest.param("  var n = 0;\n  <int>[1].forEach((int e) {\n    n += e;\n  });", id="assigned-in-a-closure"),
        pytest.param("  var a = 0;\n  (a, _) = (1, 2);", id="pattern-assignment"),
        pytest.param("  var e = 0;\n  for (e in <int>[1]) {}\n  print(e);", id="for-in-existing-variable"),
        pytest.param("  for (var i = 0; i < 3; i++) {}", id="for-loop-variable"),
        pytest.param("  for (var i = 0; i < 3;) {\n    break;\n  }", id="unchanged-for-loop-variable"),
        pytest.param("  for (var e in <int>[1]) {\n    print(e);\n  }", id="for-each-variable"),
        pytest.param("  late var x = 1;\n  print(x);", id="late"),
        pytest.param("  bool opened;\n  opened = true;\n  print(opened);", id="assigned-later"),
        pytest.param("  var x = 1, y;\n  y = x;", id="one-of-them-uninitialized"),
        pytest.param("  var a = 1, b = 2;\n  b = a;", id="one-of-them-reassigned"),
        pytest.param("  var _ = 1;", id="wildcard"),
        pytest.param("  print(switch (v) { final int n => n, _ => 0 });", id="final-pattern-variable"),
        pytest.param("  print(switch (v) { int _ => 1, _ => 0 });", id="wildcard-pattern"),
        pytest.param(
            "  switch (v) {\n    case int n:\n      n++;\n      print(n);\n  }", id="reassigned-case-variable"
        ),
        pytest.param("  final (a, b) = (1, 2);\n  print(a + b);", id="final-pattern-declaration"),
    ],
)
def test_final_or_reassigned_variables_are_not_findings(tmp_path: Path, body: str) -> None:
    assert _final_locals(tmp_path, body) == []


def test_parameters_fields_and_top_level_variables_are_not_findings(tmp_path: Path) -> None:
    source = """\
int counter = 0;

class A {
  A(this.size);

  int size;
  static String label = 'a';

  int twice(int value) => value * 2;
}

int Function(int) doubler = (int x) => x * 2;
"""
    assert _final_locals(tmp_path, source, wrap=False) == []


def test_a_typed_pattern_variable_of_a_switch_expression_is_a_finding(tmp_path: Path) -> None:
    source = SEALED_VIEWS.replace("{loaded}", "_Loaded loaded")

    findings = _final_locals(tmp_path, source, wrap=False)

    assert findings == [
        "flutter/lib/snippet.dart:12:5: prefer_final_locals: pattern variable 'loaded' is never reassigned; "
        "declare it final: 'final _Loaded loaded'"
    ]


def test_a_final_pattern_variable_of_a_switch_expression_is_not_a_finding(tmp_path: Path) -> None:
    source = SEALED_VIEWS.replace("{loaded}", "final _Loaded loaded")

    assert _final_locals(tmp_path, source, wrap=False) == []


def test_pattern_variables_of_switch_cases_if_case_and_subpatterns_are_findings(tmp_path: Path) -> None:
    body = (
        "  switch (v) {\n"
        "    case String s:\n"
        "      print(s);\n"
        "  }\n"
        "  if (v case (int a, var b)) {\n"
        "    print(a + b);\n"
        "  }"
    )

    findings = _final_locals(tmp_path, body)

    assert [f.split(": ", 2)[0] for f in findings] == [
        "flutter/lib/snippet.dart:3:10",
        "flutter/lib/snippet.dart:6:15",
        "flutter/lib/snippet.dart:6:22",
    ]
    assert [f.rsplit("'", 2)[1] for f in findings] == ["final String s", "final int a", "final b"]


def test_a_file_that_does_not_parse_gives_no_rule_findings(tmp_path: Path) -> None:
    assert _final_locals(tmp_path, "  var x = 1;\n  print(x;") == []


@pytest.mark.component  # the project's own app
def test_the_app_follows_prefer_final_locals() -> None:
    sources = flutter.dart_sources(REPO / "flutter")
    assert any(p.name == "latest_apk_page.dart" for p in sources)
    findings = [str(f) for path in sources for f in flutter.non_final_locals(path, path.relative_to(REPO).as_posix())]

    assert findings == []


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_flutter_check_fails_on_a_non_final_local_and_writes_sarif(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_semgrep: Callable[..., None], no_flutter: None
) -> None:
    root = _copy_project(tmp_path / "repo")
    page = "flutter/lib/src/latest_apk_page.dart"
    _edit(root, page, "final _Loaded loaded =>", "_Loaded loaded =>")
    _edit(root, page, "final int minutes = apk.expiresIn.inMinutes;", "var minutes = apk.expiresIn.inMinutes;")
    fake_semgrep(_lib_files(root))
    ctx = flutter_ctx(root)

    with pytest.raises(StepFailed) as caught:
        flutter.flutter_check(ctx)

    message = str(caught.value)
    assert message.startswith("flutter-check found 2 problem(s): ")
    lines = (root / page).read_text().splitlines()
    pattern_line = next(n for n, text in enumerate(lines, 1) if "_Loaded loaded =>" in text)
    local_line = next(n for n, text in enumerate(lines, 1) if "var minutes" in text)
    assert f"{page}:{pattern_line}:9: prefer_final_locals: pattern variable 'loaded'" in message
    assert f"{page}:{local_line}:5: prefer_final_locals: local variable 'minutes'" in message
    assert f"problem: {page}:{pattern_line}:9: prefer_final_locals:" in _log(ctx)
    sarif = json.loads((ctx.run_dir / "reports" / "dart-rules.sarif").read_text())
    results = sarif["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["prefer_final_locals", "prefer_final_locals"]
    regions = sorted(r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in results)
    assert regions == sorted([pattern_line, local_line])
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results} == {page}


# --------------------------------------------------------------------------------------------------------------------
# pubspec.yaml
# --------------------------------------------------------------------------------------------------------------------


def _pubspec_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "pubspec.yaml"
    path.write_text(text, encoding="utf-8")
    return flutter.pubspec_problems(path, SCHEMA, PUBSPEC)


def _fixture_pubspec() -> str:
    return (FIXTURE_APP / PUBSPEC).read_text(encoding="utf-8")


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_schema_is_valid_draft_2020_12() -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.component  # the project's own app
def test_the_real_pubspec_is_valid() -> None:
    assert flutter.pubspec_problems(REPO / PUBSPEC, SCHEMA, PUBSPEC) == []


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    text = _fixture_pubspec().replace("  http: ^1.2.2\n", "  http: ^1.2.2\n   broken: [\n")

    problems = _pubspec_problems(tmp_path, text)

    assert len(problems) == 1
    assert problems[0].startswith(f"{PUBSPEC}:{_line_of(text, 'broken: [')}: invalid YAML: ")


def test_missing_sdk_constraint_names_the_key_and_line(tmp_path: Path) -> None:
    text = _fixture_pubspec().replace('  sdk: ">=3.5.0 <4.0.0"\n', "")

    problems = _pubspec_problems(tmp_path, text)

    assert problems == [f"{PUBSPEC}:{_line_of(text, 'environment:')}: environment: missing required key 'sdk'"]


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('sdk: ">=3.5.0 <4.0.0"', 'sdk: ">=3.5.0"', "environment.sdk"),  # no upper bound
        ('sdk: ">=3.5.0 <4.0.0"', 'sdk: ">=2.19.0 <4.0.0"', "environment.sdk"),  # no Dart 3 features
        ("http: ^1.2.2", "http: any", "dependencies.http"),
        ("http: ^1.2.2", "http: '>=1.2.2'", "dependencies.http"),
        ("http: ^1.2.2", "http:\n    git: https://example.invalid/http.git", "dependencies.http"),
        ("flutter_lints: ^4.0.0", "flutter_lints:", "dev_dependencies.flutter_lints"),
        ("name: latest_apk_app", "name: Latest-APK", "name"),
        ("version: 0.1.0+1", "version: 1.0", "version"),
    ],
)
def test_schema_violations_name_the_key_and_line(tmp_path: Path, old: str, new: str, key: str) -> None:
    text = _fixture_pubspec().replace(old, new)
    line = _line_of(text, new.splitlines()[0].strip())

    problems = _pubspec_problems(tmp_path, text)

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{PUBSPEC}:{line}: {key}: ")
    assert "is invalid; expected" in problems[0]


def test_pinned_dependency_shapes_are_accepted(tmp_path: Path) -> None:
    deps = (
        "  a: 1.2.3\n"
        "  b: '>=1.0.0 <2.0.0'\n"
        "  c:\n    path: ../c\n"
        "  d:\n    git:\n      url: https://example.invalid/d.git\n      ref: v1.0.0\n"
        "  e:\n    hosted: https://pub.example.invalid\n    version: ^2.0.0\n"
    )
    text = _fixture_pubspec().replace("  url_launcher: ^6.3.0\n", "  url_launcher: ^6.3.0\n" + deps)

    assert _pubspec_problems(tmp_path, text) == []


def test_an_unknown_key_in_the_flutter_section_is_reported_at_its_line(tmp_path: Path) -> None:
    text = _fixture_pubspec().replace("uses-material-design: true", "uses-material-desing: true")

    problems = _pubspec_problems(tmp_path, text)

    line = _line_of(text, "uses-material-desing")
    assert problems == [
        f"{PUBSPEC}:{line}: flutter.uses-material-desing: unknown key "
        "(a key Flutter knows in the flutter: section (Flutter silently ignores a misspelt one))"
    ]


def test_duplicate_keys_are_reported(tmp_path: Path) -> None:
    text = _fixture_pubspec() + "name: second_name\n"

    problems = _pubspec_problems(tmp_path, text)

    assert f"{PUBSPEC}:{_line_of(text, 'second_name')}: duplicate key 'name'" in problems


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_a_pubspec_that_is_not_a_mapping_is_reported(tmp_path: Path, text: str) -> None:
    assert _pubspec_problems(tmp_path, text) == [
        f"{PUBSPEC}:1: a pubspec must be a YAML mapping (name:, environment:, dependencies:, ...)"
    ]


def test_a_pubspec_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "pubspec.yaml"
    path.write_bytes(b"name: caf\xe9\n")

    assert flutter.pubspec_problems(path, SCHEMA, PUBSPEC) == [
        f"{PUBSPEC}: not UTF-8 text (invalid continuation byte at byte 9)"
    ]


def test_errors_inside_lists_point_at_the_item(tmp_path: Path) -> None:
    text = _fixture_pubspec() + "  assets:\n    - images/\n    - 42\n"

    problems = _pubspec_problems(tmp_path, text)

    assert len(problems) == 1
    assert problems[0].startswith(f"{PUBSPEC}:{_line_of(text, '- 42')}: flutter.assets[1]: ")


def test_a_missing_pubspec_is_reported(tmp_path: Path) -> None:
    assert flutter.pubspec_problems(tmp_path / "pubspec.yaml", SCHEMA, PUBSPEC) == [f"{PUBSPEC}: file not found"]


def test_a_broken_schema_is_a_configuration_error(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": 12}')

    with pytest.raises(ConfigError, match="cannot be used"):
        flutter.pubspec_problems(FIXTURE_APP / PUBSPEC, schema, PUBSPEC)


# --------------------------------------------------------------------------------------------------------------------
# semgrep output, flutter test output
# --------------------------------------------------------------------------------------------------------------------


def test_sarif_findings_name_file_line_and_rule() -> None:
    sarif = {
        "runs": [
            {
                "results": [
                    {
                        "ruleId": "semgrep.dart.dart-plain-http-url",
                        "message": {"text": "Plain http:// URL: not encrypted. Use https://."},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": "flutter/lib/x.dart"},
                                    "region": {"startLine": 7, "startColumn": 3},
                                }
                            }
                        ],
                    }
                ]
            }
        ]
    }

    assert flutter.sarif_findings(sarif) == [
        "flutter/lib/x.dart:7: dart-plain-http-url: Plain http:// URL: not encrypted."
    ]


def test_rule_files_without_rules_are_a_problem_and_semgrep_is_not_started(
    tmp_path: Path, flutter_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _fixture_project(tmp_path / "repo")
    (root / "semgrep" / "dart" / "empty.yaml").write_text("rules: []\n")
    monkeypatch.setattr(tools, "ensure", lambda *a: pytest.fail("semgrep must not run"))

    result = flutter.run_semgrep(flutter_ctx(root))

    assert result.problems == ("semgrep/dart/empty.yaml:1: expected a non-empty 'rules:' list",)


def test_machine_output_of_a_passing_run_becomes_junit() -> None:
    lines = (FIXTURES / "machine-pass.jsonl").read_text().splitlines()

    junit, report = flutter.machine_to_junit(lines, base="/work/app/flutter")

    assert (report.total, report.passed, report.failed, report.skipped, report.success) == (3, 3, [], 0, True)
    suites = junit.findall("testsuite")
    assert [s.get("name") for s in suites] == ["test/api_client_test.dart", "test/widget_test.dart"]
    assert [s.get("tests") for s in suites] == ["2", "1"]
    names = [c.attrib["name"] for c in junit.iter("testcase")]
    assert not any(name.startswith("loading ") for name in names)
    first = junit.find("testsuite/testcase")
    assert first is not None and first.get("time") == "0.048"


def test_machine_output_of_a_failing_run_keeps_failures_skips_and_load_errors() -> None:
    lines = (FIXTURES / "machine-fail.jsonl").read_text().splitlines()

    junit, report = flutter.machine_to_junit(lines, base="/work/app/flutter")

    assert report.success is False
    assert report.failed == [
        "test/api_client_test.dart: loading /work/app/flutter/test/api_client_test.dart",
        "test/widget_test.dart: shows the empty state when no build is published",
    ]
    assert (report.passed, report.skipped, report.total) == (1, 1, 4)
    error = junit.find("testsuite/testcase/error")
    assert error is not None and "Undefined name 'nope'" in (error.text or "")
    widget_suite = junit.findall("testsuite")[1]
    assert (widget_suite.get("failures"), widget_suite.get("skipped"), widget_suite.get("tests")) == ("1", "1", "3")
    failure = widget_suite.find("testcase/failure")
    assert failure is not None and failure.get("message") == "Expected: exactly one matching candidate"


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_a_run_without_tests_is_reported(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_flutter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = tmp_path / "none.jsonl"
    events.write_text('not json\n{"broken\n["a list"]\n{"type":"done","success":true,"time":1}\n')
    monkeypatch.setenv("FAKE_FLUTTER_TEST_EVENTS", str(events))
    root = _copy_project(tmp_path / "repo")

    problems, _, _ = flutter.sdk_checks(flutter_ctx(root), root / "flutter")

    assert problems == ["flutter test ran no tests"]


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_a_failed_test_run_without_failing_tests_is_reported(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_flutter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = tmp_path / "crash.jsonl"
    events.write_text('{"type":"done","success":false,"time":1}\n')
    monkeypatch.setenv("FAKE_FLUTTER_TEST_EVENTS", str(events))
    root = _copy_project(tmp_path / "repo")

    problems, _, _ = flutter.sdk_checks(flutter_ctx(root), root / "flutter")

    assert problems == ["flutter test failed (exit 1) without a failing test; see the log"]


def test_a_test_that_never_finishes_counts_as_an_error() -> None:
    lines = [
        '{"type":"suite","suite":{"id":0,"path":"t.dart"}}',
        '{"type":"testStart","test":{"id":1,"name":"hangs","suiteID":0},"time":1}',
    ]

    _, report = flutter.machine_to_junit(lines)

    assert report.failed == ["t.dart: hangs"]


# --------------------------------------------------------------------------------------------------------------------
# The SDK half and flutter-build with a fake flutter
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_sdk_checks_run_pub_get_analyze_and_test_and_write_junit(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_flutter: Path
) -> None:
    root = _copy_project(tmp_path / "repo")
    ctx = flutter_ctx(root)

    problems, note, reports = flutter.sdk_checks(ctx, root / "flutter")

    assert problems == []
    assert note == "flutter analyze clean, flutter test 3 passed (Flutter 3.24.5)"
    calls = _calls(fake_flutter)
    assert [c["argv"] for c in calls] == [
        ["--version", "--machine"],
        ["pub", "get"],
        ["analyze"],
        ["test", "--machine"],
    ]
    assert {c["cwd"] for c in calls} == {str(root / "flutter")}
    assert reports["junit"].endswith("reports/flutter-junit.xml")
    junit = ET.parse(ctx.run_dir / "reports" / "flutter-junit.xml").getroot()
    first = junit.find("testsuite/testcase")
    assert first is not None and str(first.get("name")).startswith("ApiClient.fetchLatest calls")
    assert (ctx.run_dir / "reports" / "flutter-test.jsonl").read_text().startswith("Resolving dependencies")


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_sdk_checks_report_analyzer_issues_and_failing_tests(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_flutter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FLUTTER_ANALYZE_OUTPUT", str(FIXTURES / "analyze-issues.txt"))
    monkeypatch.setenv("FAKE_FLUTTER_TEST_EVENTS", str(FIXTURES / "machine-fail.jsonl"))
    root = _copy_project(tmp_path / "repo")
    ctx = flutter_ctx(root)

    problems, _, _ = flutter.sdk_checks(ctx, root / "flutter")

    assert problems[0] == (
        "flutter analyze found 2 issue(s): info: Use 'const' with the constructor to improve performance "
        "• lib/src/latest_apk_page.dart:212:20 • prefer_const_constructors"
    )
    # The fixture's suites live outside this app folder, so their paths stay absolute.
    assert problems[1].startswith("flutter test: 2 failed: /work/app/flutter/test/api_client_test.dart: loading ")
    assert "shows the empty state when no build is published" in problems[1]
    assert (ctx.run_dir / "reports" / "flutter-junit.xml").is_file()


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_sdk_checks_stop_when_pub_get_fails(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_flutter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FLUTTER_PUB_GET_EXIT", "65")
    root = _copy_project(tmp_path / "repo")

    problems, _, _ = flutter.sdk_checks(flutter_ctx(root), root / "flutter")

    assert problems == ["`flutter pub get` failed (exit 65); analyze and test not run"]
    assert [c["argv"][0] for c in _calls(fake_flutter)] == ["--version", "pub"]


def test_flutter_build_is_skipped_without_the_sdk(tmp_path: Path, flutter_ctx: MakeCtx, no_flutter: None) -> None:
    root = _fixture_project(tmp_path / "repo")

    outcome = flutter.flutter_build(flutter_ctx(root, step="flutter-build"))

    assert outcome.status is Status.SKIPPED
    assert outcome.reason == "Flutter SDK not on PATH: flutter build web/apk cannot run here"


def test_a_job_that_requires_the_sdk_fails_with_exit_3_without_it(
    tmp_path: Path, flutter_ctx: MakeCtx, no_flutter: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CICD_REQUIRE_FLUTTER", "1")
    root = _fixture_project(tmp_path / "repo")

    for step in (flutter.flutter_build, flutter.flutter_check):
        with pytest.raises(MissingToolError, match="Flutter SDK not on PATH") as caught:
            step(flutter_ctx(root))
        assert caught.value.return_code == 3


def test_flutter_check_without_an_app_fails_clearly(tmp_path: Path, flutter_ctx: MakeCtx, no_flutter: None) -> None:
    with pytest.raises(StepFailed, match=r"^flutter/ does not exist"):
        flutter.flutter_check(flutter_ctx(tmp_path))


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_flutter_build_creates_platforms_builds_and_collects_outputs(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_flutter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CICD_BUILD_VERSION", "0.1.57")
    monkeypatch.setenv("CICD_BUILD_COMMIT", "abc1234")
    root = _copy_project(tmp_path / "repo")
    options = {"api_base_url": "https://api.example.test/dev/", "app_env": "dev"}
    ctx = flutter_ctx(root, step="flutter-build", options=options)

    outcome = flutter.flutter_build(ctx)

    app = root / "flutter"
    argvs = [c["argv"] for c in _calls(fake_flutter)]
    assert ["create", "--platforms=android,web", "--project-name", "latest_apk_app", "."] in argvs
    defines = ["--dart-define=API_BASE_URL=https://api.example.test/dev/", "--dart-define=APP_ENV=dev"]
    version = ["--build-name", "0.1.57", "--build-number", "57"]
    assert ["build", "web", "--release", *defines, *version] in argvs
    assert ["build", "apk", "--release", *defines, *version] in argvs
    assert 'android:name="android.permission.INTERNET"' in (app / flutter.ANDROID_MANIFEST).read_text()

    out = ctx.run_dir / "flutter"
    apk = out / "app-release.apk"
    assert apk.read_bytes() == b"PK\x03\x04 fake apk 0.1.57"
    assert (out / "web" / "index.html").is_file() and (out / "web" / "main.dart.js").is_file()
    info = json.loads((out / "build.json").read_text())
    sha = hashlib.sha256(apk.read_bytes()).hexdigest()
    assert info["version"] == "0.1.57" and info["build_number"] == 57 and info["commit"] == "abc1234"
    assert info["apk"] == {"file": "app-release.apk", "size": apk.stat().st_size, "sha256": sha}
    assert info["flutter"] == "3.24.5"
    assert outcome.status is Status.PASSED
    assert outcome.reason == f"built web and APK 0.1.57 (sha256 {info['apk']['sha256'][:12]}...)"


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_flutter_build_keeps_existing_platform_folders_and_drops_a_baked_config(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_flutter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CICD_BUILD_VERSION", "1.2.3")
    root = _copy_project(tmp_path / "repo")
    app = root / "flutter"
    manifest = app / flutter.ANDROID_MANIFEST
    _plant(
        app,
        flutter.ANDROID_MANIFEST,
        '<manifest xmlns:android="x">\n'
        '    <uses-permission android:name="android.permission.INTERNET"/>\n'
        "</manifest>\n",
    )
    before = manifest.read_text()
    _plant(app, "web/index.html", "<!DOCTYPE html>")
    _plant(app, "web/config.json", '{"api_base_url": "https://stale.example.test"}')
    ctx = flutter_ctx(root, step="flutter-build")

    flutter.flutter_build(ctx)

    argvs = [c["argv"] for c in _calls(fake_flutter)]
    assert not any(argv[0] == "create" for argv in argvs)
    assert ["build", "apk", "--release", "--build-name", "1.2.3", "--build-number", "3"] in argvs
    assert "no API_BASE_URL at build time" in _log(ctx)
    assert manifest.read_text() == before
    assert not (ctx.run_dir / "flutter" / "web" / "config.json").exists()


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_flutter_build_mirrors_its_outputs_into_the_ci_artifact_folder(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_flutter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CICD_BUILD_VERSION", "0.1.60")
    root = _copy_project(tmp_path / "repo")
    stale = root / ".cicd" / "artifact" / "flutter"
    _plant(stale, "old-release.apk", "from an earlier build")
    _plant(root, ".cicd/artifact/manifest.json", "{}")
    ctx = flutter_ctx(root, step="flutter-build")

    outcome = flutter.flutter_build(ctx)

    handoff = root / ".cicd" / "artifact" / "flutter"
    assert (handoff / "app-release.apk").read_bytes() == b"PK\x03\x04 fake apk 0.1.60"
    assert (handoff / "web" / "index.html").is_file()
    assert (handoff / "build.json").is_file()
    assert json.loads((handoff / "build.json").read_text())["version"] == "0.1.60"
    out = ctx.run_dir / "flutter"
    mirrored = sorted(p.relative_to(handoff).as_posix() for p in handoff.rglob("*"))
    assert mirrored == sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert not (handoff / "old-release.apk").exists()
    assert (root / ".cicd" / "artifact" / "manifest.json").read_text() == "{}"
    assert outcome.details["ci_artifact"] == ".cicd/artifact/flutter"


def test_ensure_internet_permission_is_idempotent(tmp_path: Path) -> None:
    manifest = tmp_path / "AndroidManifest.xml"
    manifest.write_text(
        '<?xml version="1.0"?>\n<manifest xmlns:android="x" package="p">\n  <application/>\n</manifest>\n'
    )

    assert flutter.ensure_internet_permission(manifest) is True
    once = manifest.read_text()
    assert flutter.ensure_internet_permission(manifest) is False
    assert manifest.read_text() == once
    assert once.index("android.permission.INTERNET") < once.index("<application/>")


def test_ensure_internet_permission_rejects_a_file_without_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "AndroidManifest.xml"
    manifest.write_text("<nothing/>")

    with pytest.raises(StepFailed, match="no <manifest> element"):
        flutter.ensure_internet_permission(manifest)


def test_write_runtime_config_writes_the_environment_url(tmp_path: Path) -> None:
    path = flutter.write_runtime_config(tmp_path, api_base_url=" https://api.example.test/prod/ ", environment="prod")

    assert path == tmp_path / "config.json"
    assert json.loads(path.read_text()) == {"api_base_url": "https://api.example.test/prod", "environment": "prod"}


@pytest.mark.parametrize(
    ("url", "message"),
    [(None, "no API URL for environment 'preprod'"), ("", "no API URL"), ("api.example.test", "not an absolute")],
)
def test_write_runtime_config_rejects_a_missing_or_bad_url(tmp_path: Path, url: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        flutter.write_runtime_config(tmp_path, api_base_url=url, environment="preprod")
    assert caught.value.return_code == 2
    assert not (tmp_path / "config.json").exists()


def test_write_runtime_config_needs_a_built_web_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a built web app folder"):
        flutter.write_runtime_config(tmp_path / "web", api_base_url="https://a.example.test", environment="dev")


# --------------------------------------------------------------------------------------------------------------------
# run_semgrep and flutter_check with a stand-in semgrep (fast; the real semgrep runs in the slow tests below)
# --------------------------------------------------------------------------------------------------------------------

FAKE_SEMGREP = """\
import json, os, sys
args = sys.argv[1:]
sarif = next(a.split("=", 1)[1] for a in args if a.startswith("--sarif-output="))
results = next(a.split("=", 1)[1] for a in args if a.startswith("--json-output="))
findings = json.loads(os.environ.get("FAKE_SEMGREP_FINDINGS", "[]"))
json.dump({"runs": [{"results": findings}]}, open(sarif, "w"))
json.dump({"paths": {"scanned": json.loads(os.environ["FAKE_SEMGREP_SCANNED"])}}, open(results, "w"))
print("fake semgrep", " ".join(args))
sys.exit(int(os.environ.get("FAKE_SEMGREP_EXIT", "1" if findings else "0")))
"""


def _finding(uri: str, line: int, rule: str, text: str) -> dict[str, object]:
    region = {"startLine": line}
    location = {"physicalLocation": {"artifactLocation": {"uri": uri}, "region": region}}
    return {"ruleId": f"semgrep.dart.{rule}", "message": {"text": text}, "locations": [location]}


@pytest.fixture
def fake_semgrep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Replace the isolated semgrep by a script; call the returned function to set what it reports."""
    script = tmp_path / "fake-semgrep"
    script.write_text(f"#!{sys.executable}\n{FAKE_SEMGREP}")
    script.chmod(0o755)
    monkeypatch.setattr(tools, "ensure", lambda tool, root: script)

    def configure(scanned: list[str], findings: list[dict[str, object]] = [], exit_code: int | None = None) -> None:  # noqa: B006
        monkeypatch.setenv("FAKE_SEMGREP_SCANNED", json.dumps(scanned))
        monkeypatch.setenv("FAKE_SEMGREP_FINDINGS", json.dumps(findings))
        if exit_code is None:
            monkeypatch.delenv("FAKE_SEMGREP_EXIT", raising=False)
        else:
            monkeypatch.setenv("FAKE_SEMGREP_EXIT", str(exit_code))

    return configure


def _lib_files(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in flutter.dart_sources(root / "flutter" / "lib")]


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_run_semgrep_turns_sarif_results_into_problems(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_semgrep: Callable[..., None]
) -> None:
    root = _copy_project(tmp_path / "repo")
    fake_semgrep(_lib_files(root), [_finding("flutter/lib/main.dart", 3, "dart-print-in-lib", "print() here. More.")])
    ctx = flutter_ctx(root)

    result = flutter.run_semgrep(ctx)

    assert result.problems == ("flutter/lib/main.dart:3: dart-print-in-lib: print() here.",)
    assert result.rules == 5
    assert result.sarif == ctx.run_dir / "reports" / "semgrep-dart.sarif"
    assert "fake semgrep scan --metrics=off --disable-version-check --error --config semgrep/dart" in _log(ctx)


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_run_semgrep_reports_lib_files_it_did_not_scan(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_semgrep: Callable[..., None]
) -> None:
    root = _copy_project(tmp_path / "repo")
    fake_semgrep([p for p in _lib_files(root) if not p.endswith("models.dart")])

    result = flutter.run_semgrep(flutter_ctx(root))

    assert result.problems == ("flutter/lib/src/models.dart: not scanned by semgrep (ignored by a .semgrepignore?)",)


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_run_semgrep_fails_when_semgrep_cannot_run(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_semgrep: Callable[..., None]
) -> None:
    root = _copy_project(tmp_path / "repo")
    fake_semgrep([], exit_code=7)

    with pytest.raises(StepFailed, match=r"semgrep could not run the rules in semgrep/dart/ \(exit 7\)"):
        flutter.run_semgrep(flutter_ctx(root))


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_run_semgrep_does_not_trust_findings_missing_from_the_sarif(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_semgrep: Callable[..., None]
) -> None:
    root = _copy_project(tmp_path / "repo")
    fake_semgrep(_lib_files(root), exit_code=1)

    result = flutter.run_semgrep(flutter_ctx(root))

    assert result.problems[0].startswith("semgrep reported findings that are not in ")


def test_rule_files_with_invalid_yaml_are_reported_with_their_line(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_semgrep: Callable[..., None]
) -> None:
    root = _fixture_project(tmp_path / "repo")
    (root / "semgrep" / "dart" / "broken.yaml").write_text("rules:\n  - id: x\n    message: a: b\n")

    result = flutter.run_semgrep(flutter_ctx(root))

    assert result.problems == ("semgrep/dart/broken.yaml:3: invalid YAML: mapping values are not allowed here",)


def test_a_rules_folder_without_rule_files_is_a_problem(tmp_path: Path, flutter_ctx: MakeCtx) -> None:
    root = _fixture_project(tmp_path / "repo")
    shutil.rmtree(root / "semgrep" / "dart")

    result = flutter.run_semgrep(flutter_ctx(root))

    assert result.problems == ("semgrep/dart: no semgrep rule files (*.yaml)",)


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_flutter_check_passes_and_says_which_halves_ran(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_semgrep: Callable[..., None], no_flutter: None
) -> None:
    root = _copy_project(tmp_path / "repo")
    fake_semgrep(_lib_files(root))
    ctx = flutter_ctx(root)

    outcome = flutter.flutter_check(ctx)

    count = len(flutter.dart_sources(root / "flutter"))
    assert outcome.status is Status.PASSED
    assert outcome.reason == (
        f"offline checks passed ({count} Dart files, pubspec, 5 semgrep rules); "
        "Flutter SDK not on PATH: flutter analyze/test not run"
    )
    assert outcome.details["sdk_checks"] == "not run"
    assert f"dart syntax: {count} file(s) parsed with tree-sitter-dart" in _log(ctx)
    assert outcome.details["dart_rules_sarif"] == ctx.rel(ctx.run_dir / "reports" / "dart-rules.sarif")
    sarif = json.loads((ctx.run_dir / "reports" / "dart-rules.sarif").read_text())
    assert sarif["runs"][0]["results"] == []
    assert "dart rules: prefer_final_locals: 0 finding(s)" in _log(ctx)


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_flutter_check_collects_the_problems_of_every_check(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_semgrep: Callable[..., None], no_flutter: None
) -> None:
    root = _copy_project(tmp_path / "repo")
    fake_semgrep(
        _lib_files(root), [_finding("flutter/lib/main.dart", line, "dart-print-in-lib", "p.") for line in (1, 2)]
    )
    for name in ("a", "b", "c", "d"):
        _plant(root, f"flutter/test/{name}_test.dart", "void main() { final x = ; }\n")
    _edit(root, PUBSPEC, "name: latest_apk_app", "name: Bad-Name")
    ctx = flutter_ctx(root)

    with pytest.raises(StepFailed) as caught:
        flutter.flutter_check(ctx)

    message = str(caught.value)
    assert message.startswith("flutter-check found 7 problem(s): flutter/test/a_test.dart:1:")
    assert message.endswith(" (and 2 more)")
    log = _log(ctx)
    assert "problem: flutter/pubspec.yaml:1: name: " in log
    assert "problem: flutter/lib/main.dart:2: dart-print-in-lib: p." in log


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_flutter_check_needs_dart_files_in_lib(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_semgrep: Callable[..., None], no_flutter: None
) -> None:
    root = _copy_project(tmp_path / "repo")
    shutil.rmtree(root / "flutter" / "lib")
    fake_semgrep([])

    with pytest.raises(StepFailed, match=r"flutter/lib: no \.dart files"):
        flutter.flutter_check(flutter_ctx(root))


# --------------------------------------------------------------------------------------------------------------------
# flutter-check end to end (runs semgrep: slow)
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_app_passes_and_the_note_says_the_sdk_half_did_not_run(
    tmp_path: Path, flutter_ctx: MakeCtx, no_flutter: None
) -> None:
    root = _copy_project(tmp_path / "repo")
    ctx = flutter_ctx(root)

    outcome = flutter.flutter_check(ctx)

    assert outcome.status is Status.PASSED
    dart_files = len(flutter.dart_sources(root / "flutter"))
    assert outcome.reason == (
        f"offline checks passed ({dart_files} Dart files, pubspec, 5 semgrep rules); "
        "Flutter SDK not on PATH: flutter analyze/test not run"
    )
    assert outcome.details["sdk_checks"] == "not run"
    sarif = json.loads((ctx.run_dir / "reports" / "semgrep-dart.sarif").read_text())
    assert sarif["runs"][0]["results"] == []
    scanned = json.loads((ctx.run_dir / "reports" / "semgrep-dart.json").read_text())["paths"]["scanned"]
    assert "flutter/lib/src/latest_apk_page.dart" in scanned
    log = _log(ctx)
    assert "--metrics=off" in log and "--disable-version-check" in log and "--config semgrep/dart" in log


BAD_LIB = """\
import 'dart:io';

import 'package:flutter/foundation.dart';

const String apiBase = 'http://example.com/api';
const String localApi = 'http://localhost:8080/api';

HttpClient insecureClient() {
  final HttpClient client = HttpClient();
  client.badCertificateCallback = (X509Certificate cert, String host, int port) => true;
  return client;
}

void report(String message) {
  print(message);
  debugPrint(message);
}
"""


@pytest.fixture(scope="module")
def planted_faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """One flutter-check run over a copy with planted faults: (message, log, run folder)."""
    tmp = tmp_path_factory.mktemp("planted")
    root = _copy_project(tmp / "repo")
    _plant(root, "flutter/lib/src/insecure.dart", BAD_LIB)
    _plant(root, "flutter/lib/src/broken.dart", "class Broken {\n  void f() { final y = (1 + ; }\n}\n")
    _edit(root, PUBSPEC, '  sdk: ">=3.5.0 <4.0.0"\n', "")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", _path_without_flutter())
        patch.delenv("CICD_REQUIRE_FLUTTER", raising=False)
        patch.setenv("CICD_TOOLS_DIR", os.environ.get("CICD_TOOLS_DIR", str(REPO / ".cicd" / "tools")))
        run_dir = tmp / "run"
        log_path = run_dir / "logs" / "flutter-check.log"
        log_path.parent.mkdir(parents=True)
        with log_path.open("w", encoding="utf-8") as log:
            ctx = StepContext(root, run_dir, "flutter-check", None, "local", log, log_path)
            with pytest.raises(StepFailed) as caught:
                flutter.flutter_check(ctx)
        yield str(caught.value), log_path.read_text(), run_dir


@pytest.mark.slow
def test_a_planted_syntax_error_fails_with_file_and_line(planted_faults: tuple[str, str, Path]) -> None:
    message, log, _ = planted_faults

    assert message.startswith("flutter-check found 5 problem(s): ")
    assert "flutter/lib/src/broken.dart:2:22: syntax error near '= (1 +'" in message
    assert "problem: flutter/lib/src/broken.dart:2:22: syntax error near '= (1 +'" in log


@pytest.mark.slow
def test_a_planted_schema_violation_fails_naming_the_file(planted_faults: tuple[str, str, Path]) -> None:
    message, _, _ = planted_faults

    assert "flutter/pubspec.yaml:7: environment: missing required key 'sdk'" in message


@pytest.mark.slow
def test_semgrep_finds_the_planted_http_url_disabled_cert_check_and_print(
    planted_faults: tuple[str, str, Path],
) -> None:
    message, log, run_dir = planted_faults
    sarif = json.loads((run_dir / "reports" / "semgrep-dart.sarif").read_text())

    found = sorted(
        (
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
            r["ruleId"].rsplit(".", 1)[-1],
        )
        for r in sarif["runs"][0]["results"]
    )
    # http://localhost (line 6) and debugPrint (line 16) are allowed.
    assert found == [
        ("flutter/lib/src/insecure.dart", 5, "dart-plain-http-url"),
        ("flutter/lib/src/insecure.dart", 10, "dart-disabled-certificate-check"),
        ("flutter/lib/src/insecure.dart", 15, "dart-print-in-lib"),
    ]
    assert "flutter/lib/src/insecure.dart:5: dart-plain-http-url: Plain http:// URL" in message
    assert "flutter/lib/src/insecure.dart:10: dart-disabled-certificate-check:" in message
    assert "Flutter SDK not on PATH" not in message
    assert "+ semgrep scan --metrics=off --disable-version-check --error --config semgrep/dart" in log


@pytest.mark.slow
def test_invalid_pubspec_yaml_fails_both_halves_naming_the_file(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_flutter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FLUTTER_PUB_GET_EXIT", "65")
    root = _copy_project(tmp_path / "repo")
    _edit(root, PUBSPEC, "  http: ^1.2.2\n", "  http: ^1.2.2\n   broken: [\n")

    with pytest.raises(StepFailed) as caught:
        flutter.flutter_check(flutter_ctx(root))

    message = str(caught.value)
    assert "flutter/pubspec.yaml:15: invalid YAML: mapping values are not allowed here" in message
    assert "`flutter pub get` failed (exit 65)" in message


@pytest.mark.slow
def test_the_sdk_half_runs_when_flutter_is_on_path(tmp_path: Path, flutter_ctx: MakeCtx, fake_flutter: Path) -> None:
    root = _copy_project(tmp_path / "repo")
    ctx = flutter_ctx(root)

    outcome = flutter.flutter_check(ctx)

    assert outcome.status is Status.PASSED
    assert outcome.reason is not None and outcome.reason.endswith(
        "; flutter analyze clean, flutter test 3 passed (Flutter 3.24.5)"
    )
    assert outcome.details["sdk_checks"] == "ran"
    assert (ctx.run_dir / "reports" / "flutter-junit.xml").is_file()
    assert ["test", "--machine"] in [c["argv"] for c in _calls(fake_flutter)]


@pytest.mark.component  # runs a stand-in flutter or semgrep
def test_the_stand_in_flutter_checks_nothing_and_builds_placeholders(
    tmp_path: Path, flutter_ctx: MakeCtx, fake_flutter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in (cicd/adapters/flutter_stand_in.py, for machines without the SDK) never counts as an analyze or
    test run, and its builds are called placeholders; where the SDK is required it is a missing SDK."""
    monkeypatch.delenv("FAKE_FLUTTER_AS_SDK")
    monkeypatch.setenv("CICD_BUILD_VERSION", "0.1.58")
    monkeypatch.setenv("CICD_BUILD_COMMIT", "abc1234")
    root = _copy_project(tmp_path / "repo")
    outcome = flutter.flutter_check(flutter_ctx(root))
    assert outcome.status is Status.PASSED and outcome.details["sdk_checks"] == "not run"
    assert "stand-in flutter" in (outcome.reason or "") and "flutter analyze/test not run" in (outcome.reason or "")
    assert not any(c["argv"][:1] in (["analyze"], ["test"]) for c in _calls(fake_flutter))
    with pytest.raises(MissingToolError, match="stand-in flutter"):
        flutter.flutter_check(flutter_ctx(root, options={"require_sdk": "1"}))
    built = flutter.flutter_build(flutter_ctx(root, step="flutter-build"))
    assert built.status is Status.PASSED and "placeholder web build and APK (stand-in flutter)" in (built.reason or "")
    info = json.loads((root / ".cicd" / "artifact" / "flutter" / "build.json").read_text())
    assert info["placeholder"] is True
