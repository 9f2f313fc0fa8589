"""Dynamic testing of a deployed API from its contract: schemathesis, bounded in requests and time.

:func:`run` drives the schemathesis CLI (``st run``) against one base URL with the contract ``openapi.yaml``:

- every operation, in the phases of the profile: the contract's examples, boundary inputs (coverage), generated
  inputs valid and invalid (fuzzing), and call sequences along the contract's links (stateful:
  ``/apk/latest`` -> ``/apk/{version}``);
- every built-in check but the ones :data:`EXCLUDED_CHECKS` names with the reason, plus the service's own in
  :mod:`cicd.dast_checks` (no internal details, security headers, presigned URL lifetime);
- at most ``max_examples`` cases per operation and phase (schemathesis' own ``--max-time`` is not a bound: it keeps
  fuzzing until the time is spent), ``request_timeout`` per request, ``max_time`` seconds for the whole run (the
  process is stopped after it), and a request rate when the target throttles (API Gateway stage throttling on AWS);
- JUnit and an NDJSON event log into ``out``; :class:`DastResult` counts the requests made (from the event log) and
  lists the failures (from the JUnit report).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET  # nosec B405 # parses only the report schemathesis wrote
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cicd import command
from cicd.contract import CONTRACT
from cicd.errors import MissingToolError

# The built-in checks that cannot hold for this API, each with the reason (the README points here).
EXCLUDED_CHECKS: dict[str, str] = {
    "unsupported_method": (
        "API Gateway, not the service, answers a method the contract does not list: 403 Missing Authentication "
        "Token, where the check expects 405"
    ),
    "ignored_auth": "the API is public and read-only: the contract declares no security scheme",
    "object_level_authorization": "the API is public and read-only: there is no object owned by a caller",
}
OPERATION = re.compile(r"[A-Z]+ /")
CUSTOM_CHECKS = ("no_internal_details", "security_headers", "presigned_url_bounded")


@dataclass(frozen=True)
class Profile:
    name: str
    phases: tuple[str, ...]
    max_examples: int
    max_time: int
    request_timeout: float = 15.0
    max_failures: int = 25


FULL = Profile("full", ("examples", "coverage", "fuzzing", "stateful"), max_examples=25, max_time=300)
"""After the integration tests of dev and preprod."""
SMOKE = Profile("smoke", ("examples",), max_examples=3, max_time=60)
"""Part of production's smoke test: the contract's examples only (read-only GETs, a few requests)."""


@dataclass
class DastResult:
    returncode: int
    requests: int
    operations: int
    failures: list[str] = field(default_factory=list)
    junit: Path | None = None
    events: Path | None = None
    log_tail: str = ""

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and not self.failures


def executable() -> str:
    """The ``st`` command of this environment (schemathesis is a dev dependency of the project)."""
    here = Path(sys.executable).parent / "st"
    found = str(here) if here.is_file() else shutil.which("st")
    if found is None:
        raise MissingToolError("schemathesis (st) is not installed", hint="install the project: uv sync")
    return found


def arguments(contract: Path, base_url: str, out: Path, profile: Profile, *, rate_limit: str | None) -> list[str]:
    args = [
        executable(),
        "--no-color",
        "run",
        str(contract),
        "--url",
        base_url,
        "--phases",
        ",".join(profile.phases),
        "--checks",
        "all",
        "--exclude-checks",
        ",".join(EXCLUDED_CHECKS),
        "--max-examples",
        str(profile.max_examples),
        "--request-timeout",
        str(profile.request_timeout),
        "--max-failures",
        str(profile.max_failures),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--report",
        "junit,ndjson",
        "--report-junit-path",
        str(out / "dast.junit.xml"),
        "--report-ndjson-path",
        str(out / "dast-events.ndjson"),
    ]
    return args + (["--rate-limit", rate_limit] if rate_limit else [])


def run(
    root: Path,
    base_url: str,
    out: Path,
    profile: Profile = FULL,
    *,
    rate_limit: str | None = None,
    seed: int | None = None,
    log: IO[str] | None = None,
) -> DastResult:
    """Run schemathesis against ``base_url``; reports go into ``out`` (created), its output into ``log``."""
    out.mkdir(parents=True, exist_ok=True)
    contract = root / CONTRACT
    args = arguments(contract, base_url, out, profile, rate_limit=rate_limit)
    if seed is not None:
        args += ["--seed", str(seed)]
    package_parent = str(Path(__file__).resolve().parent.parent)
    environ = {
        "SCHEMATHESIS_HOOKS": "cicd.dast_checks",
        "CICD_CONTRACT": str(contract),
        "PYTHONPATH": os.pathsep.join(filter(None, (package_parent, os.environ.get("PYTHONPATH")))),
        "NO_COLOR": "1",
    }
    # cwd: the reports folder, where schemathesis keeps its crash cache (.schemathesis/)
    proc = command.run(args, cwd=out, env=environ, check=False, timeout=profile.max_time, log=log)
    result = summarize(out / "dast-events.ndjson", out / "dast.junit.xml", proc.returncode)
    result.log_tail = proc.output[-4000:]
    return result


def summarize(events: Path, junit: Path, returncode: int) -> DastResult:
    """Requests and operations from schemathesis' NDJSON event log, failures from its JUnit report."""
    requests = 0
    operations: set[str] = set()
    if events.is_file():
        with events.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.startswith('{"ScenarioFinished"'):
                    continue
                recorder = json.loads(line)["ScenarioFinished"].get("recorder") or {}
                requests += len(recorder.get("interactions") or {})
                label = str(recorder.get("label") or "")
                if OPERATION.match(label):  # not "Stateful tests", the label of the stateful phase's scenarios
                    operations.add(label)
    return DastResult(returncode, requests, len(operations), junit_failures(junit), junit=junit, events=events)


def junit_failures(junit: Path) -> list[str]:
    """``<operation>: <code> <title>`` for every distinct failure schemathesis reported."""
    if not junit.is_file():
        return []
    root = ET.parse(junit).getroot()  # noqa: S314  # nosec B314 # the report schemathesis wrote in this run
    found: dict[str, None] = {}
    for case in root.iter("testcase"):
        for failure in (*case.findall("failure"), *case.findall("error")):
            text = failure.text or failure.get("message") or ""
            titles = [line[2:].strip() for line in text.splitlines() if line.startswith("- ST")]
            for title in titles or [failure.get("message") or "failed"]:
                found[f"{case.get('name')}: {title}"] = None
    return list(found)
