"""Infrastructure-as-code steps: ``synth`` (the CDK cloud assembly) and ``iac-scan`` (cdk-nag + checkov on it).

``synth`` writes one assembly with all three environments into the run folder (``<run>/cdk.out``); later steps
(``iac-scan``, ``deploy``, ``promote``) reuse it (``cdk deploy --app <run>/cdk.out dev/LatestApk``), so what is
scanned is what is deployed. cdk-nag's AwsSolutions pack runs inside the synth (CDK policy validation); the synth
records its findings in the assembly's ``validation-report.json`` and leaves the verdict to ``iac-scan``.

``iac-scan`` fails on any finding that is not waived with a written reason: cdk-nag violations and
acknowledgements come from the validation report, checkov's from its SARIF (a skip is a ``Metadata.checkov.skip``
entry with a comment, written by ``infra/waivers.py``). Reports: ``reports/cdk-nag.sarif``,
``reports/cdk-nag.junit.xml``, ``reports/checkov.sarif``, ``reports/checkov.junit.xml``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from xml.etree import ElementTree as ET  # nosec B405 # builds report XML, never parses untrusted input

from cicd import tools
from cicd.errors import StepFailed
from cicd.results import Outcome

if TYPE_CHECKING:
    from cicd.cache import StepCache
    from cicd.context import StepContext

ASSEMBLY: Final = "cdk.out"
REPORTS: Final = "reports"
VALIDATION_REPORT: Final = "validation-report.json"
SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
ASSET_HASH: Final = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
"""A CDK asset hash (sha256 of the asset's files): in asset folder names, templates, manifests."""
VERSION_ID: Final = re.compile(rb"(CurrentVersion[0-9A-F]{8})[0-9a-f]{32}")
"""The logical ID CDK gives a function's current version: its path, then a digest of the function, code included."""
TEMPLATE_ENDINGS: Final = (".json", ".yaml", ".yml", ".template")
"""The files checkov's CloudFormation framework parses, wherever they are under the folder it scans."""


# --- the assembly ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackArtifact:
    """One stack of the assembly: its CloudFormation name, the ``cdk deploy`` selector, and its template."""

    stack_name: str
    selector: str
    template: str
    """Template path relative to the assembly folder."""


def assembly_stacks(assembly: Path) -> list[StackArtifact]:
    """The stacks of a cloud assembly, nested (Stage) assemblies included."""
    return _stacks(assembly, assembly)


def scanned_digest(assembly: Path) -> str | None:
    """A digest of what the scanners read in ``assembly``, None when there is none: every file outside the asset
    folders (templates, manifests, the validation report with cdk-nag's findings) but the asset manifests
    (``*.assets.json``: which file to upload where, named by its hash), and every file inside an asset folder that
    checkov would parse (:data:`TEMPLATE_ENDINGS`), with what CDK derives from the code masked: asset hashes
    (:data:`ASSET_HASH`, in file names too) and the digest in a function version's logical ID (:data:`VERSION_ID`).
    The rest of an asset folder is the function's code, which neither scanner reads. So a change to the code alone
    leaves the digest, and the ``iac-scan`` step's cache key (its ``assembly`` key extra), as it was; a report served
    from the cache then names a function version by the ID of the run that scanned it."""
    if not (assembly / "manifest.json").is_file():
        return None
    h = hashlib.sha256()
    entries = []
    for path in assembly.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(assembly).as_posix()
        in_asset = any(part.startswith("asset.") for part in rel.split("/")[:-1])
        if (in_asset and not rel.endswith(TEMPLATE_ENDINGS)) or (not in_asset and rel.endswith(".assets.json")):
            continue
        masked = VERSION_ID.sub(rb"\1#", ASSET_HASH.sub(b"#", path.read_bytes()))
        entries.append((ASSET_HASH.sub(b"#", rel.encode()), hashlib.sha256(masked).hexdigest()))
    for rel_bytes, digest in sorted(entries):
        h.update(rel_bytes + b"\0" + digest.encode() + b"\0")
    return h.hexdigest()


def _stacks(root: Path, folder: Path) -> list[StackArtifact]:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    found: list[StackArtifact] = []
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        props = artifact.get("properties", {})
        if artifact.get("type") == "cdk:cloud-assembly":
            found.extend(_stacks(root, folder / props["directoryName"]))
        elif artifact.get("type") == "aws:cloudformation:stack":
            template = (folder / props["templateFile"]).relative_to(root)
            found.append(
                StackArtifact(
                    stack_name=props.get("stackName", artifact_id),
                    selector=artifact.get("displayName", artifact_id),
                    template=template.as_posix(),
                )
            )
    return found


def _assembly(ctx: StepContext) -> Path:
    return ctx.run_dir / ASSEMBLY


SCAN_TARGET = "aws"
"""The synth check synthesizes (and iac-scan scans) the templates production receives, whatever the run's target."""
UNPINNED_ENV = "CICD_UNPINNED"


def synthesize(ctx: StepContext, target: str, assembly: Path) -> Path:
    """One CDK app run: dev, preprod and prod for ``target`` into ``assembly`` (checked for every stack)."""
    from infra.app import Settings

    environ = {**ctx.environ, "CICD_TARGET": target}
    # Validate configuration here, so a missing account or a bad [tool.cicd] is exit 2 with its own message.
    settings = Settings.from_environ(ctx.root, environ)
    env = {"CICD_TARGET": target, "CICD_NAG": "report"}
    if environ.get(UNPINNED_ENV):
        env[UNPINNED_ENV] = environ[UNPINNED_ENV]
    ctx.run([sys.executable, "-m", "infra.app", "--outdir", str(assembly)], env=env)
    expected = {e.stack_name for e in settings.environments}
    missing = sorted(expected - {s.stack_name for s in assembly_stacks(assembly)})
    if missing:
        raise StepFailed(f"the assembly lacks the stack(s) {', '.join(missing)}", hint=f"see {ctx.rel(assembly)}")
    return assembly


def synth(ctx: StepContext) -> Outcome:
    """Synthesize dev, preprod and prod as production gets them (aws target) into ``<run>/cdk.out``."""
    from cicd import config as cfg

    config = cfg.load_config(ctx.root)
    unpinned = [e.name for e in config.environments if not (e.account and e.region)]
    if unpinned:  # scan the aws templates even before accounts are configured: environment-agnostic stacks
        ctx = dataclasses.replace(ctx, environ={**ctx.environ, UNPINNED_ENV: "1"})
        ctx.note(f"no account/region for {', '.join(unpinned)}: aws templates synthesized environment-agnostic")
    started = time.monotonic()
    assembly = synthesize(ctx, SCAN_TARGET, ctx.out(ASSEMBLY))
    seconds = time.monotonic() - started
    stacks = assembly_stacks(assembly)
    nag = [f for f in nag_findings(assembly) if f.reason is None]
    for stack in stacks:
        ctx.note(f"stack {stack.stack_name} ({stack.selector}): {stack.template}")
    if nag:
        ctx.note(f"cdk-nag: {len(nag)} unwaived finding(s); the iac-scan step fails on them")
    return Outcome.passed(
        f"{len(stacks)} stacks ({SCAN_TARGET} target{', environment-agnostic' if unpinned else ''}) in {seconds:.1f} s",
        assembly=ctx.rel(assembly),
        stacks=[s.stack_name for s in stacks],
        selectors={s.stack_name: s.selector for s in stacks},
        synth_s=round(seconds, 3),
        nag_findings=len(nag),
    )


# --- findings -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One scanner result. ``reason`` is the written waiver; ``None`` means the finding is open."""

    tool: str
    rule: str
    message: str
    severity: str
    resource: str
    """Construct path (cdk-nag) or logical id / resource name (checkov)."""
    template: str | None = None
    line: int | None = None
    reason: str | None = None

    @property
    def waived(self) -> bool:
        return bool(self.reason and self.reason.strip())


def _resource_index(assembly: Path) -> dict[str, tuple[str, str]]:
    """Construct path -> (template path relative to the assembly, logical id), from ``aws:cdk:path`` metadata."""
    index: dict[str, tuple[str, str]] = {}
    for stack in assembly_stacks(assembly):
        template = json.loads((assembly / stack.template).read_text(encoding="utf-8"))
        for logical_id, resource in template.get("Resources", {}).items():
            path = resource.get("Metadata", {}).get("aws:cdk:path")
            if path:
                index[path] = (stack.template, logical_id)
    return index


def _line_of(assembly: Path, template: str, logical_id: str) -> int | None:
    needle = f'"{logical_id}": {{'
    for number, line in enumerate((assembly / template).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() == needle:
            return number
    return None


def nag_findings(assembly: Path) -> list[Finding]:
    """Open and waived findings of every validation plugin (cdk-nag's AwsSolutions, CDK's own template checks)."""
    report = assembly / VALIDATION_REPORT
    if not report.is_file():
        return []
    data = json.loads(report.read_text(encoding="utf-8"))
    index = _resource_index(assembly)
    findings: list[Finding] = []
    for plugin in data.get("pluginReports", []):
        tool = plugin.get("pluginName", "validation")
        entries: list[tuple[dict[str, Any], str | None]] = [(v, None) for v in plugin.get("violations", [])]
        entries += [(v, v.get("reason") or "") for v in plugin.get("suppressedViolations", [])]
        for violation, reason in entries:
            for construct in violation.get("violatingConstructs", []) or [{}]:
                path = construct.get("constructPath", "")
                template, logical_id = index.get(path, (None, None))
                findings.append(
                    Finding(
                        tool=tool,
                        rule=violation.get("ruleName", "?"),
                        message=violation.get("description", ""),
                        severity=violation.get("severity", "error"),
                        resource=path,
                        template=template,
                        line=_line_of(assembly, template, logical_id) if template and logical_id else None,
                        reason=reason,
                    )
                )
    return findings


def checkov_findings(sarif: Path) -> list[Finding]:
    """Failed and skipped checks from checkov's SARIF (a skip carries its comment as the justification)."""
    data = json.loads(sarif.read_text(encoding="utf-8"))
    findings: list[Finding] = []
    for run in data.get("runs", []):
        for result in run.get("results", []):
            location = (result.get("locations") or [{}])[0].get("physicalLocation", {})
            region = location.get("region", {})
            suppressions = result.get("suppressions") or []
            reason = None
            if suppressions:
                reason = " ".join(s.get("justification", "") for s in suppressions).strip()
            findings.append(
                Finding(
                    tool="checkov",
                    rule=result.get("ruleId", "?"),
                    message=result.get("message", {}).get("text", ""),
                    severity=result.get("level", "error"),
                    resource=_first_key(region.get("snippet", {}).get("text", "")),
                    template=location.get("artifactLocation", {}).get("uri"),
                    line=region.get("startLine"),
                    reason=reason,
                )
            )
    return findings


def _first_key(snippet: str) -> str:
    head = snippet.strip().split(":", 1)[0].strip().strip('"')
    return head or "?"


# --- reports --------------------------------------------------------------------------------------------------


def write_sarif(findings: list[Finding], path: Path, *, tool: str, version: str, base: str) -> None:
    """SARIF 2.1.0 with one run; waived findings carry an in-source suppression with their reason."""
    rules: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    for finding in findings:
        rules.setdefault(
            finding.rule, {"id": finding.rule, "shortDescription": {"text": finding.message or finding.rule}}
        )
        result: dict[str, Any] = {
            "ruleId": finding.rule,
            "level": "error" if finding.severity == "error" else "warning",
            "message": {"text": f"{finding.message} ({finding.resource})"},
            "locations": [
                {
                    "logicalLocations": [{"fullyQualifiedName": finding.resource, "kind": "resource"}],
                    **(
                        {
                            "physicalLocation": {
                                "artifactLocation": {"uri": f"{base}/{finding.template}"},
                                "region": {"startLine": finding.line or 1},
                            }
                        }
                        if finding.template
                        else {}
                    ),
                }
            ],
        }
        if finding.reason is not None:
            result["suppressions"] = [{"kind": "inSource", "justification": finding.reason}]
        results.append(result)
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": tool, "version": version, "rules": list(rules.values())}},
                "results": results,
            }
        ],
    }
    path.write_text(json.dumps(sarif, indent=2) + "\n", encoding="utf-8")


