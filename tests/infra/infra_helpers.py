"""What the infra tests share: the stand-in code folder and one synthesized app per target."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cicd import config as cfg
from cicd.versioning import BuildVersion
from infra.app import ROOT, Settings, build_app

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

    from infra.stack import ServiceStack

ACCOUNT = "111122223333"
BUILD = BuildVersion("1.4.27", "0123456789abcdef0123456789abcdef01234567")


@dataclass
class Built:
    """One target's synthesized app."""

    target: cfg.Target
    assembly: Path
    stacks: dict[str, ServiceStack]
    templates: dict[str, Template]
    environments: dict[str, cfg.Environment]
    code_dir: Path


def _code_dir(base: Path) -> Path:
    """A stand-in ``functions/`` folder, with what the asset must leave out planted beside the package."""
    code = base / "functions"
    pkg = code / "latest_apk"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "tests").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "handler.py").write_text("def handler(event, context):\n    return {'statusCode': 200}\n")
    (pkg / "logic.py").write_text("VALUE = 1\n")
    (pkg / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")
    (pkg / "stale.pyc").write_bytes(b"\0")
    (pkg / "tests" / "test_handler.py").write_text("def test_x():\n    pass\n")
    (pkg / "test_logic.py").write_text("def test_y():\n    pass\n")
    (code / "conftest.py").write_text("")
    return code


def build(base: Path, target: cfg.Target) -> Built:
    from aws_cdk.assertions import Template

    config = cfg.PipelineConfig()
    if target.pinned_env:
        envs = tuple(dataclasses.replace(e, account=ACCOUNT) for e in config.environments)
        config = dataclasses.replace(config, environments=envs)
    code_dir = _code_dir(base)
    settings = Settings(
        root=ROOT,
        config=config,
        target=target,
        environments=config.environments,
        build=BUILD,
        nag="report",
        code_dir=code_dir,
    )
    assembly = base / "cdk.out"
    app, stacks = build_app(settings, assembly)
    try:
        app.synth()
    except RuntimeError as err:  # cdk-nag violations: the assembly and its report are written; tests judge them
        if "ValidationFailed" not in str(err):
            raise
    templates = {name: Template.from_stack(stack) for name, stack in stacks.items()}
    return Built(target, assembly, stacks, templates, {e.name: e for e in config.environments}, code_dir)
