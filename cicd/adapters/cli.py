"""Task glue for ``inv adapters.generate`` and ``inv adapters.check`` (and the ``adapters-check`` step).

``generate`` writes every adapter under ``ci-adapters/<tool>/``, the comparison guide and the project files
rendered from the same model (``.pre-commit-config.yaml``, ``.github/dependabot.yml``, ``renovate.json``).
``check`` fails when a committed file differs from what the model renders, then runs each tool's validators, the
parity check and the "better than the anchors" properties over the committed files.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cicd import pipeline
from cicd.adapters.facts import AdapterFacts, line_count, parity, properties
from cicd.adapters.plan import Plan, build_plan
from cicd.adapters.registry import ADAPTERS, Adapter
from cicd.adapters.validate import Validation
from cicd.config import PipelineConfig, load_config
from cicd.errors import StepFailed
from cicd.pipeline import Model

if TYPE_CHECKING:
    from cicd.context import StepContext
    from cicd.results import Outcome

ROOT = Path(__file__).resolve().parents[2]
Extra = Callable[[Plan], dict[str, str]]


def plan_for(root: Path, model: Model | None = None, config: PipelineConfig | None = None) -> Plan:
    return build_plan(model or pipeline.MODEL, config or load_config(root))


def render_adapter(adapter: Adapter, plan: Plan) -> dict[str, str]:
    """``{path inside ci-adapters/<tool>/: text}``."""
    return {r.path: r.text for r in adapter.render(plan)}


def render_all(root: Path = ROOT, model: Model | None = None, config: PipelineConfig | None = None) -> dict[str, str]:
    """Every generated file, keyed by its path relative to the repository root."""
    plan = plan_for(root, model, config)
    files: dict[str, str] = {}
    for adapter in ADAPTERS:
        for path, text in render_adapter(adapter, plan).items():
            files[f"{adapter.folder}/{path}"] = text
    for extra in _extras():
        files.update(extra(plan))  # nosec B610 # a dict update, not SQL
    return files


def _extras() -> list[Extra]:
    from cicd.adapters import extras, guide

    return [extras.render, guide.render]


def generate(root: Path = ROOT, model: Model | None = None, config: PipelineConfig | None = None) -> list[Path]:
    """Write every generated file; return the paths that changed."""
    changed: list[Path] = []
    for rel, text in render_all(root, model, config).items():
        path = root / rel
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        changed.append(path)
    return changed


def drift(root: Path = ROOT, model: Model | None = None, config: PipelineConfig | None = None) -> list[str]:
    """Generated files whose committed copy differs from what the model renders (or is missing)."""
    problems: list[str] = []
    for rel, text in render_all(root, model, config).items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{rel} differs from what the model renders")
    return problems


def committed_facts(root: Path, adapter: Adapter) -> AdapterFacts:
    folder = root / adapter.folder
    files = {
        str(p.relative_to(folder)): p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*")) if p.is_file()
    }
    return adapter.facts(files)


@dataclass
class CheckReport:
    drift: list[str] = field(default_factory=list)
    validations: list[Validation] = field(default_factory=list)
    parity: list[str] = field(default_factory=list)
    properties: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        bad = [v.line() for v in self.validations if v.status == "failed"]
        return [*self.drift, *bad, *self.parity, *self.properties]

    @property
    def skipped(self) -> list[Validation]:
        return [v for v in self.validations if v.status == "skipped"]


def check(
    root: Path = ROOT,
    *,
    model: Model | None = None,
    config: PipelineConfig | None = None,
    validators: bool = True,
    log: IO[str] | None = None,
) -> CheckReport:
    """Drift, validators, parity and properties over the committed adapters (see the module docstring)."""
    from cicd.adapters import validate

    plan = plan_for(root, model, config)
    report = CheckReport(drift=drift(root, model, config))
    checks: list[tuple[str, str, Path]] = []
    for adapter in ADAPTERS:
        if not (root / adapter.folder / adapter.main_file).is_file():
            continue
        facts = committed_facts(root, adapter)
        report.lines[adapter.name] = line_count(facts)
        report.parity.extend(parity(plan, facts))
        report.properties.extend(properties(plan, facts, adapter.budget))
        if validators:
            checks.extend((adapter.name, name, path) for name, path in adapter.check_pairs(root / adapter.folder))
    report.validations = validate.run_all(checks, log=log)  # each tool once for every adapter's files
    return report


def describe(report: CheckReport) -> str:
    out = io.StringIO()
    for name, lines in report.lines.items():
        budget = next(a.budget for a in ADAPTERS if a.name == name)
        limit = f" (anchor: {budget.lines}, {budget.anchor})" if budget.lines else ""
        out.write(f"lines   {name:12} {lines}{limit}\n")
    for v in report.validations:
        out.write(v.line() + "\n")
    for problem in [*report.drift, *report.parity, *report.properties]:
        out.write(f"problem {problem}\n")
    return out.getvalue()


def bump(
    name: str,
    version: str,
    sha: str = "",
    root: Path = ROOT,
    *,
    digest: str | None = None,
    hashes: tuple[str, ...] | None = None,
    source: Path | None = None,
) -> list[Path]:
    """``inv adapters.bump NAME VERSION [SHA] [--digest D] [--hashes H,...]``: move one pin in
    ``cicd/adapters/pins.py``, then regenerate."""
    from cicd.adapters import pins

    pins.bump(name, version, sha, digest=digest, hashes=hashes, source=source)
    return generate(root)


def adapters_check(ctx: StepContext) -> Outcome | None:
    """The ``adapters-check`` step: drift, validators, parity and properties; fails on any problem."""
    from cicd.results import Outcome

    report = check(ctx.root, log=ctx.log)
    ctx.log.write(describe(report))
    ctx.log.flush()
    if report.failed:
        first = report.failed[0]
        more = f" (and {len(report.failed) - 1} more, see the log)" if len(report.failed) > 1 else ""
        hint = "run `inv adapters.generate` and commit" if report.drift else "see the step log"
        raise StepFailed(f"adapters: {first}{more}", hint=hint)
    note = f"{len(report.validations) - len(report.skipped)} validations passed"
    if report.skipped:
        note += "; skipped: " + "; ".join(f"{v.validator} ({v.detail})" for v in report.skipped)
    return Outcome.passed(note)
