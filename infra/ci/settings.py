"""Who may deploy: the CI identities the roles of ``infra/ci`` trust, read from the CDK context key ``ci``.

Every tool is optional: a tool without settings gets no provider and no roles. Example (``cdk.json`` context, or
``-c ci='{...}'``)::

    "ci": {
      "github": {"repository": "example/apk-pipeline"},
      "gitlab": {"host": "gitlab.com", "project": "example/apk-pipeline"},
      "circleci": {"organization_id": "<uuid>", "project_id": "<uuid>"},
      "bitbucket": {"workspace": "example", "workspace_uuid": "{<uuid>}", "repository_uuid": "{<uuid>}",
                    "environment_uuids": {"dev": "{<uuid>}", "preprod": "{<uuid>}", "prod": "{<uuid>}"}},
      "azure": {"organization_id": "<uuid>", "organization": "example", "project": "apk-pipeline"},
      "codecatalyst": {"space_id": "<uuid>"},
      "jenkins": {},
      "codepipeline": {"connection_arn": "arn:aws:codeconnections:...", "repository": "example/apk-pipeline"}
    }
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Final

from cicd.config import ENVIRONMENTS
from cicd.errors import ConfigError

MAIN_BRANCH: Final = "main"


@dataclass(frozen=True)
class GitHub:
    repository: str


@dataclass(frozen=True)
class GitLab:
    project: str
    host: str = "gitlab.com"


@dataclass(frozen=True)
class CircleCI:
    organization_id: str
    project_id: str


@dataclass(frozen=True)
class Bitbucket:
    workspace: str
    workspace_uuid: str
    repository_uuid: str
    environment_uuids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Azure:
    organization_id: str
    organization: str
    project: str


@dataclass(frozen=True)
class CodeCatalyst:
    space_id: str


@dataclass(frozen=True)
class Jenkins:
    """Jenkins has no OIDC: one EC2 instance role (and profile) per environment for the agents labelled aws-<env>."""


@dataclass(frozen=True)
class CodePipeline:
    connection_arn: str
    repository: str
    branch: str = MAIN_BRANCH


@dataclass(frozen=True)
class CiSettings:
    github: GitHub | None = None
    gitlab: GitLab | None = None
    circleci: CircleCI | None = None
    bitbucket: Bitbucket | None = None
    azure: Azure | None = None
    codecatalyst: CodeCatalyst | None = None
    jenkins: Jenkins | None = None
    codepipeline: CodePipeline | None = None

    @classmethod
    def parse(cls, data: object) -> CiSettings:
        """Validated settings from the context value; :class:`ConfigError` names the bad key."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError("CDK context 'ci' must be an object", hint="see infra/ci/settings.py for an example")
        kinds = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for tool, body in data.items():
            if tool not in kinds:
                raise ConfigError(f"unknown CI tool '{tool}' in context 'ci'", hint=f"one of {', '.join(kinds)}")
            values[tool] = _section(tool, _TYPES[tool], body)
        settings = cls(**values)
        if settings.bitbucket is not None:
            missing = [e for e in ENVIRONMENTS if e not in settings.bitbucket.environment_uuids]
            if missing:
                raise ConfigError(f"ci.bitbucket.environment_uuids lacks {', '.join(missing)}")
        return settings


_TYPES: Final[dict[str, type]] = {
    "github": GitHub,
    "gitlab": GitLab,
    "circleci": CircleCI,
    "bitbucket": Bitbucket,
    "azure": Azure,
    "codecatalyst": CodeCatalyst,
    "jenkins": Jenkins,
    "codepipeline": CodePipeline,
}


def _section(tool: str, kind: type, body: object) -> object:
    if not isinstance(body, dict):
        raise ConfigError(f"ci.{tool} must be an object")
    known = {f.name: f for f in fields(kind)}
    for key, value in body.items():
        if key not in known:
            raise ConfigError(f"unknown key ci.{tool}.{key}", hint=f"valid keys: {', '.join(known) or 'none'}")
        if key == "environment_uuids":
            if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
                raise ConfigError(f"ci.{tool}.{key} must map environments to UUIDs")
        elif not isinstance(value, str) or not value.strip():
            raise ConfigError(f"ci.{tool}.{key} must be a non-empty string")
    required = [n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING and n not in body]
    if required:
        raise ConfigError(f"ci.{tool} needs {', '.join(required)}")
    return kind(**body)
