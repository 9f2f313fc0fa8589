"""The one version scheme shared by the Lambda's ``/health``, the APK keys and the Flutter build.

``MAJOR.MINOR.PATCH`` where MAJOR.MINOR come from ``pyproject.toml`` and PATCH is the number of commits on the
trunk (monotonic under trunk-based development), so a later build always sorts higher. The commit is carried
separately. ``CICD_BUILD_VERSION`` / ``CICD_BUILD_COMMIT`` override both (CI tools pass them between jobs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

VERSION_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


@dataclass(frozen=True)
class BuildVersion:
    version: str
    commit: str | None

    @property
    def build_number(self) -> int:
        """Flutter's ``--build-number``: the PATCH component."""
        return int(self.version.rsplit(".", 1)[1])


def _in_a_repository(root: Path) -> bool:
    """Whether git would find a repository for ``root`` (its own ``.git`` or a parent's, or ``GIT_DIR``): outside
    one there is no commit to ask for, and no process is started to learn that."""
    return "GIT_DIR" in os.environ or any((folder / ".git").exists() for folder in (root, *root.resolve().parents))


def _git(root: Path, *args: str) -> str | None:
    git = shutil.which("git")
    if git is None or not _in_a_repository(root):
        return None
    proc = subprocess.run([git, *args], cwd=root, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def commit(root: Path) -> str | None:
    return os.environ.get("CICD_BUILD_COMMIT") or _git(root, "rev-parse", "HEAD")


def build_version(root: Path) -> BuildVersion:
    override = os.environ.get("CICD_BUILD_VERSION")
    sha = commit(root)
    if override:
        return BuildVersion(override, sha)
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    major, minor = str(project).split(".")[:2]
    count = _git(root, "rev-list", "--count", "HEAD") or "0"
    return BuildVersion(f"{major}.{minor}.{count}", sha)
