"""Hardening: the project's own scans have no finding without a written reason, and the security page stays true.

* SAST (bandit + semgrep) and the secrets scan (gitleaks over the git history and the working tree) run here on the
  repository through their step functions, exactly as ``inv sast`` / ``inv secrets-scan`` do. The IaC scans
  (cdk-nag + checkov, every waiver with its reason) run for real in
  ``tests/infra/test_infra_iac_step.py::test_real_iac_scan_passes_with_every_waiver_explained``.
* A finding can only be accepted in code, with a reason: every inline suppression (``# nosec``, ``# noqa: S...``,
  ``nosemgrep``, ``gitleaks:allow``) names its rule and says why, and bandit's project-wide skips are explained
  where they are configured.
* The template properties (private, SSL-only, versioned buckets; throttled API; presigned URL lifetime from the
  configuration) are asserted on the synthesized templates in ``tests/infra/test_infra_stacks.py``; the security
  page links those tests, and a test here checks that every test it links exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cicd.context import StepContext
from cicd.pipeline import MODEL
from cicd.results import Status
from cicd.runner import load_function
from tests.conftest import ROOT

SOURCES = ("cicd", "functions", "infra", "benchmarks", "tasks.py")
MARKER = re.compile(r"#\s*(nosec|noqa:[^#]*\bS\d|nosemgrep|gitleaks:allow)")
# What names rules in a suppression comment; what is left must be the reason.
RULES = re.compile(
    r"#|noqa:?|nosec|nosemgrep(:\s*[\w.-]+)?|gitleaks:allow|\b[A-Z]{1,4}\d{2,4}\b|\bB\d{3}\b|[,:;\u2014-]"
)
MIN_REASON_WORDS = 3
SECURITY_PAGE = ROOT / "docs" / "security.md"
TEST_LINK = re.compile(r"(tests/[\w/]+\.py)::(test_\w+)")


def python_files() -> list[Path]:
    files: list[Path] = []
    for name in SOURCES:
        path = ROOT / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return [f for f in files if "node_modules" not in f.parts]


def suppressions() -> list[tuple[str, str]]:
    found = []
    for path in python_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = MARKER.search(line)
            if match:
                found.append((f"{path.relative_to(ROOT)}:{number}", line[match.start() :]))
    return found


def test_every_inline_suppression_names_its_rule_and_says_why() -> None:
    found = suppressions()
    assert found, "the scan for suppressions found none: the pattern is broken"
    for where, comment in found:
        if "nosec" in comment:
            assert re.search(r"nosec\s+B\d{3}", comment), f"{where}: a bare nosec hides every bandit rule: {comment}"
        reason = RULES.sub(" ", comment).split()
        assert len(reason) >= MIN_REASON_WORDS, f"{where}: a suppression without a written reason: {comment}"


def test_a_suppression_without_a_reason_is_caught() -> None:
    """The check above really rejects what it must (it would pass vacuously if the patterns were wrong)."""
    for bad in ("# nosec B105", "# nosec", "# noqa: S602", "# noqa: S105, S108  # nosec B105 B108", "# nosemgrep"):
        comment = bad[MARKER.search(bad).start() :]  # type: ignore[union-attr]
        bare = "nosec" in comment and not re.search(r"nosec\s+B\d{3}", comment)
        assert bare or len(RULES.sub(" ", comment).split()) < MIN_REASON_WORDS, bad
    good = "# noqa: S105  # nosec B105 # a path in the job's container"
    assert len(RULES.sub(" ", good).split()) >= MIN_REASON_WORDS


def test_bandit_skips_are_explained_where_they_are_configured() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text[text.index("[tool.bandit]") :]
    section = section[: section.index("\n[", 1)] if "\n[" in section[1:] else section
    skips = re.search(r"^skips\s*=\s*\[(.*?)\]", section, re.MULTILINE | re.DOTALL)
    assert skips, "[tool.bandit] has no skips list"
    comments = " ".join(line for line in section.splitlines() if line.lstrip().startswith("#"))
    for rule in re.findall(r"B\d{3}", skips.group(1)):
        assert rule in comments, f"bandit skips {rule} without saying why in [tool.bandit]"
    assert len(comments.split()) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("step", ["sast", "secrets-scan"])
def test_the_projects_own_scans_have_no_open_finding(step: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    log_path = run_dir / "logs" / f"{step}.log"
    log_path.parent.mkdir(parents=True)
    with log_path.open("w", encoding="utf-8") as log:
        ctx = StepContext(root=ROOT, run_dir=run_dir, step=step, env=None, target="local", log=log, log_path=log_path)
        outcome = load_function(MODEL.step(step).run)(ctx)
    assert outcome is None or outcome.status is Status.PASSED, log_path.read_text(encoding="utf-8")[-3000:]


def test_every_test_the_security_page_links_exists() -> None:
    links = TEST_LINK.findall(SECURITY_PAGE.read_text(encoding="utf-8"))
    assert len(links) >= 10, "docs/security.md links the tests of each control"
    for path, name in links:
        source = ROOT / path
        assert source.is_file(), path
        assert re.search(rf"^(async )?def {name}\(", source.read_text(encoding="utf-8"), re.MULTILINE), (
            f"{path}::{name}"
        )
