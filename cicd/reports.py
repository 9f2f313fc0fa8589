"""Run reports (contract): ``report.json``, ``junit.xml`` and ``summary.md`` in ``.cicd/runs/<run-id>/``.

``.cicd/runs/latest`` is a symlink to the newest run folder, replaced atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET  # nosec B405 # builds XML; parses only reports this run's own tools wrote

from cicd.errors import UsageError
from cicd.results import Status, StepResult

RUNS_DIR = Path(".cicd") / "runs"
LATEST = "latest"
HANDOFF_DIR = Path(".cicd") / "handoff"
"""What a step hands to a step of another CI job (:attr:`cicd.pipeline.Step.handoff`): ``<step>/`` holds the
step's hand-off outputs of its last pass. The CI adapters hand this folder on with the tool's own mechanism."""
_ICON = {
    Status.PASSED: "✅",
    Status.FAILED: "❌",
    Status.SKIPPED: "⏭️",
    Status.CACHED: "♻️",
    Status.NOT_RUN: "⛔",
}


@dataclass
class RunReport:
    run_id: str
    trigger: str
    commit: str | None
    target: str | None
    started_at: str
    duration_s: float = 0.0
    steps: list[StepResult] = field(default_factory=list)
    interrupted: bool = False

    @property
    def status(self) -> str:
        failed = self.interrupted or any(s.status in (Status.FAILED, Status.NOT_RUN) for s in self.steps)
        return "failed" if failed or not self.steps else "passed"

    def serialize(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "trigger": self.trigger,
            "commit": self.commit,
            "target": self.target,
            "status": self.status,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "steps": [s.serialize() for s in self.steps],
        }


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_all(run_dir: Path, report: RunReport) -> None:
    atomic_write(run_dir / "report.json", json.dumps(report.serialize(), indent=2) + "\n")
    atomic_write(run_dir / "junit.xml", junit_xml(report, run_dir))
    atomic_write(run_dir / "summary.md", summary_markdown(report))


def categorize_sarif(run_dir: Path, node_id: str, outputs: tuple[str, ...]) -> list[Path]:
    """Give every run of the step's SARIF files its own category (``runs[].automationDetails.id``,
    ``<step>/<file>/``), unless the tool set one: code scanning rejects an upload in which two runs of one tool share
    a category (the two gitleaks scans), and ``upload-sarif`` keeps a category a run already has."""
    stamped: list[Path] = []
    for rel in outputs:
        path = run_dir / rel
        if path.suffix != ".sarif" or not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        runs = data.get("runs") if isinstance(data, dict) else None
        if not isinstance(runs, list):
            continue
        changed = False
        for index, run in enumerate(runs):
            if isinstance(run, dict) and not run.get("automationDetails"):
                suffix = f"-{index}" if len(runs) > 1 else ""
                run["automationDetails"] = {"id": f"{node_id.replace(':', '-')}/{path.stem}{suffix}/"}
                changed = True
        if changed:
            atomic_write(path, json.dumps(data, indent=1) + "\n")
            stamped.append(path)
    return stamped


def keep_handoff(root: Path, run_dir: Path, step: str, outputs: tuple[str, ...]) -> Path:
    """Copy ``outputs`` (paths in ``run_dir``) of a step that passed to ``HANDOFF_DIR/<step>/``, replacing what an
    earlier pass left there; returns that folder."""
    dest = root / HANDOFF_DIR / step
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for rel in outputs:
        src = run_dir / rel
        if src.is_file():
            shutil.copy2(src, dest / src.name)
    return dest


def point_latest(runs_dir: Path, run_dir: Path) -> None:
    link = runs_dir / LATEST
    if link.is_dir() and not link.is_symlink():  # a tool's artifact download made it a real folder
        shutil.rmtree(link)
    tmp = runs_dir / f".{LATEST}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    tmp.replace(link)


TEST_REPORTS = ("integration-test-*.junit.xml", "smoke-test-*.junit.xml", "dast-*.junit.xml")
"""The post-deploy test reports whose suites the run's ``junit.xml`` carries too, so every CI tool's test view shows
each integration test and each operation schemathesis tested, not only the step."""


def test_suites(run_dir: Path) -> list[ET.Element]:
    """The ``testsuite`` elements of the run's post-deploy test reports (unreadable ones are left out)."""
    suites: list[ET.Element] = []
    for pattern in TEST_REPORTS:
        for path in sorted((run_dir / "reports").glob(pattern)):
            try:
                root = ET.parse(path).getroot()  # noqa: S314  # nosec B314 # reports this run's own tools wrote
            except (ET.ParseError, OSError):
                continue
            suites += [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return suites


def junit_xml(report: RunReport, run_dir: Path | None = None) -> str:
    failures = sum(1 for s in report.steps if s.status is Status.FAILED)
    skipped = sum(1 for s in report.steps if s.status in (Status.SKIPPED, Status.NOT_RUN))
    suite = ET.Element(
        "testsuite",
        name=f"pipeline-{report.trigger}",
        tests=str(len(report.steps)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{report.duration_s:.3f}",
        timestamp=report.started_at,
    )
    for step in report.steps:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"pipeline.{report.trigger}",
            name=step.node_id,
            time=f"{step.duration_s:.3f}",
        )
        if step.status is Status.FAILED:
            failure = ET.SubElement(case, "failure", message=step.reason or "failed")
            failure.text = f"log: {step.log}\nrerun: {step.rerun}"
        elif step.status in (Status.SKIPPED, Status.NOT_RUN):
            ET.SubElement(case, "skipped", message=f"{step.status.value}: {step.reason}")
        elif step.status is Status.CACHED:
            out = ET.SubElement(case, "system-out")
            out.text = f"cached: {step.reason or 'inputs unchanged'}"
    root = ET.Element("testsuites")
    root.append(suite)
    root.extend(test_suites(run_dir) if run_dir is not None else [])
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _md(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def gantt(report: RunReport) -> str:
    """A mermaid gantt chart of the steps that ran: parallelism and the critical path at a glance."""
    lines = [
        "```mermaid",
        "gantt",
        f"    title {report.trigger} run {report.run_id}",
        "    dateFormat x",
        "    axisFormat %M:%S",
    ]
    for step in report.steps:
        if step.start_offset_s is None:
            continue
        start_ms = int(step.start_offset_s * 1000)
        end_ms = start_ms + max(1, int(step.duration_s * 1000))
        tag = {Status.FAILED: "crit, ", Status.CACHED: "done, ", Status.SKIPPED: "done, "}.get(step.status, "")
        label = step.node_id.replace(":", " ")
        lines.append(f"    {label} ({step.status.value}) :{tag}{start_ms}, {end_ms}")
    lines.append("```")
    return "\n".join(lines)


def summary_markdown(report: RunReport) -> str:
    icon = "✅" if report.status == "passed" else "❌"
    head = [
        f"## {icon} Pipeline `{report.trigger}` {report.status} in {report.duration_s:.1f} s",
        "",
        f"Run `{report.run_id}` · commit `{(report.commit or 'none')[:12]}` · target `{report.target}`",
        "",
        "| step | status | duration | reason |",
        "|---|---|---:|---|",
    ]
    rows = [
        f"| `{s.node_id}` | {_ICON[s.status]} {s.status.value} | {s.duration_s:.1f} s | {_md(s.reason)} |"
        for s in report.steps
    ]
    failed = [s for s in report.steps if s.status is Status.FAILED]
    tail: list[str] = []
    if failed:
        tail += ["", "### Reproduce a failure on a laptop", ""]
        tail += [f"- `{s.node_id}`: log `{s.log}` · rerun `{s.rerun}`" for s in failed]
    tail += ["", "### Timeline", "", gantt(report), ""]
    return "\n".join(head + rows + tail)


def load_report(path: Path) -> dict[str, Any]:
    """Read a ``report.json``; a missing or corrupt file is a clear usage error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no run report at {path}", hint="run `inv pr-checks` or `inv pipeline` first") from None
    except (OSError, ValueError) as err:
        raise UsageError(
            f"run report {path} is unreadable ({err.__class__.__name__})",
            hint="delete it and start a new run",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise UsageError(f"run report {path} is not a pipeline report", hint="delete it and start a new run")
    return data
