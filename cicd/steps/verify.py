"""Tests after deploy: the integration suite per environment and the production smoke test.

Both run ``tests/integration`` (target-agnostic: it reads the deployed API URL and bucket from the environment's
recorded outputs) with JUnit into the run folder. A pass marks the artifact as having passed that environment (what
``promote`` requires); a failure rolls the environment back to its last good artifact, then fails the step, so
nothing downstream is deployed.
"""

from __future__ import annotations

from pathlib import Path

from cicd import artifact as artifacts
from cicd import command, release
from cicd.context import StepContext
from cicd.errors import ConfigError, StepFailed
from cicd.results import Outcome
from cicd.steps.deploy import read_outputs, rollback_to_last_good, write_outputs


def _run_suite(ctx: StepContext, marker: str | None, label: str) -> Outcome:
    if ctx.env is None:
        raise ConfigError(f"{ctx.step} needs an environment")
    env = ctx.env
    deployed = read_outputs(ctx, env)
    digest = str(deployed["digest"])
    art = artifacts.get(ctx.root, digest)
    outputs = write_outputs(ctx, env, deployed)  # the suite reads them from this stable path
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
        artifacts.record_passed(art, ctx.target, env, ctx.run_dir.name)
        release.mark_tested(ctx.root, ctx.target, env, digest=digest, passed=True)
        return Outcome.passed(f"{label} passed in {env} against artifact {art.short} (version {art.version})")
    release.mark_tested(ctx.root, ctx.target, env, digest=digest, passed=False)
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
