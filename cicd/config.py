"""Environments and targets as data: the table the CDK app, the deploy steps and the CI adapters read.

The environments are exactly ``dev``, ``preprod`` and ``prod``, in promotion order. Each is a frozen
:class:`Environment`; what actually gets built also depends on the *target*:

* ``local`` - an embedded moto server on ``localhost``, deployed with the real CDK CLI.
* ``aws``   - a real AWS account; needs an account id and a region per environment.

moto's CloudFormation cannot create every resource type, so what it cannot create is a per-target switch rather
than an ``if target == "local"`` scattered through the CDK code:

==============  =====  ===  =====================================================================
switch          local  aws  why
==============  =====  ===  =====================================================================
``cloudfront``  no     yes  moto has no CloudFront: local keeps only the private web bucket
``codedeploy``  no     yes  moto has no CodeDeploy: no Lambda alias + canary traffic shifting
``alarms``      no     yes  moto's CloudFormation silently skips ``AWS::CloudWatch::Alarm``
``pinned_env``  no     yes  local stacks are environment-agnostic (account/region come from moto)
==============  =====  ===  =====================================================================

The defaults below are overridden from ``pyproject.toml``::

    [tool.cicd]
    approval_before_prod = true        # or the short form: approval = true
    local_port = 4566
    local_region = "us-east-1"

    [tool.cicd.environments.prod]
    account = "123456789012"
    region = "eu-central-1"
    log_retention_days = 365

Every key is validated: an unknown key, a wrong type or a bad value is a :class:`ConfigError` (exit 2) naming the
exact key and how to fix it. This module imports only the standard library so every task can load it quickly.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final

from cicd.errors import ConfigError, UsageError

ENVIRONMENTS: Final = ("dev", "preprod", "prod")
"""The environments, in promotion order."""

TARGETS: Final = ("local", "aws")
DEFAULT_TARGET: Final = "local"

APP_NAME: Final = "LatestApk"
"""Prefix of the CloudFormation stack names (``LatestApk-dev``)."""
PROJECT: Final = "apk-pipeline"
"""Value of the ``project`` tag on every resource."""
SERVICE_NAME: Final = "latest-apk"
"""The Lambda's ``SERVICE_NAME`` (logs, metrics, ``/health``)."""
APK_PREFIX: Final = "apk/"
"""Key prefix of the APK builds in the APK bucket: ``apk/<version>/<file>.apk`` and the pointer ``apk/LATEST``."""

# Valid values of CloudWatch Logs retention (days), as the service accepts them.
# fmt: off
LOG_RETENTION_DAYS: Final = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)
# fmt: on
# Predefined CodeDeploy configurations for Lambda (``AllAtOnce`` means no traffic shifting).
DEPLOYMENT_CONFIGS: Final = (
    "AllAtOnce",
    "Canary10Percent5Minutes",
    "Canary10Percent10Minutes",
    "Canary10Percent15Minutes",
    "Canary10Percent30Minutes",
    "Linear10PercentEvery1Minute",
    "Linear10PercentEvery2Minutes",
    "Linear10PercentEvery3Minutes",
    "Linear10PercentEvery10Minutes",
)
REMOVAL_POLICIES: Final = ("destroy", "retain")
PRESIGNED_URL_MAX_S: Final = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days

ACCOUNT_RE: Final = re.compile(r"^\d{12}$")
BUCKET_RE: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION_RE: Final = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")


@dataclass(frozen=True)
class Target:
    """Where the stacks are deployed, and what that place can create (see the module table)."""

    name: str
    cloudfront: bool
    codedeploy: bool
    alarms: bool
    pinned_env: bool

    @property
    def is_local(self) -> bool:
        return self.name == "local"


LOCAL: Final = Target("local", cloudfront=False, codedeploy=False, alarms=False, pinned_env=False)
AWS: Final = Target("aws", cloudfront=True, codedeploy=True, alarms=True, pinned_env=True)
_TARGETS: Final = {t.name: t for t in (LOCAL, AWS)}


