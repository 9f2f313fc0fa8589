"""What a step function receives: where it runs, where it writes, and how it runs commands."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cicd import command


@dataclass
class StepContext:
    """Passed to every step function.

    ``root`` is the repository root, ``run_dir`` the run folder (``.cicd/runs/<run-id>``), ``log`` the step's own
    log file (already open). Steps write their reports and artifacts under :meth:`out`.
    """

    root: Path
    run_dir: Path
    step: str
    env: str | None
    target: str
    log: IO[str]
    log_path: Path
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    options: dict[str, str] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return self.step if self.env is None else f"{self.step}:{self.env}"

    def out(self, *parts: str) -> Path:
        """A path inside this run's folder (parents created): ``ctx.out("reports", "ruff.sarif")``."""
        path = self.run_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def rel(self, path: Path) -> str:
        """``path`` relative to the repository root, for messages."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def note(self, message: str) -> None:
        """Write a line to the step log (scrubbed)."""
        self.log.write(command.scrubber()(message.rstrip("\n")) + "\n")
        self.log.flush()

    def run(
        self,
        cmd: Sequence[str | os.PathLike[str]],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
        ok_codes: Iterable[int] = (0,),
    ) -> command.CommandResult:
        """Run a command with its output captured in this step's log."""
        return command.run(
            cmd,
            log=self.log,
            cwd=cwd or self.root,
            env=env,
            check=check,
            timeout=timeout,
            log_path=self.rel(self.log_path),
            ok_codes=ok_codes,
        )
