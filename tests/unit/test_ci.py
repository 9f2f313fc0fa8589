"""CI detection and each provider's way of folding logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cicd.ci import Provider, detect


@pytest.mark.parametrize(
    ("environ", "provider"),
    [
        ({}, Provider.LOCAL),
        ({"GITHUB_ACTIONS": "true", "CI": "true"}, Provider.GITHUB),
        ({"GITLAB_CI": "true"}, Provider.GITLAB),
        ({"CIRCLECI": "true"}, Provider.CIRCLECI),
        ({"JENKINS_URL": "http://127.0.0.1:8080/"}, Provider.JENKINS),
        ({"CATALYST_WORKFLOW_NAME": "pipeline"}, Provider.CODECATALYST),
        ({"TF_BUILD": "True"}, Provider.AZURE),
        ({"BITBUCKET_BUILD_NUMBER": "7"}, Provider.BITBUCKET),
        ({"CODEBUILD_BUILD_ID": "p:1"}, Provider.CODEBUILD),
        ({"CI": "true"}, Provider.GENERIC),
        ({"CI": "false"}, Provider.LOCAL),
    ],
)
def test_detect(environ: dict[str, str], provider: Provider) -> None:
    assert detect(environ).provider is provider


def test_folding_per_provider(tmp_path: Path) -> None:
    gh = detect({"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp_path / "s.md")})
    assert gh.group_start("lint") == "::group::lint" and gh.group_end("lint") == "::endgroup::"
    assert gh.summary_file() == tmp_path / "s.md"
    assert gh.error_annotation("lint", "a\nb") == "::error title=lint::a b"
    gl = detect({"GITLAB_CI": "true"})
    assert "section_start:" in gl.group_start("unit-test:dev") and "unit_test_dev" in gl.group_start("unit-test:dev")
    assert "section_end:" in gl.group_end("unit-test:dev")
    az = detect({"TF_BUILD": "True"})
    assert az.group_start("x") == "##[group]x" and az.group_end("x") == "##[endgroup]"
    assert detect({"CIRCLECI": "true"}).summary_file() is None
