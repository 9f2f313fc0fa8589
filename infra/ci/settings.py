"""Who may deploy: the CI identities the roles of ``infra/ci`` trust, read from the CDK context key ``ci``.

Every tool is optional: a tool without settings gets no provider and no roles. Example (``cdk.json`` context, or
``-c ci='{...}'``)::

    "ci": {
      "github": {"repository": "example/apk-pipeline"},
      "gitlab": {"host": "gitlab.com", "project": "example/apk-pipeline"},
      "circleci": {"organization_id": "<uuid>", "project_id": "<uuid>"},
      "bitbucket": {"workspace": "example", "workspace_uuid": "{<uuid>}", "repository_uuid": "{<uuid>}",
                    "environment_uuids": {"dev": "{<uuid>}", "preprod": "{<uuid>}", "prod": "{<uuid>}",
                                          "prod-change-set": "{<uuid>}"}},
      "azure": {"organization_id": "<uuid>", "tenant_id": "<uuid>",
                "subjects": {"dev": "/eid1/c/pub/t/<tenant>/a/<app>/sc/<organization id>/<connection id of aws-dev>",
                             "preprod": "...", "prod": "...", "prod-change-set": "..."}},
      "codecatalyst": {"space_id": "<uuid>", "project_id": "<uuid>"},
      "jenkins": {"issuer": "https://jenkins.example.com/oidc",
                  "job": "https://jenkins.example.com/job/apk-pipeline/job/main/"},
      "codepipeline": {"connection_arn": "arn:aws:codeconnections:...", "repository": "example/apk-pipeline"},
      "bootstrap_qualifier": "hnb659fds"
    }

Azure DevOps: a workload-identity service connection made today uses the Microsoft Entra issuer
(``https://login.microsoftonline.com/<tenant>/v2.0``) and a subject ``/eid1/c/pub/t/.../sc/<organization id>/<service
connection id>``; copy each connection's *Subject identifier* (``aws-<env>``) from its page into ``subjects``. A
connection still on the Azure DevOps issuer (multitenant apps and non-public clouds keep it) is modelled with
``"issuer": "vstoken", "organization": ..., "project": ...`` (subject ``sc://ORG/PROJECT/aws-<env>``).

The approval job's identity ``prod-change-set`` (the read-only role that shows prod's change set): Bitbucket's
deployment environment ``prod-change-set`` and Azure's service connection ``aws-prod-change-set`` are optional
keys of ``environment_uuids`` and ``subjects`` (without one, that tool gets no change-set role); the other tools
derive it (GitLab and Jenkins: audience ``apk-pipeline-prod-change-set``; Azure's ``vstoken`` issuer: subject
``sc://ORG/PROJECT/aws-prod-change-set``).

Jenkins: the ``oidc-provider`` plugin's issuer (by default ``<Jenkins URL>/oidc`` for root credentials) and the ``sub``
its default claim template gives the main branch job's builds: that job's URL.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Final, Literal

from cicd.config import ENVIRONMENTS
from cicd.errors import ConfigError

MAIN_BRANCH: Final = "main"
DEFAULT_QUALIFIER: Final = "hnb659fds"
"""The CDK bootstrap qualifier (``cdk bootstrap`` default); the deploy roles may assume only that bootstrap's roles."""
ENTRA_SUBJECT_PREFIX: Final = "/eid1/c/pub/t/"
CHANGE_SET: Final = "prod-change-set"
"""The approval job's identity: it shows what prod would get (``cdk diff``) and changes nothing."""
IDENTITIES: Final = (*ENVIRONMENTS, CHANGE_SET)
"""Every identity a CI role may stand for: an environment's deploy job, or the approval job's read-only one."""


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

    @property
    def identities(self) -> tuple[str, ...]:
        """Every environment, and ``prod-change-set`` when its deployment environment is given."""
        return tuple(i for i in IDENTITIES if i in self.environment_uuids)


