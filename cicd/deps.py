"""The project's lock: ``requirements.lock`` (exact versions and sha256 hashes of every package, no index URLs).

``uv`` resolves the environment from ``pyproject.toml``; the ``constraint-dependencies`` block there is generated
from this lock, so ``uv run`` installs exactly the locked versions, and the supply-chain steps (``sca``, ``sbom``)
read the lock itself. ``inv deps.lock`` regenerates both after a dependency change; a test fails when they drift.
(``uv.lock`` is not committed: it records the package index's address, which this project keeps out of the tree.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from cicd.errors import MissingToolError, StepFailed

LOCK = "requirements.lock"
START = "# constraints:start (generated from requirements.lock by `inv deps.lock`; do not edit)"
END = "# constraints:end"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?==[^\s\\;]+)(\s*;\s*[^\\]+?)?\s*\\?$")


def pins(lock_text: str) -> list[str]:
    """``name==version[ ; marker]`` for every package of a hashed requirements file."""
    found = []
    for line in lock_text.splitlines():
        match = _PIN.match(line)
        if match:
            marker = (match.group(2) or "").strip()
            found.append(f"{match.group(1)} {marker}" if marker else match.group(1))
    return found


def constraints_block(lock_text: str) -> str:
    body = "".join(f'    "{pin}",\n' for pin in pins(lock_text))
    return f"{START}\nconstraint-dependencies = [\n{body}]\n{END}"


def current_block(pyproject_text: str) -> str | None:
    if START not in pyproject_text or END not in pyproject_text:
        return None
    return START + pyproject_text.split(START, 1)[1].split(END, 1)[0] + END


def lock(root: Path) -> int:
    """Re-resolve ``requirements.lock`` and the constraints block; returns the number of locked packages."""
    uv = shutil.which("uv")
    if uv is None:
        raise MissingToolError("uv is needed to lock the dependencies", hint="pip install uv==0.13.8")
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    block = current_block(text)
    if block is None:
        raise StepFailed(f"pyproject.toml has no constraints block ({START!r})")
    unconstrained = text.replace(block, f"{START}\n{END}")
    pyproject.write_text(unconstrained, encoding="utf-8")
    try:
        proc = subprocess.run(
            [
                uv,
                "pip",
                "compile",
                "pyproject.toml",
                "--group",
                "dev",
                "--universal",
                "--python-version",
                "3.11",
                "--generate-hashes",
                "--no-header",
                "-q",
                "-o",
                LOCK,
            ],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise StepFailed(f"uv pip compile failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    finally:
        lock_text = (root / LOCK).read_text(encoding="utf-8")
        pyproject.write_text(unconstrained.replace(f"{START}\n{END}", constraints_block(lock_text)), encoding="utf-8")
    return len(pins(lock_text))
