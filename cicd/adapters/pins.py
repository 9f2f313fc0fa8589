"""Every external version the adapters reference, in one table: actions by commit SHA, images and tools by exact
version. Renderers read only this module, so one command (``bump``) moves a pin everywhere at once.

GitHub actions are referenced as ``owner/repo[/path]@<40-hex sha> # vX.Y.Z``; the SHA is the commit of the release
tag named by ``version``. ``bump("actions/checkout", "v6.0.1", "<sha>")`` rewrites the table in this file (and only
the table): rerun ``inv adapters.generate`` afterwards and every adapter follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cicd.errors import UsageError

SHA_RE: Final = re.compile(r"^[0-9a-f]{40}$")
VERSION_RE: Final = re.compile(r"^v?\d+(\.\d+){1,3}$")


@dataclass(frozen=True)
class Pin:
    """One pinned dependency: ``name`` (action path, image or tool), exact ``version`` and, for actions, ``sha``."""

    name: str
    version: str
    sha: str = ""

    @property
    def ref(self) -> str:
        """What a workflow writes after ``uses:`` (actions) or as the image/package reference (everything else)."""
        return f"{self.name}@{self.sha}" if self.sha else f"{self.name}:{self.version}"


# fmt: off
# --- pins table (rewritten by bump(); one row per line) -------------------------------------------------------------
PINS: Final[tuple[Pin, ...]] = (
    Pin("actions/checkout", "v5.0.0", "08c6903cd8c0fde910a37f88322edcfb5dd907a8"),
    Pin("actions/cache", "v5.0.1", "9255dc7a253b0ccc959486e2bca901246202afeb"),
    Pin("actions/upload-artifact", "v5.0.0", "330a01c490aca151604b8cf639adc76d48f6c5d4"),
    Pin("actions/download-artifact", "v6.0.0", "018cc2cf5baa6db3ef3c5f8a56943fffe632ef53"),
    Pin("astral-sh/setup-uv", "v7.1.6", "681c641aba71e4a1c380be3ab5e12ad51f415867"),
    Pin("aws-actions/configure-aws-credentials", "v5.1.0", "00943011d9042930efac3dcd3a170e4273319bc8"),
    Pin("github/codeql-action/upload-sarif", "v4.31.9", "5d4e8d1aca955e8d8589aabd499c5cae939e33c7"),
    Pin("subosito/flutter-action", "v2.21.0", "fd55f4c5af5b953cc57a2be44cb082c8f6635e8e"),
    Pin("uv", "0.13.8"),
    Pin("python", "3.11.14"),
    Pin("flutter", "3.35.5"),
    Pin("image:python", "3.11.14-bookworm"),
    Pin("image:cimg/python", "3.11.14"),
    Pin("image:instrumentisto/flutter", "3.35.5"),
    Pin("image:CodeCatalystLinux_x86_64", "2024_03"),
    Pin("codecatalyst:aws/build", "v1.0.0"),
    Pin("codecatalyst:aws/approval", "v1.0.0"),
    Pin("image:aws/codebuild/standard", "7.0"),
)
# --- end of pins table ----------------------------------------------------------------------------------------------
# fmt: on

_BY_NAME: Final = {p.name: p for p in PINS}
_TABLE_START: Final = "# --- pins table"
_TABLE_END: Final = "# --- end of pins table"


def pin(name: str) -> Pin:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UsageError(f"no pin named '{name}'", hint=f"known: {', '.join(_BY_NAME)}") from None


def action(name: str) -> str:
    """``uses:`` value with the version comment: ``actions/checkout@<sha> # v5.0.0``."""
    p = pin(name)
    if not p.sha:
        raise UsageError(f"'{name}' is not an action pin (no commit SHA)")
    return f"{p.ref} # {p.version}"


def version(name: str) -> str:
    return pin(name).version


def image(name: str) -> str:
    """An image reference with its exact tag: ``python:3.11.14-slim-bookworm``."""
    return f"{name}:{pin('image:' + name).version}"


def codecatalyst_action(name: str) -> str:
    """A CodeCatalyst action identifier at its exact version: ``aws/build@v1.0.0``."""
    return f"{name}@{pin('codecatalyst:' + name).version}"


def uv_install() -> str:
    """The one shell command every job uses to install uv, pinned."""
    return f"python3 -m pip install --quiet --disable-pip-version-check uv=={version('uv')}"


def render_table(pins: tuple[Pin, ...]) -> str:
    lines = ["PINS: Final[tuple[Pin, ...]] = ("]
    for p in pins:
        args = [repr(p.name), repr(p.version)] + ([repr(p.sha)] if p.sha else [])
        lines.append(f"    Pin({', '.join(args)}),".replace("'", '"'))
    lines.append(")")
    return "\n".join(lines)


def bump(name: str, new_version: str, sha: str = "", *, source: Path | None = None) -> Pin:
    """Rewrite one row of the pins table in this file (``inv adapters.bump NAME VERSION [SHA]``).

    Actions need a 40-hex commit SHA; every other pin an exact version. Returns the new pin. Regenerate the adapters
    afterwards (``inv adapters.generate``): they all read this table.
    """
    old = pin(name)
    if not VERSION_RE.match(new_version) and old.sha:
        raise UsageError(f"'{new_version}' is not an exact version", hint="e.g. v5.0.1")
    if old.sha and not SHA_RE.match(sha):
        raise UsageError(f"{name} is an action: pass the full 40-hex commit SHA of {new_version}", hint="git ls-remote")
    if not old.sha and sha:
        raise UsageError(f"{name} is pinned by version only: do not pass a SHA")
    if new_version in ("latest", "main", "master") or not new_version.strip():
        raise UsageError(f"'{new_version}' is not an exact version")
    new = Pin(name, new_version, sha)
    path = source or Path(__file__)
    text = path.read_text(encoding="utf-8")
    start = text.index(_TABLE_START)
    start = text.index("\n", start) + 1
    end = text.index(_TABLE_END)
    table = tuple(new if p.name == name else p for p in PINS)
    path.write_text(text[:start] + render_table(table) + "\n" + text[end:], encoding="utf-8")
    globals()["PINS"] = table  # this process renders with the new pin at once
    _BY_NAME[name] = new
    return new
