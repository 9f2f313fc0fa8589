"""A throw-away copy of the project (tests and benchmarks run the pipeline there, never in the user's tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cicd import bytecode

ROOT = Path(__file__).resolve().parent.parent
_IDENTITY = {
    "GIT_AUTHOR_NAME": "sandbox",
    "GIT_AUTHOR_EMAIL": "sandbox@example.invalid",
    "GIT_COMMITTER_NAME": "sandbox",
    "GIT_COMMITTER_EMAIL": "sandbox@example.invalid",
}


def git(cwd: Path, *args: str) -> str:
    git_bin = shutil.which("git") or "git"
    return subprocess.run(
        [git_bin, *args], cwd=cwd, env={**os.environ, **_IDENTITY}, check=True, capture_output=True, text=True
    ).stdout


def copy_project(dest: Path, *, share_node_modules: bool = False, only: tuple[str, ...] = ()) -> Path:
    """Copy the project's files (tracked and new, not ignored) to ``dest`` and commit them there; with ``only``,
    just the files and folders it names (a test of the command line needs no service code).

    The copy shares this checkout's virtual environment (a symlink), so ``uv run`` in it starts at once, and the
    bytecode kept for it where writing is off (``.cicd/pycache``, :mod:`cicd.bytecode`; mirrored by each source's
    absolute path, so the copy's own files get their own); with ``share_node_modules`` it shares the installed CDK
    CLI too.
    """
    listed = git(ROOT, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for rel in filter(None, listed):
        if only and not any(rel == part or rel.startswith(f"{part}/") for part in only):
            continue
        src = ROOT / rel
        if src.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    bytecode.DIR.mkdir(parents=True, exist_ok=True)
    (dest / ".cicd").mkdir(exist_ok=True)
    (dest / ".cicd" / bytecode.DIR.name).symlink_to(bytecode.DIR, target_is_directory=True)
    if share_node_modules and (ROOT / "node_modules").is_dir():
        (dest / "node_modules").symlink_to(ROOT / "node_modules")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "copy")
    return dest
