"""The runner: parallelism, ordering, failure propagation, reports, interrupts."""

from __future__ import annotations

import json
import shutil
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cicd import reports
from cicd.context import StepContext
from cicd.errors import ConfigError, MissingToolError, StepFailed, UsageError
from cicd.pipeline import Model, Node, Step
from cicd.results import Outcome, Status
from cicd.runner import CHECKPOINT_EVERY_S, UNFINISHED, Runner, RunOptions, prepare_run_dir


def step(name: str, needs: tuple[str, ...] = (), may_skip: str | None = None) -> Step:
    return Step(name, f"tests.unit:{name}", f"{name} doc", stage="s", needs=needs, may_skip=may_skip, inputs=("x",))


def sleeper(seconds: float) -> Any:
    """A step that takes ``seconds`` in-process (a worker thread waiting, as on a tool's process)."""

    def run(ctx: StepContext) -> None:
        time.sleep(seconds)
        ctx.note("slept")

    return run


def failing(ctx: StepContext) -> None:
    ctx.note("about to fail")
    raise StepFailed("the check found 2 problems")


def crashing(ctx: StepContext) -> None:
    raise RuntimeError("boom")


def run(
    tmp_path: Path, steps: tuple[Step, ...], functions: dict[str, Any], jobs: int = 4, nodes: list[Node] | None = None
) -> Any:
    model = Model(steps)
    runner = Runner(
        tmp_path,
        model,
        nodes or model.ordered(model.nodes()),
        RunOptions(trigger="pr", jobs=jobs),
        environ={},
        functions=functions,
    )
    return runner, runner.run()


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_independent_steps_overlap(tmp_path: Path) -> None:
    _, report = run(tmp_path, (step("a"), step("b")), {"a": sleeper(0.6), "b": sleeper(0.6)}, jobs=2)
    a, b = report.steps
    assert a.status is Status.PASSED and b.status is Status.PASSED
    assert ts(b.started_at) < ts(a.ended_at) and ts(a.started_at) < ts(b.ended_at)


def test_jobs_1_serializes(tmp_path: Path) -> None:
    _, report = run(tmp_path, (step("a"), step("b")), {"a": sleeper(0.3), "b": sleeper(0.3)}, jobs=1)
    a, b = report.steps
    assert ts(b.started_at) >= ts(a.ended_at) or ts(a.started_at) >= ts(b.ended_at)


def test_a_step_never_starts_before_what_it_needs(tmp_path: Path) -> None:
    steps = (step("a"), step("b"), step("c", needs=("a", "b")))
    _, report = run(tmp_path, steps, {"a": sleeper(0.4), "b": sleeper(0.2), "c": sleeper(0.0)})
    by = {s.name: s for s in report.steps}
    assert ts(by["c"].started_at) >= max(ts(by["a"].ended_at), ts(by["b"].ended_at))


def test_failure_marks_dependents_not_run_and_independent_steps_finish(tmp_path: Path) -> None:
    steps = (step("unit-test"), step("package", needs=("unit-test",)), step("deploy", needs=("package",)), step("lint"))
    _, report = run(
        tmp_path, steps, {"unit-test": failing, "package": sleeper(0), "deploy": sleeper(0), "lint": sleeper(0.2)}
    )
    by = {s.name: s for s in report.steps}
    assert by["unit-test"].status is Status.FAILED
    assert by["unit-test"].reason == "the check found 2 problems"
    assert by["package"].status is Status.NOT_RUN and by["package"].reason == "needs unit-test, which failed"
    assert by["deploy"].status is Status.NOT_RUN and by["deploy"].reason == "needs package, which did not run"
    assert by["lint"].status is Status.PASSED
    assert report.status == "failed"


def test_unexpected_exception_is_a_failed_step_with_traceback_in_log(tmp_path: Path) -> None:
    _, report = run(tmp_path, (step("a"),), {"a": crashing})
    (a,) = report.steps
    assert a.status is Status.FAILED and "RuntimeError: boom" in (a.reason or "")
    assert "Traceback" in (tmp_path / a.log).read_text()


