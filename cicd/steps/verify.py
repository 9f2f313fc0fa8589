"""Tests after deploy: the integration suite per environment and the production smoke test.

Both run ``tests/integration`` (target-agnostic: it reads the deployed API URL and bucket from the environment's
recorded outputs, from the environment's state in the target) with JUnit into the run folder. A pass records that
the artifact passed that environment, in its state and as evidence in the artifact hand-off folder (what ``promote``
requires, :mod:`cicd.state`); a failure rolls the environment back to its last good artifact, then fails the step,
so nothing downstream is deployed.
"""

from __future__ import annotations

import json
from pathlib import Path

from cicd import command, state
from cicd.context import StepContext
from cicd.errors import ConfigError, StepFailed
from cicd.results import Outcome
from cicd.steps.deploy import read_outputs, rollback_to_last_good


def _run_suite(ctx: StepContext, marker: str | None, label: str) -> Outcome:
    if ctx.env is None:
        raise ConfigError(f"{ctx.step} needs an environment")
    env = ctx.env
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
    if result.returncode == 0:
        record = store.mark_tested(digest=digest, passed=True, run_id=ctx.run_dir.name)
        for path in state.attach_evidence(ctx.root, ctx.run_dir, record):
            ctx.note(f"evidence that {digest[:12]} passed {env}: {ctx.rel(path)}")
        return Outcome.passed(f"{label} passed in {env} against artifact {digest[:12]} (version {version})")
    store.mark_tested(digest=digest, passed=False, run_id=ctx.run_dir.name)
    what = "no tests ran" if result.returncode == 5 else f"pytest exited with {result.returncode}"
    outcome = rollback_to_last_good(ctx, env, digest)
    ctx.note(outcome)
    raise StepFailed(f"{label} failed in {env} ({what}); {outcome}")


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
    """The smoke subset (read-only): /health and /apk/latest answer, and the build version is the deployed one."""
    return _run_suite(ctx, "smoke", "smoke test")
