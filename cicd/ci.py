"""CI awareness in one place: which CI we are in, how it folds logs, annotates errors and shows a job summary.

The environment mapping is passed in (never read deep inside), so every provider is testable from a dict.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Provider(StrEnum):
    LOCAL = "local"
    GITHUB = "github"
    GITLAB = "gitlab"
    CIRCLECI = "circleci"
    JENKINS = "jenkins"
    CODECATALYST = "codecatalyst"
    AZURE = "azure"
    BITBUCKET = "bitbucket"
    CODEBUILD = "codebuild"
    GENERIC = "ci"


# Checked in order: the first variable present names the provider.
_MARKERS: tuple[tuple[str, Provider], ...] = (
    ("GITHUB_ACTIONS", Provider.GITHUB),
    ("GITLAB_CI", Provider.GITLAB),
    ("CIRCLECI", Provider.CIRCLECI),
    ("JENKINS_URL", Provider.JENKINS),
    ("CATALYST_WORKFLOW_NAME", Provider.CODECATALYST),
    ("TF_BUILD", Provider.AZURE),
    ("BITBUCKET_BUILD_NUMBER", Provider.BITBUCKET),
    ("CODEBUILD_BUILD_ID", Provider.CODEBUILD),
    ("CI", Provider.GENERIC),
)


@dataclass(frozen=True)
class CI:
    provider: Provider
    environ: Mapping[str, str]

    @property
    def is_ci(self) -> bool:
        return self.provider is not Provider.LOCAL

    def group_start(self, title: str) -> str:
        if self.provider is Provider.GITHUB:
            return f"::group::{title}"
        if self.provider is Provider.AZURE:
            return f"##[group]{title}"
        if self.provider is Provider.GITLAB:
            key = "".join(c if c.isalnum() else "_" for c in title)[:60]
            return f"\x1b[0Ksection_start:{int(time.time())}:{key}[collapsed=true]\r\x1b[0K{title}"
        return f"--- {title}"

    def group_end(self, title: str) -> str:
        if self.provider is Provider.GITHUB:
            return "::endgroup::"
        if self.provider is Provider.AZURE:
            return "##[endgroup]"
        if self.provider is Provider.GITLAB:
            key = "".join(c if c.isalnum() else "_" for c in title)[:60]
            return f"\x1b[0Ksection_end:{int(time.time())}:{key}\r\x1b[0K"
        return f"--- end {title}"

    def error_annotation(self, title: str, message: str) -> str | None:
        flat = message.replace("\n", " ")
        if self.provider is Provider.GITHUB:
            return f"::error title={title}::{flat}"
        if self.provider is Provider.AZURE:
            return f"##vso[task.logissue type=error]{title}: {flat}"
        return None

    def summary_file(self) -> Path | None:
        """Where the provider reads a Markdown job summary, if it has one."""
        if self.provider is Provider.GITHUB and self.environ.get("GITHUB_STEP_SUMMARY"):
            return Path(self.environ["GITHUB_STEP_SUMMARY"])
        return None


def detect(environ: Mapping[str, str]) -> CI:
    for variable, provider in _MARKERS:
        value = environ.get(variable, "")
        if value and value.lower() not in ("false", "0"):
            return CI(provider, environ)
    return CI(Provider.LOCAL, environ)
