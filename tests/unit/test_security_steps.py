"""The security steps against planted problems: a leaked key in git history, a SAST finding, offline advisories."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable
from pathlib import Path

import pytest

from cicd import command
from cicd.context import StepContext
from cicd.errors import StepFailed
from cicd.results import Status
from cicd.sandbox import git
from cicd.steps import security
from tests.conftest import ROOT


def fake_aws_key() -> str:
    """A syntactically valid, random access key id, built at run time so no key is ever committed."""
    alphabet = string.ascii_uppercase + "234567"
    return "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))


@pytest.fixture
def leaky_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "leaky"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "settings.py").write_text(f'AWS_ACCESS_KEY_ID = "{fake_aws_key()}"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "add settings")
    (repo / "settings.py").write_text("AWS_ACCESS_KEY_ID = None\n")
    git(repo, "commit", "-qam", "remove the key")
    return repo


@pytest.mark.component  # runs gitleaks and git
def test_gitleaks_finds_a_key_removed_from_the_working_tree(
    leaky_repo: Path, make_ctx: Callable[..., StepContext]
) -> None:
    ctx = make_ctx(root=leaky_repo, step="secrets-scan")
    with pytest.raises(StepFailed, match=r"1 secret\(s\) found: history settings.py:1"):
        security.secrets_scan(ctx)
    assert "AKIA" not in ctx.log_path.read_text().replace("AKIA*", "")  # redacted in the log


@pytest.mark.component  # runs gitleaks and git
def test_gitleaks_passes_a_clean_repo(tmp_path: Path, make_ctx: Callable[..., StepContext]) -> None:
    repo = tmp_path / "clean"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("print('hello')\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    assert security.secrets_scan(make_ctx(root=repo)).status is Status.PASSED


@pytest.mark.slow
def test_sast_finds_a_planted_shell_injection(project_copy: Path, make_ctx: Callable[..., StepContext]) -> None:
    (project_copy / "cicd" / "planted.py").write_text(
        "from __future__ import annotations\n\nimport subprocess\n\n\n"
        "def go(arg: str) -> None:\n    subprocess.run('ls ' + arg, shell=True, check=False)\n"
    )
    ctx = make_ctx(root=project_copy, step="sast")
    with pytest.raises(StepFailed, match="SAST finding"):
        security.sast(ctx)
    log = ctx.log_path.read_text()
    assert "bandit cicd/planted.py:7: B602" in log
    assert "semgrep cicd/planted.py:7:" in log
    sarif = json.loads((project_copy.parent / "run" / "reports" / "semgrep.sarif").read_text())
    rules = {r["ruleId"] for run in sarif["runs"] for r in run["results"]}
    assert any("subprocess-shell-true" in rule for rule in rules)


@pytest.mark.component  # runs pip-audit on the project's lock
def test_sca_is_skipped_with_the_reason_when_advisories_are_unreachable(
    monkeypatch: pytest.MonkeyPatch, make_ctx: Callable[..., StepContext]
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens on the discard port: connection refused
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    command.reset_scrubber()
    ctx = make_ctx(root=ROOT, step="sca")
    outcome = security.sca(ctx)
    assert outcome.status is Status.SKIPPED
    assert outcome.reason and "advisory service cannot be reached" in outcome.reason
    ctx.log.flush()
    log = ctx.log_path.read_text()
    assert "asked the advisory service about pip-audit first" in log
    assert "+ pip-audit" not in log  # one question told: no audit of every dependency that cannot succeed
    assert security.advisory_probe("boto3==1.0\n") is None  # nothing to ask about: pip-audit decides


def test_sca_classifies_reports(tmp_path: Path) -> None:
    report = tmp_path / "audit.json"
    report.write_text(
        json.dumps(
            {
                "dependencies": [
                    {"name": "a", "version": "1", "vulns": [{"id": "PYSEC-1"}]},
                    {"name": "b", "version": "2", "vulns": []},
                    {"name": "c", "skip_reason": "not found"},
                ]
            }
        )
    )
    assert security._vulnerabilities(report) == ["a 1 (PYSEC-1)"]
    assert security._audited_count(report) == 2
    assert security._skip_reasons(report) == ["not found"]
    report.write_text("{broken")
    assert security._audited_count(report) == 0


@pytest.mark.component  # runs cyclonedx-py on the project's lock
def test_sbom_is_cyclonedx_with_components(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(root=ROOT, step="sbom")
    outcome = security.sbom(ctx)
    data = json.loads((ctx.run_dir / "sbom.cdx.json").read_text())
    assert data["bomFormat"] == "CycloneDX"
    names = {c["name"] for c in data["components"]}
    assert {"boto3", "invoke", "aws-cdk-lib"} <= names
    assert outcome.reason and "components" in outcome.reason
