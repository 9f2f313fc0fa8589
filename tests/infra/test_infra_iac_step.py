"""The ``synth`` and ``iac-scan`` step functions: reading assemblies and reports, the verdict, and one real run."""

from __future__ import annotations

import json
import shutil
import stat
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from cicd import tools
from cicd.context import StepContext
from cicd.errors import ConfigError, StepFailed
from cicd.results import Outcome, Status
from cicd.steps import iac

ROOT = Path(__file__).resolve().parents[2]
MakeCtx = Callable[..., StepContext]
# Installs a fake checkov reporting the given SARIF results; returns the script.
FakeCheckov = Callable[[list[dict[str, Any]]], Path]
# synth's context and outcome, then iac-scan's.
RealRun = tuple[StepContext, Outcome, StepContext, Outcome]


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[MakeCtx]:
    opened: list[Any] = []

    def make(
        step: str = "iac-scan", target: str = "local", run_dir: Path | None = None, root: Path = ROOT
    ) -> StepContext:
        run = run_dir or tmp_path / "run"
        log_path = run / "logs" / f"{step}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("a", encoding="utf-8")
        opened.append(log)
        return StepContext(root=root, run_dir=run, step=step, env=None, target=target, log=log, log_path=log_path)

    yield make
    for log in opened:
        log.close()


def log_text(ctx: StepContext) -> str:
    ctx.log.flush()
    return ctx.log_path.read_text()


# --- a fabricated assembly ------------------------------------------------------------------------------------


def fake_assembly(run: Path, *, nag_open: bool = False, nag_reason: str = "a reason that is long enough") -> Path:
    """Two stages with one stack each, a validation report, and templates carrying construct paths."""
    assembly = run / "cdk.out"
    artifacts: dict[str, Any] = {"Tree": {"type": "cdk:tree", "properties": {"file": "tree.json"}}}
    for env in ("dev", "prod"):
        folder = assembly / f"assembly-{env}"
        folder.mkdir(parents=True)
        template = {
            "Resources": {
                "Bucket1": {"Type": "AWS::S3::Bucket", "Metadata": {"aws:cdk:path": f"{env}/LatestApk/Bucket/Resource"}}
            }
        }
        (folder / f"{env}LatestApk.template.json").write_text(json.dumps(template, indent=1))
        (folder / "manifest.json").write_text(
            json.dumps(
                {
                    "artifacts": {
                        f"{env}LatestApk": {
                            "type": "aws:cloudformation:stack",
                            "displayName": f"{env}/LatestApk",
                            "properties": {
                                "templateFile": f"{env}LatestApk.template.json",
                                "stackName": f"LatestApk-{env}",
                            },
                        }
                    }
                }
            )
        )
        artifacts[f"assembly-{env}"] = {
            "type": "cdk:cloud-assembly",
            "properties": {"directoryName": f"assembly-{env}", "displayName": env},
        }
    (assembly / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    violation = {
        "ruleName": "AwsSolutions-S1",
        "description": "The S3 Bucket has server access logs disabled.",
        "severity": "error",
        "violatingConstructs": [{"constructPath": "dev/LatestApk/Bucket/Resource"}],
    }
    plugin: dict[str, Any] = {"pluginName": "AwsSolutions", "conclusion": "success", "violations": []}
    if nag_open:
        plugin["violations"] = [violation]
        plugin["conclusion"] = "failure"
    plugin["suppressedViolations"] = [
        {
            **violation,
            "violatingConstructs": [{"constructPath": "prod/LatestApk/Bucket/Resource"}],
            "acknowledgedId": "AwsSolutions::AwsSolutions-S1",
            "reason": nag_reason,
        }
    ]
    (assembly / iac.VALIDATION_REPORT).write_text(json.dumps({"pluginReports": [plugin]}))
    return assembly


def sarif_result(rule: str, justification: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": rule,
        "level": "warning",
        "message": {"text": f"check {rule}"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": "cdk.out/assembly-dev/devLatestApk.template.json"},
                    "region": {"startLine": 3, "snippet": {"text": '  "Bucket1": {\n   "Type": "AWS::S3::Bucket"'}},
                }
            }
        ],
    }
    if justification is not None:
        result["suppressions"] = [{"kind": "inSource", "justification": justification}]
    return result


