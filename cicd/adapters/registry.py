"""The adapters: one renderer module per CI tool, what validates it, and the line budget it must stay under."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cicd.adapters import azure, bitbucket, circleci, codebuild, codecatalyst, github, gitlab, jenkins
from cicd.adapters.common import Rendered
from cicd.adapters.facts import AdapterFacts, Budget
from cicd.adapters.plan import Plan

OUT_DIR: Final = "ci-adapters"


@dataclass(frozen=True)
class Adapter:
    name: str
    title: str
    main_file: str
    render: Callable[[Plan], list[Rendered]]
    facts: Callable[[dict[str, str]], AdapterFacts]
    checks: tuple[tuple[str, str], ...]
    """``(validator, file)`` pairs; the file (a glob) is relative to ``ci-adapters/<name>/``."""
    budget: Budget
    local_runner: str | None = None

    @property
    def folder(self) -> str:
        return f"{OUT_DIR}/{self.name}"

    def check_pairs(self, folder: Path) -> list[tuple[str, Path]]:
        """``(validator, path)`` for every file under ``folder`` that a validator applies to."""
        pairs: list[tuple[str, Path]] = []
        for validator, pattern in self.checks:
            matches = sorted(folder.glob(pattern)) if "*" in pattern else [folder / pattern]
            pairs.extend((validator, path) for path in matches or [folder / pattern])
        return pairs


ADAPTERS: Final[tuple[Adapter, ...]] = (
    Adapter(
        "github",
        "GitHub Actions",
        github.PATH,
        github.render,
        github.facts,
        (("schema vendor.github-workflows", github.PATH), ("actionlint", github.PATH)),
        Budget("projen-pipelines' generated GitHub workflow", 214),
        local_runner="act",
    ),
    Adapter(
        "gitlab",
        "GitLab CI",
        gitlab.PATH,
        gitlab.render,
        gitlab.facts,
        (("schema vendor.gitlab-ci", gitlab.PATH),),
        Budget("projen-pipelines' generated .gitlab-ci.yml", 159),
        local_runner="gitlab-ci-local",
    ),
    Adapter(
        "circleci",
        "CircleCI",
        circleci.PATH,
        circleci.render,
        circleci.facts,
        (("schema vendor.circle-ci", circleci.PATH), ("circleci-config-parser", circleci.PATH)),
        Budget("the reference architecture's CircleCI example", None),
    ),
    Adapter(
        "bitbucket",
        "Bitbucket Pipelines",
        bitbucket.PATH,
        bitbucket.render,
        bitbucket.facts,
        (("schema vendor.bitbucket-pipelines", bitbucket.PATH),),
        Budget("no generated anchor", None),
        local_runner="bb-run",
    ),
    Adapter(
        "azure",
        "Azure Pipelines",
        azure.PATH,
        azure.render,
        azure.facts,
        (("schema vendor.azure-pipelines", azure.PATH),),
        Budget("no generated anchor", None),
    ),
    Adapter(
        "codecatalyst",
        "Amazon CodeCatalyst",
        codecatalyst.PR_PATH,
        codecatalyst.render,
        codecatalyst.facts,
        (
            ("codecatalyst-workflows-sdk", codecatalyst.PR_PATH),
            ("codecatalyst-workflows-sdk", codecatalyst.MAIN_PATH),
        ),
        Budget("the reference architecture's CodeCatalyst example", None),
    ),
    Adapter(
        "jenkins",
        "Jenkins",
        jenkins.PATH,
        jenkins.render,
        jenkins.facts,
        (("npm-groovy-lint", jenkins.PATH),),
        Budget("no generated anchor", None),
    ),
    Adapter(
        "codebuild",
        "AWS CodePipeline + CodeBuild",
        codebuild.LAYOUT,
        codebuild.render,
        codebuild.facts,
        (("buildspec schema (repo)", f"{codebuild.FOLDER}/*.yml"),),
        Budget("no generated anchor", None),
    ),
)
BY_NAME: Final = {a.name: a for a in ADAPTERS}