def test_skip_allowed_only_where_declared(tmp_path: Path) -> None:
    def skipper(ctx: StepContext) -> Outcome:
        return Outcome.skipped("no network")

    steps = (step("sca", may_skip="offline"), step("lint"))
    _, report = run(tmp_path, steps, {"sca": skipper, "lint": skipper})
    by = {s.name: s for s in report.steps}
    assert by["sca"].status is Status.SKIPPED and by["sca"].reason == "no network"
    assert by["lint"].status is Status.FAILED and "may not skip" in (by["lint"].reason or "")


def test_missing_tool_fails_the_step_with_exit_code_3_recorded(tmp_path: Path) -> None:
    def needs_tool(ctx: StepContext) -> None:
        ctx.run(["no-such-tool-xyz", "--version"])

    _, report = run(tmp_path, (step("a"),), {"a": needs_tool})
    (a,) = report.steps
    assert a.status is Status.FAILED
    assert "no-such-tool-xyz" in (a.reason or "")
    assert a.details["exit_code"] == MissingToolError.return_code


def test_reports_follow_the_contract(tmp_path: Path, report_schema: dict[str, Any]) -> None:
    steps = (step("a"), step("b", needs=("a",)), step("c", may_skip="x"))

    def skipper(ctx: StepContext) -> Outcome:
        return Outcome.skipped("cannot run here")

    runner, report = run(tmp_path, steps, {"a": failing, "b": sleeper(0), "c": skipper})
    run_dir = runner.run_dir
    data = json.loads((run_dir / "report.json").read_text())
    jsonschema.validate(data, report_schema)
    assert data["trigger"] == "pr" and data["status"] == "failed" and data["target"] == "local"
    rows = {r["name"]: r for r in data["steps"]}
    assert rows["a"]["status"] == "failed" and rows["a"]["rerun"] == "uv run inv a"
    assert (tmp_path / rows["a"]["log"]).is_file()
    assert rows["a"]["log"].startswith(str(run_dir.relative_to(tmp_path)))
    assert rows["b"]["status"] == "not-run" and rows["b"]["reason"] == "needs a, which failed"
    assert rows["c"]["status"] == "skipped" and rows["c"]["reason"] == "cannot run here"
    assert (tmp_path / ".cicd" / "runs" / "latest").resolve() == run_dir.resolve()
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1"
    summary = (run_dir / "summary.md").read_text()
    assert "| `a` | ❌ failed" in summary and "rerun `uv run inv a`" in summary and "gantt" in summary


def test_failed_step_prints_log_path_and_rerun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(tmp_path, (step("a"),), {"a": failing})
    out = capsys.readouterr().out
    assert "log:   .cicd/runs/" in out and "rerun: uv run inv a" in out and "about to fail" in out


def test_ci_provider_folds_each_step_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = Model((step("a"),))
    summary = tmp_path / "summary.md"
    Runner(
        tmp_path,
        model,
        [Node("a")],
        RunOptions(),
        environ={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)},
        functions={"a": failing},
    ).run()
    out = capsys.readouterr().out
    assert "::group::a: failed" in out and "::endgroup::" in out and "::error title=a::" in out
    assert "about to fail" in out
    assert "Pipeline `manual` failed" in summary.read_text()


def test_keyboard_interrupt_stops_children_and_writes_report(tmp_path: Path) -> None:
    def interrupt(ctx: StepContext) -> None:
        raise KeyboardInterrupt

    model = Model((step("a"), step("b", needs=("a",))))
    runner = Runner(
        tmp_path,
        model,
        model.ordered(model.nodes()),
        RunOptions(jobs=1),
        environ={},
        functions={"a": interrupt, "b": sleeper(0)},
    )
    # A KeyboardInterrupt raised in a worker thread surfaces from future.result() in the main thread,
    # exactly where Ctrl-C lands during a run.
    report = runner.run()
    assert report.status == "failed"
    data = json.loads((runner.run_dir / "report.json").read_text())
    assert [r["status"] for r in data["steps"]] == ["failed", "not-run"]
    assert "Ctrl-C" in data["steps"][1]["reason"]


