"""Tests after deploy: the integration suite and DAST per environment, and the production smoke test.

``integration-test`` and ``smoke-test`` run ``tests/integration`` (target-agnostic: it reads the deployed API URL and
bucket from the environment's recorded outputs, from the environment's state in the target) with JUnit into the run
folder. A pass records that the artifact passed that environment, in its state and as evidence in the artifact
hand-off folder (what ``promote`` requires, :mod:`cicd.state`).

``dast`` then runs schemathesis against the same API from ``openapi.yaml`` (:mod:`cicd.dast`); the smoke test ends
with its short, read-only profile. A failure of any of them marks the artifact failed in that environment (in its
state, and the evidence is withdrawn: ``promote`` then refuses it), rolls the environment back to its last good
artifact and fails the step, so nothing downstream is deployed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from cicd import command, state
from cicd import dast as dast_runner
from cicd.config import load_config
from cicd.context import StepContext
from cicd.errors import ConfigError, StepFailed
from cicd.results import Outcome
from cicd.steps.deploy import read_outputs, rollback_to_last_good

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _env_name(ctx: StepContext) -> str:
    if ctx.env is None:
        raise ConfigError(f"{ctx.step} needs an environment")
    return ctx.env


def _run_suite(ctx: StepContext, marker: str | None, label: str) -> Outcome:
    env = _env_name(ctx)
    deployed = read_outputs(ctx, env)
    digest, version = str(deployed["digest"]), str(deployed.get("version"))
    store = state.for_step(ctx)
    outputs = ctx.out("outputs", f"{env}.json")  # the suite reads them from this path
    outputs.write_text(json.dumps(deployed, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    junit = ctx.out("reports", f"{ctx.step}-{env}.junit.xml")
    args = [
        "pytest",
        "tests/integration",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        "-o",
        f"junit_suite_name={label}-{env}",
    ]
    if marker:
        args += ["-m", marker]
    result = ctx.run(args, env={"CICD_IT_OUTPUTS": str(outputs), "CICD_IT_ENV": env}, check=False)
    _scrub_file(junit)  # pytest writes it itself: failure messages may quote secrets (a presigned URL's token)
    if result.returncode != 0:
        what = "no tests ran" if result.returncode == 5 else f"pytest exited with {result.returncode}"
        _fail(ctx, env, digest, f"{label} failed in {env} ({what})")
    summary = f"{label} passed in {env} against artifact {digest[:12]} (version {version})"
    if marker == "smoke":  # production's smoke test ends with the short DAST profile
        summary += "; " + _dast(ctx, env, deployed, dast_runner.SMOKE)
    record = store.mark_tested(digest=digest, passed=True, run_id=ctx.run_dir.name)
    for path in state.attach_evidence(ctx.root, ctx.run_dir, record):
        ctx.note(f"evidence that {digest[:12]} passed {env}: {ctx.rel(path)}")
    return Outcome.passed(summary)


def _fail(ctx: StepContext, env: str, digest: str, reason: str) -> NoReturn:
    """Mark ``digest`` failed in ``env`` (state and evidence), roll the environment back, fail the step."""
    record = state.for_step(ctx).mark_tested(digest=digest, passed=False, run_id=ctx.run_dir.name)
    for path in state.withdraw_evidence(ctx.root, ctx.run_dir, record):  # an earlier step's pass no longer holds
        ctx.note(f"withdrew the evidence that {digest[:12]} passed {env}: {ctx.rel(path)}")
    outcome = rollback_to_last_good(ctx, env, digest)
    ctx.note(outcome)
    raise StepFailed(f"{reason}; {outcome}")


def _dast(ctx: StepContext, env: str, deployed: dict[str, Any], profile: dast_runner.Profile) -> str:
    """Run schemathesis against the environment's API; a sentence on success, :func:`_fail` otherwise."""
    digest, url = str(deployed["digest"]), str(deployed["api_url"])
    if ctx.target == "local" and urlsplit(url).hostname not in LOOPBACK:
        raise StepFailed(f"refusing to run DAST against {url}: on the local target the API must be on 127.0.0.1")
    rate = load_config(ctx.root).environment(env).throttle_rate if ctx.target == "aws" else None
    out = ctx.out("reports", f"dast-{env}")
    result = dast_runner.run(
        ctx.root,
        url,
        out,
        profile,
        rate_limit=f"{rate}/s" if rate else None,
        seed=int(digest[:8], 16),  # the same artifact gets the same inputs: a failure reproduces
        log=ctx.log,
    )
    if result.junit is not None and result.junit.is_file():  # named per environment for the CI tools' test views
        text = command.scrubber()(result.junit.read_text(encoding="utf-8"))
        named = text.replace('<testsuite name="schemathesis"', f'<testsuite name="dast-{env}"', 1)
        ctx.out("reports", f"dast-{env}.junit.xml").write_text(named, encoding="utf-8")
    said = f"schemathesis ({profile.name}) made {result.requests} requests to {result.operations} operations"
    if result.passed:
        return f"{said}, no failures"
    if result.returncode < 0 or (result.returncode and not result.failures and not result.requests):
        why = f"schemathesis did not finish (exit {result.returncode}): {_last_line(result.log_tail)}"
    else:
        shown = "; ".join(result.failures[:3]) or f"exit {result.returncode}"
        more = f" and {len(result.failures) - 3} more" if len(result.failures) > 3 else ""
        why = f"{said}: {len(result.failures)} failure(s): {shown}{more}"
    for failure in result.failures:
        ctx.note(f"dast: {failure}")
    _fail(ctx, env, digest, f"DAST failed in {env} ({why})")


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no output")[:300]


def _scrub_file(path: Path) -> None:
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        clean = command.scrubber()(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")


def integration_test(ctx: StepContext) -> Outcome:
    """The integration suite against the environment's deployed API (publishes its own test APK)."""
    return _run_suite(ctx, None, "integration tests")


def smoke_test(ctx: StepContext) -> Outcome:
    """The smoke subset (read-only): /health and /apk/latest answer, the build version is the deployed one, and the
    contract's examples pass schemathesis' checks (the short DAST profile)."""
    return _run_suite(ctx, "smoke", "smoke test")


def dast(ctx: StepContext) -> Outcome:
    """schemathesis against the environment's deployed API from ``openapi.yaml``: every operation, examples, boundary
    and generated inputs, the contract's links; bounded in requests and time; a failure rolls the environment back."""
    env = _env_name(ctx)
    deployed = read_outputs(ctx, env)
    return Outcome.passed(_dast(ctx, env, deployed, dast_runner.FULL))
