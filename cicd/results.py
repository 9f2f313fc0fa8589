"""Outcomes are data: a step returns an :class:`Outcome`; the runner turns it into a :class:`StepResult`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CACHED = "cached"
    NOT_RUN = "not-run"

    @property
    def ok(self) -> bool:
        """True when the step does not stop what needs it."""
        return self in (Status.PASSED, Status.SKIPPED, Status.CACHED)


@dataclass(frozen=True)
class Outcome:
    """What a step function returns. ``None`` from a step means passed with nothing to add."""

    status: Status = Status.PASSED
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def passed(cls, note: str | None = None, **details: Any) -> Outcome:
        return cls(Status.PASSED, note, dict(details))

    @classmethod
    def skipped(cls, reason: str, **details: Any) -> Outcome:
        return cls(Status.SKIPPED, reason, dict(details))


@dataclass
class StepResult:
    """One step's row in the run report (see the contract in the README)."""

    name: str
    env: str | None
    status: Status
    duration_s: float
    reason: str | None
    log: str | None
    rerun: str
    started_at: str | None = None
    ended_at: str | None = None
    start_offset_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return self.name if self.env is None else f"{self.name}:{self.env}"

    def serialize(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["duration_s"] = round(self.duration_s, 3)
        if self.start_offset_s is not None:
            data["start_offset_s"] = round(self.start_offset_s, 3)
        return data