def target(name: str) -> Target:
    """The :class:`Target` called ``name``; :class:`UsageError` naming the choices otherwise."""
    try:
        return _TARGETS[name]
    except KeyError:
        raise UsageError(
            f"unknown target '{name}': choose one of {', '.join(TARGETS)}",
            hint="pass --target local|aws or set CICD_TARGET",
        ) from None


@dataclass(frozen=True)
class Environment:
    """One row of the environment table. Field names are the ``[tool.cicd.environments.<name>]`` keys."""

    name: str
    account: str | None = None
    region: str | None = "eu-west-1"
    log_retention_days: int = 14
    alarms: bool = True
    alarm_lambda_errors: int = 1
    """Lambda ``Errors`` (sum over one minute) at or above which the alarm fires."""
    alarm_api_5xx: int = 1
    """API Gateway ``5XXError`` (sum over one minute) at or above which the alarm fires."""
    deployment: str = "AllAtOnce"
    """CodeDeploy configuration; anything but ``AllAtOnce`` adds a Lambda alias + canary on the aws target."""
    url_ttl_default: int = 300
    url_ttl_max: int = 3600
    removal_policy: str = "destroy"
    noncurrent_version_days: int = 30
    """Days after which superseded object versions in the buckets are deleted."""
    throttle_rate: int = 10
    """API Gateway stage throttling: steady-state requests per second."""
    throttle_burst: int = 20
    reserved_concurrency: int | None = None
    """Reserved Lambda concurrency. Off by default: new accounts may have a concurrency quota of 10, below the
    100 unreserved executions AWS requires, so reserving would fail there; API throttling bounds the load instead."""
    web_hosting: bool = True
    """Host the Flutter web build (private bucket, plus CloudFront on targets that have it)."""
    api_cloudwatch_role: bool = False
    """Let this stack set the account-wide API Gateway CloudWatch Logs role (aws target only). API Gateway
    access/execution logging needs that role once per account and region; set this on one environment per
    account, or create the role outside this project."""
    state_bucket: str | None = None
    """The S3 bucket keeping this environment's pipeline state on the aws target (deploy history, the artifacts
    it ran, approvals): default ``latestapk-<env>-state-<account>-<region>``, created on first use (cicd/state.py)."""

    @property
    def stack_name(self) -> str:
        """The CloudFormation stack name, e.g. ``LatestApk-dev``."""
        return f"{APP_NAME}-{self.name}"

    @property
    def stack_selector(self) -> str:
        """The pattern ``cdk deploy --app <assembly>`` selects this environment's stack with (``dev/LatestApk``):
        each environment is a CDK Stage named after it holding one stack with the id ``LatestApk``."""
        return f"{self.name}/{APP_NAME}"

    @property
    def canary(self) -> bool:
        return self.deployment != "AllAtOnce"

    def alarms_on(self, tgt: Target) -> bool:
        """Alarms are created for this environment on ``tgt``."""
        return self.alarms and tgt.alarms

    def canary_on(self, tgt: Target) -> bool:
        """A Lambda alias and a CodeDeploy deployment group are created for this environment on ``tgt``."""
        return self.canary and tgt.codedeploy

    def cloudfront_on(self, tgt: Target) -> bool:
        return self.web_hosting and tgt.cloudfront


DEFAULT_ENVIRONMENTS: Final = (
    Environment("dev", log_retention_days=14, alarms=False, removal_policy="destroy", noncurrent_version_days=7),
    Environment("preprod", log_retention_days=30, alarms=True, removal_policy="retain", noncurrent_version_days=30),
    Environment(
        "prod",
        log_retention_days=365,
        alarms=True,
        deployment="Canary10Percent5Minutes",
        removal_policy="retain",
        noncurrent_version_days=90,
        throttle_rate=50,
        throttle_burst=100,
    ),
)


