"""The CDK app. It only instantiates: one :class:`~infra.stack.ServiceStage` per environment from the table in
:mod:`cicd.config`, for the target named by ``CICD_TARGET`` (default ``local``).

Run it directly or through the CDK CLI (``cdk.json``: ``python -m infra.app``)::

    python -m infra.app --outdir cdk.out          # what the ``synth`` step runs
    CICD_TARGET=aws python -m infra.app           # needs account/region per environment

Environment variables: ``CICD_TARGET`` (local|aws), ``CICD_ENVIRONMENTS`` (comma-separated subset, default all),
``CICD_UNPINNED=1`` (aws templates without account/region, for scans only), ``CICD_BUILD_VERSION`` /
``CICD_BUILD_COMMIT`` (else derived from git, see :mod:`cicd.versioning`),
``CICD_NAG`` (``enforce``: cdk-nag findings fail the synth, the default; ``report``: write the assembly with its
``validation-report.json`` and leave the verdict to the ``iac-scan`` step; ``off``), ``CDK_OUTDIR`` (set by the
CDK CLI). The assembly is synthesized into a temporary folder beside the output folder and moved into place only
when complete, so bad input or a failed synth never leaves a half-written assembly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cicd import config as cfg
from cicd.errors import CicdError, ConfigError, StepFailed, UsageError
from cicd.versioning import VERSION_RE, BuildVersion, build_version

if TYPE_CHECKING:
    import aws_cdk as cdk

    from infra.stack import ServiceStack

ROOT: Final = Path(__file__).absolute().parents[1]
NAG_MODES: Final = ("enforce", "report", "off")
VALIDATION_REPORT: Final = "validation-report.json"
"""Where the CDK writes the policy-validation report (cdk-nag's findings and acknowledgements) in the assembly."""


@dataclass(frozen=True)
class Settings:
    """Everything the app is built from, read and validated before any CDK code runs."""

    root: Path
    config: cfg.PipelineConfig
    target: cfg.Target
    environments: tuple[cfg.Environment, ...]
    build: BuildVersion
    nag: str
    code_dir: Path

    @classmethod
    def from_environ(cls, root: Path, environ: Mapping[str, str]) -> Settings:
        config = cfg.load_config(root)
        target = cfg.target(environ.get("CICD_TARGET") or cfg.DEFAULT_TARGET)
        names = [n.strip() for n in environ.get("CICD_ENVIRONMENTS", "").split(",") if n.strip()]
        unknown = [n for n in names if n not in config.names]
        if unknown:
            raise UsageError(
                f"unknown environment '{unknown[0]}' in CICD_ENVIRONMENTS: choose from {', '.join(config.names)}"
            )
        environments = tuple(config.environment(n) for n in names) if names else config.environments
        if target.pinned_env and environ.get("CICD_UNPINNED") == "1":
            target = dataclasses.replace(target, pinned_env=False)  # scan-only: environment-agnostic aws templates
        if target.pinned_env:
            for env in environments:
                cfg.require_aws(env)
        nag = environ.get("CICD_NAG") or "enforce"
        if nag not in NAG_MODES:
            raise UsageError(f"CICD_NAG must be one of {', '.join(NAG_MODES)}, got '{nag}'")
        build = build_version(root)
        if not VERSION_RE.match(build.version):
            raise UsageError(
                f"build version '{build.version}' is not MAJOR.MINOR.PATCH",
                hint="set CICD_BUILD_VERSION=1.2.3 or fix [project] version",
            )
        code_dir = root / "functions"
        if not (code_dir / "latest_apk" / "handler.py").is_file():
            raise ConfigError(
                f"Lambda code not found: {code_dir / 'latest_apk' / 'handler.py'}",
                hint="the code asset is the functions/ folder holding the latest_apk package",
            )
        return cls(root, config, target, environments, build, nag, code_dir)


# What the CDK CLI passes for cdk.json's ``pathMetadata`` / ``assetMetadata`` / ``versionReporting`` settings.
CLI_CONTEXT: Final = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": False,
}


def cdk_context(root: Path) -> dict[str, object]:
    """The feature flags of ``cdk.json`` plus what the CLI would add, so a direct run synthesizes exactly what
    ``cdk synth`` would (resource metadata carries each construct path, which the scan reports point to)."""
    path = root / "cdk.json"
    context: object = {}
    if path.is_file():
        try:
            context = json.loads(path.read_text(encoding="utf-8")).get("context", {})
        except (ValueError, AttributeError) as err:
            raise ConfigError(f"{path} is not a valid cdk.json: {err}", hint="fix or restore it from git") from None
    return {**CLI_CONTEXT, **(context if isinstance(context, dict) else {})}


