"""``MAJOR.MINOR.PATCH`` versions (the grammar of ``cicd.versioning.VERSION_RE``): ASCII digits, no leading zeros,
numeric order."""

from __future__ import annotations

import re
from typing import NamedTuple

_VERSION_RE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")


class Version(NamedTuple):
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse_version(text: str) -> Version | None:
    """The version ``text`` spells, or None. At most 64 characters (far from int()'s digit limit)."""
    match = _VERSION_RE.fullmatch(text) if len(text) <= 64 else None
    return Version(*map(int, match.groups())) if match else None