def test_jobs_zero_and_unwritable_run_folder_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--jobs must be at least 1"):
        RunOptions(jobs=0).resolved_jobs()
    (tmp_path / ".cicd").mkdir()
    (tmp_path / ".cicd" / "runs").write_text("not a folder")
    with pytest.raises(UsageError, match="cannot write the run folder") as err:
        prepare_run_dir(tmp_path, "x")
    assert err.value.return_code == 2


def test_every_sarif_run_of_a_step_gets_its_own_category(tmp_path: Path) -> None:
    """Code scanning rejects two runs of one tool in one category (gitleaks' history and tree scans)."""
    from cicd import reports

    (tmp_path / "reports").mkdir()
    for name in ("gitleaks-history", "gitleaks-tree"):
        run = {"tool": {"driver": {"name": "gitleaks"}}, "results": []}
        (tmp_path / "reports" / f"{name}.sarif").write_text(json.dumps({"version": "2.1.0", "runs": [run]}))
    kept = {"tool": {"driver": {"name": "x"}}, "automationDetails": {"id": "mine/"}}
    (tmp_path / "reports" / "kept.sarif").write_text(json.dumps({"runs": [kept]}))
    outputs = ("reports/gitleaks-history.sarif", "reports/gitleaks-tree.sarif", "reports/kept.sarif", "reports/x.txt")
    stamped = reports.categorize_sarif(tmp_path, "secrets-scan", outputs)
    assert [p.name for p in stamped] == ["gitleaks-history.sarif", "gitleaks-tree.sarif"]
    ids = [
        json.loads((tmp_path / "reports" / f"{n}.sarif").read_text())["runs"][0]["automationDetails"]["id"]
        for n in ("gitleaks-history", "gitleaks-tree", "kept")
    ]
    assert ids == ["secrets-scan/gitleaks-history/", "secrets-scan/gitleaks-tree/", "mine/"]


def test_the_run_junit_carries_the_post_deploy_test_suites(tmp_path: Path) -> None:
    """Every CI tool's test view reads the run's junit.xml: it shows each integration test and DAST operation."""

    def tested(ctx: StepContext) -> None:
        ctx.out("reports", "dast-dev.junit.xml").write_text(
            '<testsuites><testsuite name="schemathesis" tests="1" failures="1">'
            '<testcase name="GET /apk/latest"><failure message="ST101">- ST101 Server error</failure></testcase>'
            "</testsuite></testsuites>"
        )
        ctx.out("reports", "integration-test-dev.junit.xml").write_text(
            '<testsuite name="integration tests-dev" tests="1"><testcase name="test_health"/></testsuite>'
        )
        ctx.out("reports", "other.junit.xml").write_text('<testsuite name="not a post-deploy report" tests="1"/>')
        ctx.out("reports", "smoke-test-prod.junit.xml").write_text("<testsuite unclosed")

    runner, _ = run(tmp_path, (step("a"),), {"a": tested})
    suites = ET.parse(runner.run_dir / "junit.xml").getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["pipeline-pr", "integration tests-dev", "schemathesis"]
    failure = suites[2].find("testcase/failure")
    assert failure is not None and failure.text == "- ST101 Server error"


def test_a_run_of_quick_steps_rewrites_the_report_a_few_times_not_after_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[float] = []
    real = reports.write_all

    def counted(run_dir: Path, report: reports.RunReport) -> None:
        writes.append(time.monotonic())
        real(run_dir, report)

    monkeypatch.setattr(reports, "write_all", counted)
    steps = tuple(step(f"s{i}") for i in range(12))
    _, report = run(tmp_path, steps, {s.name: sleeper(0.0) for s in steps}, jobs=2)
    assert all(s.status is Status.PASSED for s in report.steps)
    # the first write, the final one, and between them at most one per CHECKPOINT_EVERY_S (plus the loop's tick)
    assert len(writes) <= 3 + report.duration_s / CHECKPOINT_EVERY_S, (len(writes), report.duration_s)
    assert json.loads((tmp_path / ".cicd" / "runs" / "latest" / "report.json").read_text())["status"] == "passed"