def build_app(settings: Settings, outdir: Path) -> tuple[cdk.App, dict[str, ServiceStack]]:
    """The :class:`aws_cdk.App` writing to ``outdir`` and its stacks by environment name (not yet synthesized)."""
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    from infra.stack import ServiceStage

    app = cdk.App(outdir=str(outdir), context=cdk_context(settings.root))
    stacks: dict[str, ServiceStack] = {}
    for env in settings.environments:
        stage = ServiceStage(app, env=env, target=settings.target, code_dir=settings.code_dir, build=settings.build)
        stacks[env.name] = stage.stack
    if app.node.try_get_context("ci") and settings.target.name == "aws":
        # The CI side (OIDC providers, deploy roles, CodePipeline) deploys only when described: `cdk -c ci=...`.
        from infra.ci import add_ci_stacks

        add_ci_stacks(app, settings.config)
    if settings.nag != "off":
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stacks


def synthesize(settings: Settings, outdir: Path, *, cli_managed: bool = False) -> Path:
    """Synthesize into a temporary folder beside ``outdir`` and move the finished assembly into place."""
    outdir = outdir.resolve()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        try:
            app, _ = build_app(settings, tmp)
            app.synth()
        except RuntimeError as err:  # jsii raises construct and validation errors as RuntimeError
            _judge_failure(err, tmp / VALIDATION_REPORT, settings.nag)
        _publish(tmp, outdir, cli_managed=cli_managed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return outdir


def _judge_failure(err: RuntimeError, report: Path, nag: str) -> None:
    """Raise :class:`StepFailed` unless ``err`` is only cdk-nag's verdict and ``nag`` is ``report``."""
    text = str(err).strip()
    if "ValidationFailed" not in text or not report.is_file():
        first = text.splitlines()[0] if text else type(err).__name__
        if os.environ.get("CICD_DEBUG"):
            print(text, file=sys.stderr)
        raise StepFailed(f"CDK synth failed: {first}", hint="set CICD_DEBUG=1 for the full error") from None
    if nag == "enforce" or _has_blocking_errors(report):
        raise StepFailed(
            f"policy validation found {count_violations(report)} unacknowledged finding(s) (listed above)",
            hint="fix them or acknowledge each with a reason (infra/waivers.py)",
        ) from None


def count_violations(report: Path, plugin: str | None = None) -> int:
    """Unacknowledged findings in a validation report (of one plugin, or all)."""
    data = json.loads(report.read_text(encoding="utf-8"))
    return sum(
        len(v.get("violatingConstructs", [])) or 1
        for p in data.get("pluginReports", [])
        if plugin is None or p.get("pluginName") == plugin
        for v in p.get("violations", [])
    )


def _has_blocking_errors(report: Path) -> bool:
    """Errors of CDK's own template validation: the templates would not deploy, so never publish them."""
    return count_violations(report, "CloudFormation Validate") > 0


def _publish(tmp: Path, outdir: Path, *, cli_managed: bool) -> None:
    if cli_managed and outdir.is_dir():
        # The CDK CLI owns this folder (and keeps its lock files in it): move entry by entry, manifest last.
        entries = sorted(tmp.iterdir(), key=lambda p: p.name == "manifest.json")
        for entry in entries:
            dest = outdir / entry.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            entry.replace(dest)
        return
    old = None
    if outdir.exists():
        old = outdir.with_name(f".{outdir.name}.old-{os.getpid()}")
        outdir.replace(old)
    tmp.replace(outdir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m infra.app", description="Synthesize the CDK app.")
    parser.add_argument("--outdir", type=Path, help="assembly folder (default: $CDK_OUTDIR, else cdk.out)")
    args = parser.parse_args(argv)
    cli_outdir = environ.get("CDK_OUTDIR")
    outdir: Path = args.outdir or (Path(cli_outdir) if cli_outdir else ROOT / "cdk.out")
    try:
        settings = Settings.from_environ(ROOT, environ)
        synthesize(settings, outdir, cli_managed=args.outdir is None and bool(cli_outdir))
    except CicdError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.return_code
    names = ", ".join(env.stack_name for env in settings.environments)
    print(f"synthesized {names} ({settings.target.name} target, build {settings.build.version}) into {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