@pytest.fixture
def fake_checkov(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCheckov:
    """Replace the isolated checkov with a script that writes the given SARIF results (exit 1 when one is open)."""

    def install(results: list[dict[str, Any]]) -> Path:
        script = tmp_path / "bin" / "checkov"
        script.parent.mkdir(exist_ok=True)
        sarif = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "Checkov"}}, "results": results}]}
        failed = any("suppressions" not in r for r in results)
        script.write_text(
            f"#!{sys.executable}\n"
            + textwrap.dedent(
                f"""
                import json, pathlib, sys
                args = sys.argv[1:]
                assert args[:2] == ["-d", "cdk.out"] and "--skip-download" in args, args
                assert pathlib.Path("cdk.out/manifest.json").is_file()
                out = pathlib.Path(args[args.index("--output-file-path") + 1])
                out.mkdir(parents=True, exist_ok=True)
                (out / "results_sarif.sarif").write_text(json.dumps({sarif!r}))
                (out / "results_junitxml.xml").write_text("<testsuites/>")
                (out / "results_cli.txt").write_text("Passed checks: 9, Failed checks: {int(failed)}")
                print("cloudformation scan results:")
                sys.exit({1 if failed else 0})
                """
            )
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setattr(tools, "ensure", lambda tool, root: script)
        return script

    return install


# --- reading --------------------------------------------------------------------------------------------------


def test_assembly_stacks_walks_the_stage_assemblies(tmp_path: Path) -> None:
    assembly = fake_assembly(tmp_path)
    assert iac.assembly_stacks(assembly) == [
        iac.StackArtifact("LatestApk-dev", "dev/LatestApk", "assembly-dev/devLatestApk.template.json"),
        iac.StackArtifact("LatestApk-prod", "prod/LatestApk", "assembly-prod/prodLatestApk.template.json"),
    ]


def test_nag_findings_are_located_in_their_template(tmp_path: Path) -> None:
    findings = iac.nag_findings(fake_assembly(tmp_path, nag_open=True))
    assert [(f.rule, f.resource, f.waived) for f in findings] == [
        ("AwsSolutions-S1", "dev/LatestApk/Bucket/Resource", False),
        ("AwsSolutions-S1", "prod/LatestApk/Bucket/Resource", True),
    ]
    assert findings[0].template == "assembly-dev/devLatestApk.template.json"
    assert findings[0].line == 3  # where "Bucket1": { starts


def test_an_acknowledgement_without_reason_is_not_a_waiver(tmp_path: Path) -> None:
    (finding,) = iac.nag_findings(fake_assembly(tmp_path, nag_reason="  "))
    assert not finding.waived


def test_the_scanned_digest_masks_asset_hashes_and_skips_the_function_code(tmp_path: Path) -> None:
    assert iac.scanned_digest(tmp_path / "cdk.out") is None  # no assembly
    assembly = fake_assembly(tmp_path)
    template = assembly / "assembly-dev" / "devLatestApk.template.json"
    original = template.read_text()

    def with_asset(digest: str, code: str) -> str | None:
        for old in assembly.glob("asset.*"):
            shutil.rmtree(old)
        (assembly / f"asset.{digest}").mkdir()
        (assembly / f"asset.{digest}" / "handler.py").write_text(code)
        version = f"FnCurrentVersion431D528B{digest[:32]}"  # CDK: the path's hash, then the function's digest
        template.write_text(original.replace("Bucket/Resource", f"Bucket/Resource {digest}.zip {version}"))
        (template.parent / "devLatestApk.assets.json").write_text(json.dumps({"files": {digest: digest[:8]}}))
        return iac.scanned_digest(assembly)

    first = with_asset("a" * 64, "def handler(): ...\n")
    assert first is not None
    assert with_asset("b" * 64, "def handler(): return 1\n") == first  # the code and its hash changed
    (assembly / f"asset.{'b' * 64}" / "template.json").write_text("{}")  # a file checkov would parse
    assert iac.scanned_digest(assembly) != first
    assert with_asset("c" * 64, "") == first
    template.write_text(template.read_text().replace("AWS::S3::Bucket", "AWS::S3::AccessPoint"))
    assert iac.scanned_digest(assembly) != first
    assert with_asset("a" * 63 + "g", "") != first  # not a hash: compared as it is


def test_checkov_findings_from_sarif(tmp_path: Path) -> None:
    sarif = tmp_path / "c.sarif"
    sarif.write_text(
        json.dumps({"runs": [{"results": [sarif_result("CKV_AWS_18", "own logs"), sarif_result("CKV_AWS_21", None)]}]})
    )
    findings = iac.checkov_findings(sarif)
    assert [(f.rule, f.resource, f.waived, f.line) for f in findings] == [
        ("CKV_AWS_18", "Bucket1", True, 3),
        ("CKV_AWS_21", "Bucket1", False, 3),
    ]


def test_reports_mark_waived_findings_as_suppressed_and_open_ones_as_failures(tmp_path: Path) -> None:
    findings = iac.nag_findings(fake_assembly(tmp_path, nag_open=True))
    iac.write_sarif(findings, tmp_path / "n.sarif", tool="cdk-nag", version="3.0.2", base="cdk.out")
    iac.write_junit(findings, tmp_path / "n.xml", suite="cdk-nag")
    sarif = json.loads((tmp_path / "n.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    assert run["tool"]["driver"]["name"] == "cdk-nag" and run["tool"]["driver"]["rules"][0]["id"] == "AwsSolutions-S1"
    open_result, waived_result = run["results"]
    assert "suppressions" not in open_result
    assert waived_result["suppressions"] == [{"kind": "inSource", "justification": "a reason that is long enough"}]
    location = open_result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "cdk.out/assembly-dev/devLatestApk.template.json"
    suite = ET.parse(tmp_path / "n.xml").getroot().find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("skipped")) == ("1", "1")
    cases = suite.findall("testcase")
    assert cases[0].find("failure") is not None and cases[1].find("skipped") is not None


def test_junit_without_findings_has_one_passing_case(tmp_path: Path) -> None:
    iac.write_junit([], tmp_path / "j.xml", suite="cdk-nag")
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert root.get("failures") == "0" and len(root.iter("testcase").__next__().attrib) == 2


# --- the verdict ----------------------------------------------------------------------------------------------


@pytest.mark.component  # runs checkov
def test_iac_scan_passes_when_every_finding_is_waived(make_ctx: MakeCtx, fake_checkov: FakeCheckov) -> None:
    ctx = make_ctx()
    fake_assembly(ctx.run_dir)
    fake_checkov([sarif_result("CKV_AWS_18", "the access-log bucket itself")])
    outcome = iac.iac_scan(ctx)
    assert outcome.status is Status.PASSED
    assert (outcome.details["nag_open"], outcome.details["nag_waived"]) == (0, 1)
    assert (outcome.details["checkov_open"], outcome.details["checkov_waived"]) == (0, 1)
    for name in ("cdk-nag.sarif", "cdk-nag.junit.xml", "checkov.sarif", "checkov.junit.xml"):
        assert (ctx.run_dir / "reports" / name).is_file(), name
    assert not (ctx.run_dir / "reports" / "checkov-raw").exists()
    log = log_text(ctx)
    assert "waived checkov CKV_AWS_18 Bucket1: the access-log bucket itself" in log
    assert "waived AwsSolutions AwsSolutions-S1 prod/LatestApk/Bucket/Resource" in log


@pytest.mark.component  # runs checkov
def test_iac_scan_fails_on_an_unwaived_checkov_finding(make_ctx: MakeCtx, fake_checkov: FakeCheckov) -> None:
    ctx = make_ctx()
    fake_assembly(ctx.run_dir)
    fake_checkov([sarif_result("CKV_AWS_21", None)])
    with pytest.raises(StepFailed, match=r"0 cdk-nag and 1 checkov finding\(s\) without a waiver, first: CKV_AWS_21"):
        iac.iac_scan(ctx)
    assert "FINDING checkov CKV_AWS_21 Bucket1" in log_text(ctx)
    assert (ctx.run_dir / "reports" / "checkov.sarif").is_file()


@pytest.mark.component  # runs checkov
def test_iac_scan_fails_on_an_open_nag_finding(make_ctx: MakeCtx, fake_checkov: FakeCheckov) -> None:
    ctx = make_ctx()
    fake_assembly(ctx.run_dir, nag_open=True)
    fake_checkov([])
    with pytest.raises(
        StepFailed, match=r"1 cdk-nag and 0 checkov .* AwsSolutions-S1 at dev/LatestApk/Bucket/Resource"
    ):
        iac.iac_scan(ctx)


@pytest.mark.component  # runs checkov
def test_iac_scan_without_an_assembly_takes_the_synth_step_s_from_the_cache(
    make_ctx: MakeCtx, fake_checkov: FakeCheckov, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``inv synth`` then ``inv iac-scan`` (two runs, as in a CI job) synthesize once; with other inputs, the scan
    synthesizes itself."""
    from cicd.pipeline import MODEL, Node
    from cicd.runner import Runner, RunOptions

    root = tmp_path / "project"
    for name, text in {
        "pyproject.toml": '[project]\nname = "x"\nversion = "0.1.0"\n\n[tool.cicd]\n',
        "infra/app.py": "",
        "functions/latest_apk/handler.py": "",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)

    def fake_synth(ctx: StepContext) -> None:
        fake_assembly(ctx.run_dir)

    Runner(root, MODEL, [Node("synth")], RunOptions(), environ={}, functions={"synth": fake_synth}).run()

    def no_synth(ctx: StepContext) -> Outcome:
        raise AssertionError("synthesized again")

    monkeypatch.setattr(iac, "synth", no_synth)
    fake_checkov([])
    ctx = make_ctx(root=root, run_dir=tmp_path / "scan-run")
    assert iac.iac_scan(ctx).status is Status.PASSED
    assert "the synth step's, from the step cache (same inputs)" in log_text(ctx)
    (root / "infra" / "app.py").write_text("# changed\n")
    with pytest.raises(AssertionError, match="synthesized again"):
        iac.iac_scan(make_ctx(root=root, run_dir=tmp_path / "another-run"))


def test_iac_scan_needs_the_nag_report(make_ctx: MakeCtx, fake_checkov: FakeCheckov) -> None:
    ctx = make_ctx()
    (fake_assembly(ctx.run_dir) / iac.VALIDATION_REPORT).unlink()
    fake_checkov([])
    with pytest.raises(StepFailed, match=r"has no validation-report.json.*CICD_NAG=off"):
        iac.iac_scan(ctx)


def test_packaging_for_aws_without_accounts_is_a_config_error_before_any_work(
    make_ctx: MakeCtx, tmp_path: Path
) -> None:
    """The synth check scans the aws templates without accounts (environment-agnostic); a package cannot."""
    from cicd.steps import deploy

    root = tmp_path / "project"  # a fixture project with the default settings: no environment has an account
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.0.0"\n')
    ctx = make_ctx(root=root, step="package", target="aws")
    with pytest.raises(ConfigError, match=r"environment 'dev' has no account for the aws target") as info:
        deploy.package(ctx)
    assert info.value.return_code == 2
    assert not (ctx.run_dir / "artifact").exists()


# --- one real run ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRun]:
    """``synth`` then ``iac-scan`` in one run folder, exactly as the runner calls them (real CDK, real checkov)."""
    run = tmp_path_factory.mktemp("real") / "run"
    contexts = []
    for step in ("synth", "iac-scan"):
        log_path = run / "logs" / f"{step}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        contexts.append(
            StepContext(
                root=ROOT,
                run_dir=run,
                step=step,
                env=None,
                target="local",
                log=log_path.open("w", encoding="utf-8"),
                log_path=log_path,
            )
        )
    synth_ctx, scan_ctx = contexts
    synthesized = iac.synth(synth_ctx)
    scanned = iac.iac_scan(scan_ctx)
    yield synth_ctx, synthesized, scan_ctx, scanned
    for ctx in contexts:
        ctx.log.close()


@pytest.mark.slow
def test_real_synth_writes_a_reusable_assembly_of_all_three_stacks(real_run: RealRun) -> None:
    synth_ctx, outcome, _, _ = real_run
    assert outcome.status is Status.PASSED
    assert outcome.details["stacks"] == ["LatestApk-dev", "LatestApk-preprod", "LatestApk-prod"]
    assert outcome.details["selectors"]["LatestApk-prod"] == "prod/LatestApk"
    assert outcome.details["nag_findings"] == 0 and outcome.details["synth_s"] > 0
    assembly = synth_ctx.run_dir / "cdk.out"
    manifest = json.loads((assembly / "manifest.json").read_text())
    assert {a["type"] for a in manifest["artifacts"].values()} >= {"cdk:cloud-assembly"}
    assert (assembly / iac.VALIDATION_REPORT).is_file()
    assert not [p for p in synth_ctx.run_dir.iterdir() if p.name.startswith(".cdk.out")]
    assert "+ python -m infra.app --outdir" in log_text(synth_ctx)


@pytest.mark.slow
def test_real_iac_scan_passes_with_every_waiver_explained(real_run: RealRun) -> None:
    _, _, scan_ctx, outcome = real_run
    assert outcome.status is Status.PASSED
    assert outcome.details["nag_open"] == 0 and outcome.details["checkov_open"] == 0
    assert outcome.details["nag_waived"] > 0 and outcome.details["checkov_waived"] > 0
    checkov = iac.checkov_findings(scan_ctx.run_dir / "reports" / "checkov.sarif")
    assert checkov and all(f.waived and len(f.reason or "") >= 20 for f in checkov)
    junit = ET.parse(scan_ctx.run_dir / "reports" / "checkov.junit.xml").getroot()
    assert junit.get("failures") == "0"
    assert "checkov -d cdk.out --framework cloudformation --skip-download" in log_text(scan_ctx)
