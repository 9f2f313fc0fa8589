"""One exception family. Each error carries its exit code (the contract) and an actionable one-line message.

Errors are raised anywhere in ``cicd`` and caught once, at the task boundary (``tasks.py``), where the message is
printed on one line and the process exits with ``return_code``. No traceback reaches the user.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_USAGE = 2
EXIT_MISSING_TOOL = 3


class CicdError(Exception):
    """Base error: ``str(err)`` is the one line shown to the user."""

    return_code: int = EXIT_STEP_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class UsageError(CicdError):
    """Bad command-line usage: unknown step, bad option value."""

    return_code = EXIT_USAGE


class ConfigError(CicdError):
    """Bad configuration: the pipeline model, ``[tool.cicd]``, an environment table."""

    return_code = EXIT_USAGE


class MissingToolError(CicdError):
    """A required program or service is not available."""

    return_code = EXIT_MISSING_TOOL


class StepFailed(CicdError):
    """A step's check did not pass (a gate, a finding, a failed test)."""

    return_code = EXIT_STEP_FAILED


class CommandFailed(StepFailed):
    """A command run through :func:`cicd.command.run` exited non-zero."""

    def __init__(self, cmd: str, returncode: int, *, log: str | None = None) -> None:
        self.cmd = cmd
        self.returncode = returncode
        self.log = log
        words = cmd.split()
        short = " ".join(words[:2]) if len(words) > 1 and not words[1].startswith("-") else words[0] if words else cmd
        super().__init__(f"`{short}` exited with {returncode}")


class Interrupted(CicdError):
    """The run was stopped by the user (Ctrl-C)."""

    return_code = EXIT_STEP_FAILED
