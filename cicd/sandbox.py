"""A throw-away copy of the project (tests and benchmarks run the pipeline there, never in the user's tree)."""

from __future__ import annotations

import fnmatch
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


def listed(only: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """The files under ``only`` that the root ``.gitignore`` of ``root`` leaves in, listed in this process. No ``git``
    process: the test selection (:mod:`cicd.testselect`) follows what a test lists and opens itself, and counts a
    process that can see the whole checkout as reading all of it."""
    lines = (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if any(p.startswith("!") for p in patterns):  # negations: git decides
        wanted = git(root, "ls-files", "-co", "--exclude-standard", "-z", "--", *only).split("\0")
        return [rel for rel in wanted if rel]
    found: list[str] = []
    for part in only:
        if (root / part).is_file():
            found += [] if _ignored(part, patterns, folder=False) else [part]
            continue
        for folder, subfolders, files in os.walk(root / part):
            base = Path(folder).relative_to(root).as_posix()
            subfolders[:] = sorted(d for d in subfolders if not _ignored(f"{base}/{d}", patterns, folder=True))
            found += [f"{base}/{f}" for f in sorted(files) if not _ignored(f"{base}/{f}", patterns, folder=False)]
    return found


def _ignored(rel: str, patterns: list[str], *, folder: bool) -> bool:
    """Whether a ``.gitignore`` pattern matches ``rel``: ``name/`` only folders; a pattern with a ``/`` the path
    from the root, any other the last part of the path (as git does)."""
    for pattern in patterns:
        body = pattern.rstrip("/")
        if pattern.endswith("/") and not folder:
            continue
        if (
            fnmatch.fnmatchcase(rel, body.lstrip("/"))
            if "/" in body
            else fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], body)
        ):
            return True
    return False


def copy_project(dest: Path, *, share_node_modules: bool = False, only: tuple[str, ...] = ()) -> Path:
    """Copy the project's files (tracked and new, not ignored) to ``dest`` and commit them there; with ``only``,
    just the files and folders it names (a test of the command line needs no service code).

    The copy shares this checkout's virtual environment (a symlink), so ``uv run`` in it starts at once, and the
    bytecode kept for it where writing is off (``.cicd/pycache``, :mod:`cicd.bytecode`; mirrored by each source's
    absolute path, so the copy's own files get their own); with ``share_node_modules`` it shares the installed CDK
    CLI too.
    """
    listed_files = listed(only) if only else git(ROOT, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for rel in filter(None, listed_files):
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
