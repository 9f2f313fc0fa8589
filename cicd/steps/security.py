"""Shift-left security steps: sast (bandit + semgrep), secrets-scan (gitleaks), sca (pip-audit), sbom (CycloneDX)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from cicd import tools
from cicd.context import StepContext
from cicd.deps import LOCK
from cicd.errors import StepFailed
from cicd.results import Outcome

PY_TARGETS = ("cicd", "functions", "infra", "tasks.py")
SEMGREP_FLAGS = ("--metrics=off", "--disable-version-check")
# Output of pip-audit (and the HTTP stack under it) when the advisory service cannot be reached.
UNREACHABLE = re.compile(
    r"ConnectionError|Max retries exceeded|NameResolutionError|Temporary failure in name resolution|"
    r"Failed to establish a new connection|ProxyError|Connection refused|timed out|Network is unreachable",
    re.IGNORECASE,
)


def sarif_findings(path: Path) -> list[str]:
    """``file:line: rule message`` for every result in a SARIF file."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for run in data.get("runs", []):
        for result in run.get("results", []):
            loc = (result.get("locations") or [{}])[0].get("physicalLocation", {})
            uri = loc.get("artifactLocation", {}).get("uri", "?")
            line = loc.get("region", {}).get("startLine", "?")
            text = result.get("message", {}).get("text", "").strip().splitlines()
            found.append(f"{uri}:{line}: {result.get('ruleId', '?')} {text[0] if text else ''}")
    return found


def sast(ctx: StepContext) -> Outcome:
    """bandit and semgrep (rules in semgrep/python) over the project's Python code; any finding fails."""
    bandit_sarif = ctx.out("reports", "bandit.sarif")
    ctx.run(
        [
            "bandit",
            "-c",
            "pyproject.toml",
            "-r",
            *PY_TARGETS,
            "-f",
            "sarif",
            "-o",
            str(bandit_sarif),
            "--exit-zero",
            "-q",
        ]
    )
    findings = [f"bandit {f}" for f in sarif_findings(bandit_sarif)]
    semgrep = tools.ensure(tools.SEMGREP, ctx.root)
    semgrep_sarif = ctx.out("reports", "semgrep.sarif")
    ctx.run(
        [
            semgrep,
            "scan",
            "--config",
            "semgrep/python",
            *SEMGREP_FLAGS,
            f"--sarif-output={semgrep_sarif}",
            "--text",
            *PY_TARGETS,
        ],
        env={"SEMGREP_SEND_METRICS": "off", "SEMGREP_ENABLE_VERSION_CHECK": "0"},
    )
    findings += [f"semgrep {f}" for f in sarif_findings(semgrep_sarif)]
    for finding in findings:
        ctx.note(finding)
    if findings:
        raise StepFailed(f"{len(findings)} SAST finding(s): {findings[0]}")
    return Outcome.passed("bandit and semgrep: no findings", sarif=[ctx.rel(bandit_sarif), ctx.rel(semgrep_sarif)])


def secrets_scan(ctx: StepContext) -> Outcome:
    """gitleaks over the whole git history, then over the working tree (uncommitted files too)."""
    config = ctx.root / ".gitleaks.toml"
    base = ["gitleaks", "--no-banner", "--redact", "--exit-code", "1"]
    if config.exists():
        base += ["--config", str(config)]
    history = ctx.out("reports", "gitleaks-history.sarif")
    tree = ctx.out("reports", "gitleaks-tree.sarif")
    leaks: list[str] = []
    if (ctx.root / ".git").exists():
        res = ctx.run([*base[:1], "git", *base[1:], "-f", "sarif", "-r", str(history), "."], check=False)
        if res.returncode not in (0, 1):
            raise StepFailed(f"gitleaks git exited with {res.returncode}")
        leaks += [f"history {f}" for f in sarif_findings(history)]
    else:
        ctx.note("not a git repository: history scan not possible, scanning the working tree only")
    res = ctx.run([*base[:1], "dir", *base[1:], "-f", "sarif", "-r", str(tree), "."], check=False)
    if res.returncode not in (0, 1):
        raise StepFailed(f"gitleaks dir exited with {res.returncode}")
    leaks += [f"tree {f}" for f in sarif_findings(tree)]
    for leak in leaks:
        ctx.note(leak)
    if leaks:
        raise StepFailed(f"{len(leaks)} secret(s) found: {leaks[0]}")
    return Outcome.passed("gitleaks: no secrets in history or working tree")


def _locked_requirements(ctx: StepContext) -> Path:
    """The project's lock (every package with its version and hashes), copied into the run folder as evidence."""
    req = ctx.out("reports", f"{ctx.step}-requirements.txt")
    shutil.copyfile(ctx.root / LOCK, req)
    return req


