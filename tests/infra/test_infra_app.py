"""``python -m infra.app``: bad input is one line and exit 2 with nothing written; publishing is all-or-nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cicd import config as cfg
from cicd.errors import ConfigError, StepFailed
from infra import app as infra_app

ROOT = infra_app.ROOT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fixture project for the app: a pyproject.toml with the default pipeline settings and the Lambda code."""
    root = tmp_path / "project"
    (root / "functions" / "latest_apk").mkdir(parents=True)
    (root / "functions" / "latest_apk" / "handler.py").write_text("")
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.2.0"\n\n[tool.cicd]\n')
    return root


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CICD_TARGET": "aws"}, "environment 'dev' has no account for the aws target"),
        ({"CICD_TARGET": "gcp"}, "unknown target 'gcp'"),
        ({"CICD_ENVIRONMENTS": "dev,qa"}, "unknown environment 'qa' in CICD_ENVIRONMENTS"),
        ({"CICD_NAG": "loud"}, "CICD_NAG must be one of enforce, report, off"),
        ({"CICD_BUILD_VERSION": "v1"}, "build version 'v1' is not MAJOR.MINOR.PATCH"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    environ: dict[str, str],
    message: str,
) -> None:
    monkeypatch.setattr(infra_app, "ROOT", project)
    for key in ("CICD_BUILD_VERSION", "CICD_BUILD_COMMIT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        if key.startswith("CICD_BUILD"):
            monkeypatch.setenv(key, value)
    outdir = project.parent / "out"
    assert infra_app.main(["--outdir", str(outdir)], environ=environ) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1
    assert list(project.parent.iterdir()) == [project]


def test_missing_lambda_code_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.2.0"\n')
    with pytest.raises(ConfigError, match=r"Lambda code not found: .*functions/latest_apk/handler\.py") as info:
        infra_app.Settings.from_environ(tmp_path, {"CICD_BUILD_VERSION": "1.2.3"})
    assert info.value.return_code == 2


def test_settings_select_environments_and_read_the_target(project: Path) -> None:
    settings = infra_app.Settings.from_environ(project, {"CICD_ENVIRONMENTS": "prod, dev", "CICD_TARGET": "local"})
    assert [e.name for e in settings.environments] == ["prod", "dev"]
    assert settings.target is cfg.LOCAL and settings.nag == "enforce"
    assert settings.code_dir == project / "functions"


def test_aws_target_accepts_configured_accounts(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "1.2.0"\n\n'
        + "".join(f'[tool.cicd.environments.{n}]\naccount = "123456789012"\n' for n in cfg.ENVIRONMENTS)
    )
    (tmp_path / "functions" / "latest_apk").mkdir(parents=True)
    (tmp_path / "functions" / "latest_apk" / "handler.py").write_text("")
    settings = infra_app.Settings.from_environ(tmp_path, {"CICD_TARGET": "aws", "CICD_BUILD_VERSION": "1.2.3"})
    assert settings.target is cfg.AWS
    assert {e.account for e in settings.environments} == {"123456789012"}


def test_publish_replaces_an_existing_assembly_in_one_move(tmp_path: Path) -> None:
    outdir, new = tmp_path / "cdk.out", tmp_path / ".cdk.out.tmp"
    outdir.mkdir()
    (outdir / "old.json").write_text("old")
    new.mkdir()
    (new / "manifest.json").write_text("{}")
    infra_app._publish(new, outdir, cli_managed=False)
    assert sorted(p.name for p in outdir.iterdir()) == ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdk.out"]


def test_publish_into_a_cli_managed_folder_keeps_its_lock_files(tmp_path: Path) -> None:
    outdir, new = tmp_path / "cdk.out", tmp_path / ".cdk.out.tmp"
    (outdir / "assembly-dev").mkdir(parents=True)
    (outdir / "assembly-dev" / "stale.json").write_text("")
    (outdir / "synth.lock").write_text("")
    (new / "assembly-dev").mkdir(parents=True)
    (new / "assembly-dev" / "manifest.json").write_text("{}")
    (new / "manifest.json").write_text("{}")
    infra_app._publish(new, outdir, cli_managed=True)
    assert sorted(p.name for p in outdir.iterdir()) == ["assembly-dev", "manifest.json", "synth.lock"]
    assert sorted(p.name for p in (outdir / "assembly-dev").iterdir()) == ["manifest.json"]


def test_failed_synth_leaves_the_outdir_untouched(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(settings: infra_app.Settings, outdir: Path) -> None:
        (outdir / "manifest.json").write_text("{half")
        raise RuntimeError("Error: something in the construct tree is wrong")

    monkeypatch.setattr(infra_app, "build_app", broken)
    outdir = tmp_path / "cdk.out"
    outdir.mkdir()
    (outdir / "manifest.json").write_text("{}")
    settings = infra_app.Settings.from_environ(project, {})
    with pytest.raises(StepFailed, match=r"CDK synth failed: Error: something in the construct tree is wrong"):
        infra_app.synthesize(settings, outdir)
    assert (outdir / "manifest.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdk.out", "project"]


@pytest.mark.component  # the project's own cdk.json
def test_cdk_json_runs_this_app_and_direct_runs_get_the_same_context() -> None:
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    assert cdk_json["app"] == "python -m infra.app"
    assert (cdk_json["pathMetadata"], cdk_json["assetMetadata"], cdk_json["versionReporting"]) == (True, True, False)
    context = infra_app.cdk_context(ROOT)
    assert context["aws:cdk:enable-path-metadata"] is True
    assert context["aws:cdk:version-reporting"] is False
    assert context["@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy"] is True
    assert context["@aws-cdk/aws-apigateway:disableCloudWatchRole"] is True


@pytest.mark.component  # runs the app as a process
def test_help_needs_no_cdk() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "infra.app", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "--outdir" in out.stdout