def write_junit(findings: list[Finding], path: Path, *, suite: str) -> None:
    """One testcase per finding: open ones fail, waived ones are skipped with their reason."""
    open_count = sum(not f.waived for f in findings)
    root = ET.Element("testsuites", tests=str(max(len(findings), 1)), failures=str(open_count))
    element = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(max(len(findings), 1)),
        failures=str(open_count),
        skipped=str(len(findings) - open_count),
    )
    if not findings:
        ET.SubElement(element, "testcase", classname=suite, name="no findings")
    for finding in findings:
        case = ET.SubElement(element, "testcase", classname=f"{suite}.{finding.rule}", name=finding.resource)
        if finding.waived:
            ET.SubElement(case, "skipped", message=finding.reason or "")
        else:
            failure = ET.SubElement(case, "failure", message=finding.message, type=finding.severity)
            failure.text = f"{finding.rule} at {finding.resource}" + (
                f" ({finding.template}:{finding.line})" if finding.template else ""
            )
    ET.indent(root)
    path.write_text(ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n", encoding="utf-8")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


# --- the scan -------------------------------------------------------------------------------------------------


def _scan_nag(ctx: StepContext, assembly: Path) -> list[Finding]:
    if not (assembly / VALIDATION_REPORT).is_file():
        raise StepFailed(
            f"{ctx.rel(assembly)} has no {VALIDATION_REPORT}: it was synthesized without cdk-nag",
            hint="synthesize with the synth step (CICD_NAG=report), not CICD_NAG=off",
        )
    findings = nag_findings(assembly)
    write_sarif(
        findings,
        ctx.out(REPORTS, "cdk-nag.sarif"),
        tool="cdk-nag",
        version=_version("cdk-nag"),
        base=ASSEMBLY,
    )
    write_junit(findings, ctx.out(REPORTS, "cdk-nag.junit.xml"), suite="cdk-nag")
    return findings


def checkov_command(checkov: Path, directory: str, output: Path) -> list[str]:
    """checkov on the CloudFormation templates under ``directory``: a CLI report, SARIF and JUnit into ``output``
    (``results_sarif.sarif``, ``results_junitxml.xml``); exit 1 when a check is open."""
    return [
        str(checkov),
        "-d",
        directory,
        "--framework",
        "cloudformation",
        "--skip-download",
        "--quiet",
        "-o",
        "cli",
        "-o",
        "sarif",
        "-o",
        "junitxml",
        "--output-file-path",
        str(output),
    ]


def _scan_checkov(ctx: StepContext) -> list[Finding]:
    checkov = tools.ensure(tools.CHECKOV, ctx.root)
    raw = ctx.out(REPORTS, "checkov-raw", "x").parent
    # The cli report also goes to stdout, that is into the step log; the SARIF and JUnit files are kept.
    ctx.run(
        checkov_command(checkov, ASSEMBLY, raw),
        cwd=ctx.run_dir,
        ok_codes=(0, 1),
    )
    sarif, junit = raw / "results_sarif.sarif", raw / "results_junitxml.xml"
    if not sarif.is_file():
        raise StepFailed("checkov wrote no SARIF report", hint=f"see {ctx.rel(ctx.log_path)}")
    shutil.move(sarif, ctx.out(REPORTS, "checkov.sarif"))
    if junit.is_file():
        shutil.move(junit, ctx.out(REPORTS, "checkov.junit.xml"))
    shutil.rmtree(raw, ignore_errors=True)
    return checkov_findings(ctx.out(REPORTS, "checkov.sarif"))


def _log(ctx: StepContext, findings: list[Finding]) -> None:
    for finding in findings:
        where = f"{finding.template}:{finding.line}" if finding.template else finding.resource
        if finding.waived:
            ctx.note(f"waived {finding.tool} {finding.rule} {finding.resource}: {finding.reason}")
        else:
            ctx.note(f"FINDING {finding.tool} {finding.rule} {finding.resource} ({where}): {finding.message}")


def cached_assembly(store: StepCache, synth_key: str) -> Path | None:
    """The assembly the synth step made under ``synth_key`` (from the files as they are now), where the step cache
    keeps it (a CI job runs ``inv synth`` and then ``inv iac-scan``, each a run of its own); None when there is none."""
    hit, _warning = store.lookup(synth_key)
    return store.output(hit, ASSEMBLY) if hit is not None else None


def _from_synth_cache(ctx: StepContext) -> bool:
    """Put the synth step's cached assembly (:func:`cached_assembly`) into the run folder; False when there is none."""
    from cicd.cache import StepCache
    from cicd.pipeline import MODEL, Node
    from cicd.runner import CACHE_OFF

    if CACHE_OFF in ctx.options:
        return False
    store = StepCache(ctx.root, environ=ctx.environ)
    cached = cached_assembly(store, store.key(MODEL.step("synth"), Node("synth"), ctx.target))
    if cached is None:
        return False
    shutil.copytree(cached, _assembly(ctx), dirs_exist_ok=True)
    return (_assembly(ctx) / "manifest.json").is_file()


def iac_scan(ctx: StepContext) -> Outcome:
    """cdk-nag (from the synth's validation report) and checkov on the assembly: no finding without a reason."""
    assembly = _assembly(ctx)
    if not (assembly / "manifest.json").is_file():
        if _from_synth_cache(ctx):
            ctx.note(f"no assembly in {ctx.rel(assembly)}: the synth step's, from the step cache (same inputs)")
        else:
            ctx.note(f"no assembly in {ctx.rel(assembly)}: synthesizing first")
            synth(ctx)
    nag = _scan_nag(ctx, assembly)
    checkov = _scan_checkov(ctx)
    _log(ctx, nag + checkov)
    open_nag = [f for f in nag if not f.waived]
    open_checkov = [f for f in checkov if not f.waived]
    details = {
        "nag_open": len(open_nag),
        "nag_waived": len(nag) - len(open_nag),
        "checkov_open": len(open_checkov),
        "checkov_waived": len(checkov) - len(open_checkov),
        "reports": [
            ctx.rel(ctx.out(REPORTS, name))
            for name in ("cdk-nag.sarif", "cdk-nag.junit.xml", "checkov.sarif", "checkov.junit.xml")
        ],
    }
    if open_nag or open_checkov:
        first = (open_nag + open_checkov)[0]
        raise StepFailed(
            f"{len(open_nag)} cdk-nag and {len(open_checkov)} checkov finding(s) without a waiver, first: "
            f"{first.rule} at {first.resource}",
            hint="fix them, or waive each with a reason in infra/ (infra/waivers.py); "
            f"see {ctx.rel(ctx.out(REPORTS, 'cdk-nag.sarif'))}",
        )
    return Outcome.passed(
        f"cdk-nag {details['nag_waived']} waived, checkov {details['checkov_waived']} waived, 0 open",
        **details,
    )
