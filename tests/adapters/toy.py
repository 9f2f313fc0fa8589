"""A toy pipeline shaped like the full trunk pipeline (checks, build once, three environments, optional approval).

The project's model grows step by step; the adapters are tested on this one too, so the whole main flow (package,
deploy, promote, approval) is exercised before the real model has it.
"""

from __future__ import annotations

from cicd.pipeline import Model, Step

PR_MAIN = frozenset({"pr", "main"})
MAIN = frozenset({"main"})
PY = ("cicd/**/*.py", "tasks.py", "pyproject.toml", "requirements.lock")


def toy_steps(*, approval: bool = True) -> tuple[Step, ...]:
    steps = [
        Step("lint", "x:lint", "ruff", stage="checks", inputs=PY),
        Step("typecheck", "x:typecheck", "mypy", stage="checks", inputs=PY),
        Step("unit-test", "x:unit", "pytest", stage="checks", inputs=(*PY, "tests/**/*")),
        Step("sast", "x:sast", "bandit + semgrep", stage="security", inputs=(*PY, "semgrep/**/*")),
        Step("secrets-scan", "x:secrets", "gitleaks", stage="security", inputs=("**/*",)),
        Step("synth", "x:synth", "cdk synth", stage="iac", inputs=("infra/**/*.py", "cdk.json")),
        Step("iac-scan", "x:iac", "cdk-nag + checkov", stage="iac", needs=("synth",), inputs=("infra/**/*.py",)),
        Step("flutter-check", "x:fcheck", "flutter analyze + test", stage="flutter", inputs=("flutter/**/*",)),
        Step("adapters-check", "x:adapters", "adapters drift", stage="checks", inputs=("ci-adapters/**/*",)),
        Step(
            "flutter-build",
            "x:fbuild",
            "flutter build",
            stage="flutter",
            needs=("flutter-check",),
            triggers=MAIN,
            inputs=("flutter/**/*",),
        ),
        Step(
            "package",
            "x:package",
            "cloud assembly + lambda code, once",
            stage="build",
            needs=("lint", "typecheck", "unit-test", "sast", "secrets-scan", "iac-scan", "adapters-check"),
            triggers=MAIN,
        ),
        Step(
            "deploy",
            "x:deploy",
            "cdk deploy of the packaged assembly",
            stage="deploy",
            needs=("package",),
            triggers=MAIN,
            envs=("dev",),
            cacheable=False,
        ),
        Step(
            "publish",
            "x:publish",
            "upload the APK + web app",
            stage="deploy",
            needs=("deploy|promote", "flutter-build"),
            triggers=MAIN,
            envs=("dev", "preprod", "prod"),
            cacheable=False,
        ),
        Step(
            "integration-test",
            "x:itest",
            "API tests against the environment",
            stage="verify",
            needs=("publish",),
            triggers=MAIN,
            envs=("dev", "preprod"),
            cacheable=False,
        ),
    ]
    if approval:
        steps.append(
            Step(
                "approve",
                "x:approve",
                "show the change set, then wait for a person",
                stage="approval",
                needs=("integration-test:preprod",),
                triggers=MAIN,
                envs=("prod",),
                cacheable=False,
                task="change-set --env {env}",
            )
        )
    steps += [
        Step(
            "promote",
            "x:promote",
            "deploy the same assembly to the next environment",
            stage="deploy",
            needs=("approve|integration-test:<previous>",) if approval else ("integration-test:<previous>",),
            triggers=MAIN,
            envs=("preprod", "prod"),
            cacheable=False,
            task="promote --to {env}",
        ),
        Step(
            "smoke-test",
            "x:smoke",
            "read-only checks in prod",
            stage="verify",
            needs=("publish",),
            triggers=MAIN,
            envs=("prod",),
            cacheable=False,
        ),
    ]
    return tuple(steps)


def toy_model(*, approval: bool = True) -> Model:
    return Model(toy_steps(approval=approval))
