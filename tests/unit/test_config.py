"""The environment table: defaults, per-target switches, [tool.cicd] overrides and their validation."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from cicd import config
from cicd.config import AWS, ENVIRONMENTS, LOCAL, Target, load_config, parse_config, require_aws
from cicd.errors import EXIT_USAGE, ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[2]


def write_pyproject(tmp_path: Path, body: str) -> Path:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.0.0"\n\n' + body)
    return tmp_path


def config_error(body: str, tmp_path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write_pyproject(tmp_path, body))
    assert info.value.return_code == EXIT_USAGE == 2
    assert "\n" not in str(info.value)
    return info.value


# --- defaults -------------------------------------------------------------------------------------------------


def test_environments_are_exactly_dev_preprod_prod_in_promotion_order() -> None:
    assert ENVIRONMENTS == ("dev", "preprod", "prod")
    assert config.PipelineConfig().names == ENVIRONMENTS


def test_defaults_per_environment() -> None:
    cfg = config.PipelineConfig()
    dev, preprod, prod = (cfg.environment(n) for n in ENVIRONMENTS)
    assert [e.stack_name for e in (dev, preprod, prod)] == ["LatestApk-dev", "LatestApk-preprod", "LatestApk-prod"]
    assert dev.stack_selector == "dev/LatestApk"
    assert all(e.account is None and e.region == "eu-west-1" for e in (dev, preprod, prod))
    assert (dev.removal_policy, prod.removal_policy) == ("destroy", "retain")
    assert (dev.deployment, preprod.deployment, prod.deployment) == (
        "AllAtOnce",
        "AllAtOnce",
        "Canary10Percent5Minutes",
    )
    assert not dev.alarms and preprod.alarms and prod.alarms
    assert prod.log_retention_days >= dev.log_retention_days
    assert all((e.url_ttl_default, e.url_ttl_max) == (300, 3600) for e in (dev, preprod, prod))
    assert cfg.approval_before_prod is False
    assert cfg.local_port == 4566


def test_environment_is_frozen() -> None:
    env = config.PipelineConfig().environment("dev")
    with pytest.raises(FrozenInstanceError):
        env.account = "123456789012"  # type: ignore[misc]  # assigning to a frozen field is the point


@pytest.mark.parametrize(
    ("tgt", "cloudfront", "codedeploy", "alarms", "pinned"),
    [(LOCAL, False, False, False, False), (AWS, True, True, True, True)],
)
def test_target_switches_match_the_documented_table(
    tgt: Target, cloudfront: bool, codedeploy: bool, alarms: bool, pinned: bool
) -> None:
    assert (tgt.cloudfront, tgt.codedeploy, tgt.alarms, tgt.pinned_env) == (cloudfront, codedeploy, alarms, pinned)
    table = config.__doc__ or ""
    for switch, on in (("cloudfront", cloudfront), ("codedeploy", codedeploy), ("alarms", alarms)):
        row = next(line for line in table.splitlines() if line.startswith(f"``{switch}``"))
        column = row.split()[1 if tgt.name == "local" else 2]
        assert column == ("yes" if on else "no"), row


def test_effective_features_combine_environment_and_target() -> None:
    cfg = config.PipelineConfig()
    dev, prod = cfg.environment("dev"), cfg.environment("prod")
    assert prod.canary_on(AWS) and not prod.canary_on(LOCAL)
    assert not dev.canary_on(AWS)
    assert prod.alarms_on(AWS) and not prod.alarms_on(LOCAL) and not dev.alarms_on(AWS)
    assert dev.cloudfront_on(AWS) and not dev.cloudfront_on(LOCAL)


def test_target_lookup() -> None:
    assert config.target("local") is LOCAL and config.target("aws") is AWS
    with pytest.raises(UsageError, match=r"unknown target 'gcp': choose one of local, aws") as info:
        config.target("gcp")
    assert info.value.return_code == 2


def test_unknown_environment_names_the_valid_choices() -> None:
    with pytest.raises(UsageError) as info:
        config.PipelineConfig().environment("qa")
    assert info.value.return_code == 2
    assert "'qa'" in str(info.value) and "dev, preprod, prod" in str(info.value)


# --- loading --------------------------------------------------------------------------------------------------


def test_missing_pyproject_gives_the_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path) == config.PipelineConfig()


@pytest.mark.component  # the project's own pyproject.toml
def test_project_pyproject_loads() -> None:
    assert load_config(ROOT).names == ENVIRONMENTS


def test_overrides_apply_to_their_environment_only(tmp_path: Path) -> None:
    cfg = load_config(
        write_pyproject(
            tmp_path,
            """