@dataclass(frozen=True)
class PipelineConfig:
    """The whole configuration: the environment table and the pipeline switches."""

    environments: tuple[Environment, ...] = DEFAULT_ENVIRONMENTS
    approval_before_prod: bool = False
    """Stop for a manual approval before deploying to prod (CI tools that support it render a gate)."""
    local_port: int = 4566
    """Port of the embedded moto server of the local target."""
    local_region: str = "us-east-1"
    """Region the local target's clients use (local stacks themselves are environment-agnostic)."""

    def environment(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        raise UsageError(f"unknown environment '{name}': choose one of {', '.join(self.names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(env.name for env in self.environments)


def require_aws(env: Environment) -> tuple[str, str]:
    """``(account, region)`` of ``env`` for the aws target; :class:`ConfigError` when one is missing."""
    for key, value in (("account", env.account), ("region", env.region)):
        if not value:
            example = "123456789012" if key == "account" else "eu-west-1"
            raise ConfigError(
                f"environment '{env.name}' has no {key} for the aws target: set "
                f'[tool.cicd.environments.{env.name}] {key} = "..." in pyproject.toml',
                hint=f'e.g. {key} = "{example}"',
            )
    if env.account is None or env.region is None:  # unreachable: the loop above raised
        raise ConfigError(f"environment '{env.name}' has no account or region for the aws target")
    return env.account, env.region


# --- loading ------------------------------------------------------------------------------------------------

_TOP_KEYS: Final = {"approval_before_prod", "approval", "local_port", "local_region", "environments"}


def load_config(root: Path) -> PipelineConfig:
    """The defaults overridden by ``[tool.cicd]`` in ``root/pyproject.toml`` (defaults when there is none)."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return PipelineConfig()
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{pyproject} is not valid TOML: {err}", hint="fix the syntax at that line") from None
    tool = data.get("tool", {})
    table = tool.get("cicd", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError("[tool.cicd] must be a table", hint="write it as a [tool.cicd] section")
    return parse_config(table)


def parse_config(table: dict[str, Any]) -> PipelineConfig:
    """Build a :class:`PipelineConfig` from the contents of ``[tool.cicd]`` (validated)."""
    for key in table:
        if key not in _TOP_KEYS:
            raise ConfigError(
                f"unknown key [tool.cicd] {key}",
                hint=f"valid keys: {', '.join(sorted(_TOP_KEYS - {'approval'}))}",
            )
    if "approval" in table and "approval_before_prod" in table:
        raise ConfigError(
            "[tool.cicd] sets both approval and approval_before_prod",
            hint="keep one of them (approval is the short form)",
        )
    config = PipelineConfig()
    approval_key = "approval" if "approval" in table else "approval_before_prod"
    if approval_key in table:
        config = replace(config, approval_before_prod=_bool(table[approval_key], f"[tool.cicd] {approval_key}"))
    if "local_port" in table:
        port = _int(table["local_port"], "[tool.cicd] local_port")
        if not 1 <= port <= 65535:
            raise ConfigError(
                f"[tool.cicd] local_port must be between 1 and 65535, got {port}", hint="e.g. local_port = 4566"
            )
        config = replace(config, local_port=port)
    if "local_region" in table:
        config = replace(config, local_region=_region(table["local_region"], "[tool.cicd] local_region"))
    overrides = table.get("environments", {})
    if not isinstance(overrides, dict):
        raise ConfigError(
            "[tool.cicd] environments must be a table",
            hint="write one [tool.cicd.environments.<name>] section per environment",
        )
    for name in overrides:
        if name not in ENVIRONMENTS:
            raise ConfigError(
                f"unknown environment [tool.cicd.environments.{name}]",
                hint=f"environments are exactly {', '.join(ENVIRONMENTS)}",
            )
    envs = tuple(_environment(env, overrides.get(env.name)) for env in config.environments)
    return replace(config, environments=envs)


_ENV_FIELDS: Final = {f.name: f for f in fields(Environment) if f.name != "name"}


def _environment(base: Environment, table: object) -> Environment:
    if table is None:
        return base
    section = f"[tool.cicd.environments.{base.name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{section} must be a table", hint=f"write it as a {section} section")
    changes: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{section} {key}"
        if key not in _ENV_FIELDS:
            raise ConfigError(f"unknown key {where}", hint=f"valid keys: {', '.join(sorted(_ENV_FIELDS))}")
        changes[key] = _field_value(key, value, where)
    env = replace(base, **changes)
    _check_environment(env, section)
    return env


def _field_value(key: str, value: object, where: str) -> object:  # noqa: PLR0911 - one branch per kind of key
    if key == "account":
        text = _str(value, where)
        if not ACCOUNT_RE.match(text):
            raise ConfigError(
                f"{where} must be a 12-digit AWS account id, got '{text}'", hint=f'e.g. {key} = "123456789012"'
            )
        return text
    if key == "region":
        return _region(value, where)
    if key == "state_bucket":
        text = _str(value, where)
        if not BUCKET_RE.match(text):
            raise ConfigError(f"{where} must be an S3 bucket name, got '{text}'", hint=f'e.g. {key} = "my-state"')
        return text
    if key in ("alarms", "web_hosting", "api_cloudwatch_role"):
        return _bool(value, where)
    if key == "deployment":
        return _choice(value, where, DEPLOYMENT_CONFIGS)
    if key == "removal_policy":
        return _choice(value, where, REMOVAL_POLICIES)
    if key == "log_retention_days":
        days = _int(value, where)
        if days not in LOG_RETENTION_DAYS:
            raise ConfigError(
                f"{where} must be a CloudWatch Logs retention period, got {days}",
                hint=f"one of {', '.join(map(str, LOG_RETENTION_DAYS))}",
            )
        return days
    number = _int(value, where)
    if number < 1:  # a threshold of 0 would alarm forever; a rate, TTL or concurrency of 0 means "off" elsewhere
        raise ConfigError(f"{where} must be at least 1, got {number}", hint=f"e.g. {key} = 10")
    return number


def _check_environment(env: Environment, section: str) -> None:
    if env.url_ttl_max > PRESIGNED_URL_MAX_S:
        raise ConfigError(
            f"{section} url_ttl_max must be at most {PRESIGNED_URL_MAX_S} (7 days), got {env.url_ttl_max}",
            hint="presigned URLs cannot live longer; e.g. url_ttl_max = 3600",
        )
    if env.url_ttl_default > env.url_ttl_max:
        raise ConfigError(
            f"{section} url_ttl_default ({env.url_ttl_default}) is above url_ttl_max ({env.url_ttl_max})",
            hint="lower url_ttl_default or raise url_ttl_max",
        )
    if env.throttle_burst < env.throttle_rate:
        raise ConfigError(
            f"{section} throttle_burst ({env.throttle_burst}) is below throttle_rate ({env.throttle_rate})",
            hint="the burst must be at least the steady-state rate",
        )


def _type_error(where: str, expected: str, value: object) -> ConfigError:
    return ConfigError(
        f"{where} must be {expected}, got {type(value).__name__} {value!r}",
        hint="fix the value's type in pyproject.toml",
    )


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _type_error(where, "a string", value)
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _type_error(where, "true or false", value)
    return value


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(where, "an integer", value)
    return value


def _choice(value: object, where: str, choices: tuple[str, ...]) -> str:
    text = _str(value, where)
    if text not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, got '{text}'", hint="pick one of those")
    return text


def _region(value: object, where: str) -> str:
    text = _str(value, where)
    if not REGION_RE.match(text):
        key = where.rsplit(" ", 1)[-1]
        raise ConfigError(f"{where} is not an AWS region name: '{text}'", hint=f'e.g. {key} = "eu-west-1"')
    return text


__all__ = [
    "APK_PREFIX",
    "APP_NAME",
    "AWS",
    "DEFAULT_TARGET",
    "ENVIRONMENTS",
    "LOCAL",
    "PROJECT",
    "SERVICE_NAME",
    "TARGETS",
    "Environment",
    "PipelineConfig",
    "Target",
    "load_config",
    "parse_config",
    "require_aws",
    "target",
]