PROBE_TIMEOUT_S = 2
PROBE_PACKAGE = "pip-audit"
"""The dependency the probe asks about: pip-audit itself, which the advisory service certainly knows."""


def advisory_probe(lock_text: str) -> str | None:
    """Why the advisory service cannot answer, or None when it can: one question (pip-audit's own locked version)
    through pip-audit's own service client, in about a second, before auditing ~150 dependencies one by one."""
    from packaging.version import Version
    from pip_audit._service import PyPIService  # the client pip-audit itself uses (pinned in the lock)
    from pip_audit._service.interface import ResolvedDependency, ServiceError, SkippedDependency

    found = re.search(rf"^{re.escape(PROBE_PACKAGE)}==(\S+)", lock_text, re.MULTILINE)
    if found is None:
        return None  # not locked: let pip-audit itself say what it can audit
    try:
        dependency, _ = PyPIService(timeout=PROBE_TIMEOUT_S).query(
            ResolvedDependency(PROBE_PACKAGE, Version(found.group(1)))
        )
    except (ServiceError, OSError) as err:  # pip-audit's ConnectionError is a ServiceError
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no answer'}"
    return dependency.skip_reason if isinstance(dependency, SkippedDependency) else None


def sca(ctx: StepContext) -> Outcome:
    """pip-audit --strict on the locked dependencies; skipped (never passed) when the advisories can't be reached."""
    req = _locked_requirements(ctx)
    why = advisory_probe(req.read_text(encoding="utf-8"))
    if why is not None:
        ctx.note(f"asked the advisory service about {PROBE_PACKAGE} first: {why}")
        return Outcome.skipped(f"the vulnerability advisory service cannot be reached: {why}")
    report = ctx.out("reports", "pip-audit.json")
    audit = ["pip-audit", "--disable-pip", "--progress-spinner=off", "-r", str(req), "-f", "json", "-o", str(report)]
    res = ctx.run([audit[0], "--strict", *audit[1:]], check=False, timeout=600)
    if res.returncode != 0 and not report.exists():
        # --strict stops at the first dependency it could not audit, before writing its report: audit again
        # without it to learn whether that was one package or the whole advisory service.
        ctx.note("pip-audit --strict stopped early; auditing again without --strict to classify the failure")
        ctx.run(audit, check=False, timeout=600)
    audited = _audited_count(report)
    if audited == 0 and (UNREACHABLE.search(res.output) or _skip_reasons(report)):
        first = (_skip_reasons(report) or ["connection failed"])[0]
        return Outcome.skipped(
            f"the vulnerability advisory service cannot be reached: "
            f"it audited none of the locked dependencies ({first})"
        )
    vulns = _vulnerabilities(report)
    if vulns:
        raise StepFailed(f"{len(vulns)} known vulnerabilit(ies): {', '.join(vulns[:5])}")
    if res.returncode != 0:
        skipped = _skip_reasons(report)
        detail = f"{len(skipped)} dependencies could not be audited (--strict)" if skipped else "see the log"
        raise StepFailed(f"pip-audit exited with {res.returncode}: {detail}")
    return Outcome.passed(f"pip-audit: {audited} locked dependencies, no known vulnerabilities")


def _load(report: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


def _vulnerabilities(report: Path) -> list[str]:
    return [
        f"{dep['name']} {dep['version']} ({vuln['id']})"
        for dep in _load(report).get("dependencies", [])
        for vuln in dep.get("vulns", [])
    ]


def _skip_reasons(report: Path) -> list[str]:
    return [str(dep["skip_reason"]) for dep in _load(report).get("dependencies", []) if "skip_reason" in dep]


def _audited_count(report: Path) -> int:
    return sum(1 for dep in _load(report).get("dependencies", []) if "vulns" in dep)


def sbom(ctx: StepContext) -> Outcome:
    """CycloneDX JSON SBOM of the locked dependencies."""
    req = _locked_requirements(ctx)
    out = ctx.out("sbom.cdx.json")
    ctx.run(["cyclonedx-py", "requirements", str(req), "--of", "JSON", "-o", str(out)])
    data = json.loads(out.read_text(encoding="utf-8"))
    components = data.get("components", [])
    if data.get("bomFormat") != "CycloneDX" or not components:
        raise StepFailed(f"{ctx.rel(out)} is not a CycloneDX SBOM with components")
    return Outcome.passed(f"CycloneDX {data.get('specVersion')}: {len(components)} components", sbom=ctx.rel(out))
