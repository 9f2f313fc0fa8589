"""The one command runner and secret scrubbing."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest

from cicd import command
from cicd.errors import CommandFailed, MissingToolError


def test_scrubber_hides_secret_like_values_and_listed_names() -> None:
    token, password = "tok-" + secrets.token_hex(8), secrets.token_urlsafe(12)
    scrub = command.Scrubber(
        {"API_TOKEN": token, "DB_PASSWORD": password, "PATH": "/usr/bin", "MY_VAR": "plainvalue1"},
        extra_names=["MY_VAR"],
    )
    text = scrub(f"token {token} pw {password} path /usr/bin var plainvalue1")
    assert token not in text and password not in text and "plainvalue1" not in text
    assert "/usr/bin" in text and text.count(command.REDACTED) == 3


@pytest.mark.component  # runs processes: what the one command runner is for
def test_run_captures_scrubbed_output_into_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_SECRET", "s3cr3t-value-42")
    command.reset_scrubber()
    log_path = tmp_path / "step.log"
    with log_path.open("w") as log:
        result = command.run([sys.executable, "-c", "import os; print('v=' + os.environ['DEPLOY_SECRET'])"], log=log)
    command.reset_scrubber()
    text = log_path.read_text()
    assert "s3cr3t-value-42" not in text and "v=***" in text
    assert text.startswith("+ python")
    assert result.output.strip() == "v=***"


@pytest.mark.component  # runs processes: what the one command runner is for
def test_run_raises_on_failure_and_on_missing_program(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed) as err:
        command.run([sys.executable, "-c", "raise SystemExit(4)"])
    assert err.value.returncode == 4 and err.value.return_code == 1
    assert command.run([sys.executable, "-c", "raise SystemExit(4)"], check=False).returncode == 4
    with pytest.raises(MissingToolError, match="no-such-program") as missing:
        command.run(["no-such-program"])
    assert missing.value.return_code == 3