@dataclass(frozen=True)
class Azure:
    """One workload-identity service connection ``aws-<env>`` per environment (see the module docstring)."""

    organization_id: str
    tenant_id: str = ""
    subjects: dict[str, str] = field(default_factory=dict)
    issuer: Literal["entra", "vstoken"] = "entra"
    organization: str = ""
    project: str = ""

    def subject(self, env: str) -> str:
        if self.issuer == "vstoken":
            return f"sc://{self.organization}/{self.project}/aws-{env}"
        return self.subjects[env]

    @property
    def identities(self) -> tuple[str, ...]:
        """Every environment, and ``prod-change-set`` when its connection's subject is known."""
        return tuple(i for i in IDENTITIES if self.issuer == "vstoken" or i in self.subjects)

    @property
    def host(self) -> str:
        if self.issuer == "vstoken":
            return f"vstoken.dev.azure.com/{self.organization_id}"
        return f"login.microsoftonline.com/{self.tenant_id}/v2.0"


@dataclass(frozen=True)
class CodeCatalyst:
    space_id: str
    project_id: str = "*"
    """Narrows ``aws:SourceArn`` to one project of the space (``*``: every project)."""


@dataclass(frozen=True)
class Jenkins:
    """The ``oidc-provider`` plugin: its issuer URL and the ``sub`` of the main branch job's tokens (the job URL)."""

    issuer: str
    job: str

    @property
    def host(self) -> str:
        return self.issuer.removeprefix("https://").rstrip("/")


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
    bootstrap_qualifier: str = DEFAULT_QUALIFIER

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
            if tool == "bootstrap_qualifier":
                if not isinstance(body, str) or not body.isalnum():
                    raise ConfigError("ci.bootstrap_qualifier must be the CDK bootstrap qualifier (letters, digits)")
                values[tool] = body
                continue
            values[tool] = _section(tool, _TYPES[tool], body)
        settings = cls(**values)
        if settings.bitbucket is not None:
            _every_environment("bitbucket.environment_uuids", settings.bitbucket.environment_uuids)
        if settings.azure is not None:
            _check_azure(settings.azure)
        if settings.jenkins is not None and not settings.jenkins.issuer.startswith("https://"):
            raise ConfigError("ci.jenkins.issuer must be the plugin's https issuer URL")
        return settings


def _every_environment(key: str, values: dict[str, str]) -> None:
    missing = [e for e in ENVIRONMENTS if e not in values]
    if missing:
        raise ConfigError(f"ci.{key} lacks {', '.join(missing)}")
    unknown = [k for k in values if k not in IDENTITIES]
    if unknown:
        raise ConfigError(f"ci.{key} has unknown keys {', '.join(unknown)}", hint=f"one of {', '.join(IDENTITIES)}")


def _check_azure(az: Azure) -> None:
    if az.issuer == "vstoken":
        if not (az.organization and az.project):
            raise ConfigError("ci.azure with issuer vstoken needs organization and project")
        return
    if az.issuer != "entra":
        raise ConfigError("ci.azure.issuer is entra (the default) or vstoken")
    if not az.tenant_id:
        raise ConfigError("ci.azure needs tenant_id (the Microsoft Entra issuer is per tenant)")
    _every_environment("azure.subjects", az.subjects)
    for env, subject in az.subjects.items():
        if not (subject.startswith(ENTRA_SUBJECT_PREFIX) and f"/sc/{az.organization_id}/" in subject):
            raise ConfigError(
                f"ci.azure.subjects.{env} is not a service connection subject of organization {az.organization_id}",
                hint=f"copy the connection's Subject identifier: {ENTRA_SUBJECT_PREFIX}.../sc/<organization id>/<id>",
            )
    if len(set(az.subjects.values())) != len(az.subjects):
        raise ConfigError("ci.azure.subjects must name a different service connection per environment")


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
        if key in ("environment_uuids", "subjects"):
            if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
                raise ConfigError(f"ci.{tool}.{key} must map environments to strings")
        elif not isinstance(value, str) or not value.strip():
            raise ConfigError(f"ci.{tool}.{key} must be a non-empty string")
    required = [n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING and n not in body]
    if required:
        raise ConfigError(f"ci.{tool} needs {', '.join(required)}")
    return kind(**body)
