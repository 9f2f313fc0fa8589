"""Secret scrubbing: the values of secret-like variables never reach a step log, report.json, junit.xml, summary.md,
the CI job summary or the terminal.

Planted values: one variable per name pattern (TOKEN, SECRET, KEY, PASSWORD) and one whose name matches none but is
listed in ``CICD_SECRET_VARS``. Steps run by the real runner (in process, so this runs in a second) echo them
through the command runner, also URL-encoded, note them, fail with one in their message, crash with one in an
exception, and pass with one in their note; the run is in CI mode, so every step log is printed to the terminal and
a job summary is written. The same guarantee through ``inv`` with a failing integration test that prints planted
values is asserted by ``test_faults.py::test_failing_dev_integration_test_rolls_dev_back_and_leaks_no_secret``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from invoke.exceptions import Exit
from rich.console import Console

from cicd import command
from cicd.cli import boundary
from cicd.context import StepContext
from cicd.errors import ConfigError, StepFailed
from cicd.pipeline import Model, Node, Step
from cicd.results import Outcome
from cicd.runner import Runner, RunOptions

PLANTED = {
    "DEPLOY_TOKEN": "tok/planted+value=4711",
    "APP_SECRET": "secret-planted-value-0815",
    "SIGNING_KEY": "key-planted-value-2342",
    "DB_PASSWORD": "password-planted-1337",
    "RELEASE_WEBHOOK": "webhook-planted-value-9000",  # no pattern matches the name: listed in CICD_SECRET_VARS
}
FORMS = {form for value in PLANTED.values() for form in (value, quote(value, safe=""), quote_plus(value))}


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The planted values in the environment, CI mode on; yields the job summary file."""
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CICD_SECRET_VARS", "RELEASE_WEBHOOK")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    summary = tmp_path / "job-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    command.reset_scrubber()
    yield summary
    command.reset_scrubber()


def echo(ctx: StepContext) -> None:
    script = (
        'echo "token=$DEPLOY_TOKEN secret=$APP_SECRET key=$SIGNING_KEY password=$DB_PASSWORD hook=$RELEASE_WEBHOOK"'
    )
    ctx.run(
        ["sh", "-c", script + '; echo "in a URL: ?X-Amz-Security-Token=$ENCODED"; echo "listed: RELEASE_WEBHOOK"'],
        env={"ENCODED": quote(PLANTED["DEPLOY_TOKEN"], safe="")},
    )
    ctx.note(f"noted {PLANTED['APP_SECRET']}")
    raise StepFailed(
        f"refused for {PLANTED['DEPLOY_TOKEN']} by [tool.cicd]", hint=f"check {PLANTED['RELEASE_WEBHOOK']}"
    )


def crash(ctx: StepContext) -> None:
    raise RuntimeError(f"unexpected {PLANTED['DB_PASSWORD']}")


def passes(ctx: StepContext) -> Outcome:
    return Outcome.passed(f"signed with {PLANTED['SIGNING_KEY']}")


def test_planted_secrets_appear_in_no_log_report_summary_or_terminal(
    planted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = tuple(
        Step(name, f"tests:{name}", name, stage="checks", cacheable=False) for name in ("echo", "crash", "passes")
    )
    terminal = io.StringIO()
    runner = Runner(
        tmp_path,
        Model(steps),
        [Node(s.name) for s in steps],
        RunOptions(jobs=1, use_cache=False),
        console=Console(file=terminal, width=400),
        functions={"echo": echo, "crash": crash, "passes": passes},
    )
    report = runner.run()
    assert [s.status.value for s in report.steps] == ["failed", "failed", "passed"]

    run_dir = runner.run_dir
    log = (run_dir / "logs" / "echo.log").read_text(encoding="utf-8")
    assert "token=*** secret=*** key=*** password=*** hook=***" in log  # echoed, then scrubbed
    assert "?X-Amz-Security-Token=***" in log and "noted ***" in log
    assert "listed: RELEASE_WEBHOOK" in log  # names stay readable: only values are secret
    assert "RuntimeError: unexpected ***" in (run_dir / "logs" / "crash.log").read_text(encoding="utf-8")

    out = capsys.readouterr()
    places = {"terminal": terminal.getvalue() + out.out + out.err, "job summary": planted.read_text(encoding="utf-8")}
    for path in run_dir.rglob("*"):
        if path.is_file():
            places[str(path.relative_to(run_dir))] = path.read_text(encoding="utf-8")
    assert {"report.json", "junit.xml", "summary.md", "logs/echo.log", "logs/crash.log"} <= set(places)
    assert "token=*** secret=***" in places["terminal"]  # CI mode printed the step logs
    # The failure line says exactly what report.json says (text in brackets is not taken for terminal markup).
    assert "✗ echo failed: refused for *** by [tool.cicd] (check ***)" in terminal.getvalue()
    for where, text in places.items():
        for form in FORMS:
            assert form not in text, f"{form!r} leaked into {where}"


def test_a_one_line_error_does_not_print_a_secret(planted: Path) -> None:
    @boundary
    def refuse() -> None:
        raise ConfigError(f"bad value {PLANTED['DB_PASSWORD']}", hint=f"not {PLANTED['RELEASE_WEBHOOK']}")

    with pytest.raises(Exit) as caught:
        refuse()
    assert caught.value.code == 2
    message = str(caught.value.message)
    assert message == "error: bad value *** (not ***)", message