[tool.cicd]
approval = true
local_port = 5000
local_region = "eu-central-1"

[tool.cicd.environments.prod]
account = "123456789012"
region = "eu-central-1"
log_retention_days = 731
deployment = "Linear10PercentEvery1Minute"
throttle_rate = 100
throttle_burst = 200
reserved_concurrency = 20

[tool.cicd.environments.dev]
alarms = true
web_hosting = false
url_ttl_default = 60
url_ttl_max = 600
""",
        )
    )
    assert cfg.approval_before_prod is True
    assert (cfg.local_port, cfg.local_region) == (5000, "eu-central-1")
    prod = cfg.environment("prod")
    assert (prod.account, prod.region, prod.log_retention_days) == ("123456789012", "eu-central-1", 731)
    assert (prod.deployment, prod.throttle_rate, prod.throttle_burst) == ("Linear10PercentEvery1Minute", 100, 200)
    assert prod.reserved_concurrency == 20
    dev = cfg.environment("dev")
    assert dev.alarms and not dev.web_hosting and (dev.url_ttl_default, dev.url_ttl_max) == (60, 600)
    assert dev.account is None
    assert cfg.environment("preprod") == config.PipelineConfig().environment("preprod")


def test_long_form_of_the_approval_switch(tmp_path: Path) -> None:
    cfg = load_config(write_pyproject(tmp_path, "[tool.cicd]\napproval_before_prod = true\n"))
    assert cfg.approval_before_prod is True


def test_require_aws_returns_account_and_region(tmp_path: Path) -> None:
    cfg = load_config(write_pyproject(tmp_path, '[tool.cicd.environments.prod]\naccount = "123456789012"\n'))
    assert require_aws(cfg.environment("prod")) == ("123456789012", "eu-west-1")


def test_require_aws_without_account_says_what_to_set() -> None:
    with pytest.raises(ConfigError) as info:
        require_aws(config.PipelineConfig().environment("prod"))
    assert info.value.return_code == 2
    assert info.value.message == (
        "environment 'prod' has no account for the aws target: set [tool.cicd.environments.prod] "
        'account = "..." in pyproject.toml'
    )


def test_require_aws_without_region() -> None:
    env = config.Environment("preprod", account="123456789012", region=None)
    with pytest.raises(ConfigError, match=r"'preprod' has no region .* \[tool\.cicd\.environments\.preprod\] region"):
        require_aws(env)


# --- malformed tables -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("[tool.cicd]\napprovals = true\n", ["[tool.cicd] approvals", "approval_before_prod"]),
        ('[tool.cicd]\napproval = "yes"\n', ["[tool.cicd] approval", "true or false", "str"]),
        ("[tool.cicd]\napproval = true\napproval_before_prod = true\n", ["approval", "approval_before_prod"]),
        ("[tool.cicd]\nlocal_port = 70000\n", ["[tool.cicd] local_port", "65535"]),
        ('[tool.cicd]\nlocal_port = "4566"\n', ["[tool.cicd] local_port", "an integer"]),
        ('[tool.cicd]\nlocal_region = "moon"\n', ["[tool.cicd] local_region", 'local_region = "eu-west-1"']),
        ("[tool.cicd]\nenvironments = 3\n", ["[tool.cicd] environments", "table"]),
        ('[tool.cicd.environments.qa]\naccount = "123456789012"\n', ["[tool.cicd.environments.qa]", "dev"]),
        (
            '[tool.cicd.environments.prod]\naccout = "123456789012"\n',
            ["[tool.cicd.environments.prod] accout", "account"],
        ),
        (
            "[tool.cicd.environments.prod]\naccount = 123456789012\n",
            ["[tool.cicd.environments.prod] account", "a string", "int"],
        ),
        (
            '[tool.cicd.environments.prod]\naccount = "12345"\n',
            ["[tool.cicd.environments.prod] account", "12-digit", "'12345'", 'account = "123456789012"'],
        ),
        (
            '[tool.cicd.environments.dev]\nregion = "Europe"\n',
            ["[tool.cicd.environments.dev] region", "'Europe'", 'region = "eu-west-1"'],
        ),
        (
            "[tool.cicd.environments.dev]\nlog_retention_days = 10\n",
            ["[tool.cicd.environments.dev] log_retention_days", "10", "14"],
        ),
        (
            "[tool.cicd.environments.dev]\nlog_retention_days = true\n",
            ["[tool.cicd.environments.dev] log_retention_days", "an integer", "bool"],
        ),
        (
            '[tool.cicd.environments.prod]\ndeployment = "Canary50Percent"\n',
            ["[tool.cicd.environments.prod] deployment", "Canary10Percent5Minutes", "'Canary50Percent'"],
        ),
        (
            '[tool.cicd.environments.prod]\nremoval_policy = "keep"\n',
            ["[tool.cicd.environments.prod] removal_policy", "destroy, retain"],
        ),
        ("[tool.cicd.environments.dev]\nalarms = 1\n", ["[tool.cicd.environments.dev] alarms", "true or false"]),
        (
            "[tool.cicd.environments.dev]\nthrottle_rate = 0\n",
            ["[tool.cicd.environments.dev] throttle_rate", "at least 1"],
        ),
        (
            "[tool.cicd.environments.dev]\nalarm_api_5xx = 0\n",
            ["[tool.cicd.environments.dev] alarm_api_5xx", "at least 1"],
        ),
        (
            "[tool.cicd.environments.dev]\nurl_ttl_default = 4000\n",
            ["[tool.cicd.environments.dev]", "url_ttl_default", "url_ttl_max"],
        ),
        (
            "[tool.cicd.environments.dev]\nurl_ttl_max = 700000\n",
            ["[tool.cicd.environments.dev] url_ttl_max", "604800"],
        ),
        (
            "[tool.cicd.environments.dev]\nthrottle_burst = 5\n",
            ["[tool.cicd.environments.dev]", "throttle_burst", "throttle_rate"],
        ),
        ("[tool.cicd.environments]\ndev = 1\n", ["[tool.cicd.environments.dev]", "table"]),
    ],
)
def test_malformed_table_names_the_key_and_the_fix(tmp_path: Path, body: str, names: list[str]) -> None:
    err = config_error(body, tmp_path)
    for name in names:
        assert name in str(err), (name, str(err))


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    err = config_error("[tool.cicd\n", tmp_path)
    assert "pyproject.toml" in str(err) and "not valid TOML" in str(err)


def test_tool_cicd_must_be_a_table(tmp_path: Path) -> None:
    err = config_error("[tool]\ncicd = 1\n", tmp_path)
    assert "[tool.cicd]" in str(err)


def test_parse_config_accepts_an_empty_table() -> None:
    assert parse_config({}) == config.PipelineConfig()


def test_every_environment_field_is_a_documented_override_key() -> None:
    """Each ``Environment`` field but ``name`` can be set from pyproject.toml (and nothing else can)."""
    fields = {f for f in config.Environment.__dataclass_fields__ if f != "name"}
    assert fields == set(config._ENV_FIELDS)


@pytest.mark.component  # imports in a fresh interpreter
def test_config_imports_without_aws_libraries() -> None:
    code = "import sys, cicd.config; print(sorted({m.split('.')[0] for m in sys.modules} & HEAVY))"
    code = code.replace("HEAVY", "{'boto3', 'botocore', 'aws_cdk', 'jsii'}")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