def test_a_step_that_runs_is_in_the_report_as_unfinished_while_it_runs(tmp_path: Path) -> None:
    seen: list[str] = []

    def watch(ctx: StepContext) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the scheduler writes the report just after it starts the step
            rows = json.loads((ctx.run_dir / "report.json").read_text())["steps"]
            seen[:] = [r["reason"] for r in rows if r["name"] == "deploy"]
            if seen == [UNFINISHED]:
                return
            time.sleep(0.01)

    deploy = Step("deploy", "tests.unit:deploy", "deploy doc", stage="s", cacheable=False)
    _, report = run(tmp_path, (deploy,), {"deploy": watch})
    assert report.steps[0].status is Status.PASSED and seen == [UNFINISHED]


def test_a_step_hands_its_hand_off_outputs_on_after_each_pass_cached_or_not(tmp_path: Path) -> None:
    """``.cicd/handoff/<step>/`` holds what the step's last pass handed on, for the CI job that needs it; a run that
    fails leaves the last pass's files alone, and a step without a hand-off writes nothing there."""
    tiers = Step(
        "tier",
        "tests.unit:tier",
        "tier doc",
        stage="s",
        inputs=("x",),
        outputs=("reports/data.json", "reports/junit.xml"),
        handoff=("reports/data.json",),
    )
    handed = tmp_path / reports.HANDOFF_DIR / "tier"
    (tmp_path / "x").write_text("1")

    def write(text: str) -> Any:
        def run(ctx: StepContext) -> None:
            ctx.out("reports", "data.json").write_text(text)
            ctx.out("reports", "junit.xml").write_text("<testsuite/>")

        return run

    _, report = run(tmp_path, (tiers, step("other")), {"tier": write("first"), "other": sleeper(0)})
    assert report.status == "passed"
    assert sorted(p.name for p in handed.iterdir()) == ["data.json"] and (handed / "data.json").read_text() == "first"
    assert sorted(p.name for p in (tmp_path / reports.HANDOFF_DIR).iterdir()) == ["tier"]

    shutil.rmtree(handed)
    _, report = run(tmp_path, (tiers,), {"tier": write("not run: served from the cache")})
    assert [s.status for s in report.steps] == [Status.CACHED]
    assert (handed / "data.json").read_text() == "first"

    (tmp_path / "x").write_text("2")
    _, report = run(tmp_path, (tiers,), {"tier": failing})
    assert report.status == "failed" and (handed / "data.json").read_text() == "first"


def test_a_hand_off_must_be_outputs_of_a_step_in_no_environment_with_names_of_their_own() -> None:
    with pytest.raises(ConfigError, match=r"step 'a' hands on \['reports/x'\]: a hand-off is outputs of a step"):
        Model((Step("a", "m:a", "a", stage="s", outputs=("reports/y",), handoff=("reports/x",)),))
    twice = ("reports/x.json", "logs/x.json")
    with pytest.raises(ConfigError, match=r"hands on \['reports/x.json', 'logs/x.json'\].*a name of its own"):
        Model((Step("a", "m:a", "a", stage="s", outputs=twice, handoff=twice),))


def test_latest_becomes_a_link_again_where_a_download_made_it_a_folder(tmp_path: Path) -> None:
    runs = tmp_path / reports.RUNS_DIR
    (runs / reports.LATEST / "reports").mkdir(parents=True)  # an artifact download that followed the link
    (runs / "20261207T000000-abcdef").mkdir()
    reports.point_latest(runs, runs / "20261207T000000-abcdef")
    assert (runs / reports.LATEST).is_symlink() and (runs / reports.LATEST).readlink() == Path("20261207T000000-abcdef")
