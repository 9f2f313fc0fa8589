"""Isolated, version-pinned tool environments for scanners whose pins clash with the project.

checkov pins an old boto3 and semgrep brings its own dependency tree, so each lives in its own virtual environment
under ``.cicd/tools/<name>-<digest>/``; bb-run (the local Bitbucket runner the adapter tests use) needs Python >= 3.12,
so its environment is made with the first such interpreter found (``CICD_PYTHON_3_12``, ``python3.13``/``python3.12``
on PATH, pyenv's versions). Each is installed on first use from a hash-locked requirements file kept in
``cicd/toolenvs/<name>.txt`` (regenerate with ``inv tools.lock``). A changed lock file gives a new digest and so a
fresh environment; installs are serialized with a file lock, so parallel steps never race.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cicd.errors import MissingToolError

TOOLENVS = Path(__file__).parent / "toolenvs"


@dataclass(frozen=True)
class IsolatedTool:
    name: str
    executable: str
    python: tuple[int, int] = (3, 11)
    """The oldest Python the tool runs on; its environment is made with an interpreter at least that new."""

    @property
    def lock_file(self) -> Path:
        return TOOLENVS / f"{self.name}.txt"

    @property
    def version(self) -> str:
        match = re.search(rf"^{re.escape(self.name)}==(\S+)", self.lock_file.read_text(), re.MULTILINE)
        if not match:
            raise MissingToolError(f"{self.lock_file} does not pin {self.name}", hint="run `inv tools.lock`")
        return match.group(1)

    def digest(self) -> str:
        return hashlib.sha256(self.lock_file.read_bytes()).hexdigest()[:12]


SEMGREP = IsolatedTool("semgrep", "semgrep")
CHECKOV = IsolatedTool("checkov", "checkov")
BB_RUN = IsolatedTool("bb-run", "bb-run", python=(3, 12))
ISOLATED = {t.name: t for t in (SEMGREP, CHECKOV, BB_RUN)}
PYTHON_VARIABLE = "CICD_PYTHON_3_12"


def interpreter(version: tuple[int, int]) -> str:
    """A Python interpreter at least ``version``: this one if it is, else the newest found (see the module doc)."""
    if sys.version_info >= version:
        return sys.executable
    candidates = [os.environ.get(PYTHON_VARIABLE, "")]
    candidates += [shutil.which(f"python3.{minor}") or "" for minor in range(14, version[1] - 1, -1)]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(p / "bin" / "python3") for p in sorted(pyenv.glob("3.*"), key=_version_of, reverse=True)]
    for candidate in filter(None, candidates):
        proc = subprocess.run(
            [candidate, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True, check=False
        )
        found = tuple(int(n) for n in proc.stdout.split()) if proc.returncode == 0 else ()
        if len(found) == 2 and found >= version:
            return candidate
    raise MissingToolError(
        f"no Python >= {version[0]}.{version[1]} on this machine",
        hint=f"install one, or point {PYTHON_VARIABLE} at its interpreter",
    )


def _version_of(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.name)[:3])


def tools_home(root: Path) -> Path:
    return Path(os.environ.get("CICD_TOOLS_DIR", root / ".cicd" / "tools"))


def _uv() -> str | None:
    return os.environ.get("UV") or shutil.which("uv")


def ensure(tool: IsolatedTool, root: Path) -> Path:
    """Return the path of ``tool``'s executable, installing its environment first if needed."""
    home = tools_home(root)
    env_dir = home / f"{tool.name}-{tool.version}-{tool.digest()}"
    exe = env_dir / "bin" / tool.executable
    marker = env_dir / ".complete"
    if marker.exists() and exe.exists():
        return exe
    home.mkdir(parents=True, exist_ok=True)
    with (home / f".{tool.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and exe.exists():
            return exe
        shutil.rmtree(env_dir, ignore_errors=True)
        _install(tool, env_dir)
        marker.write_text(tool.version)
    return exe


def _install(tool: IsolatedTool, env_dir: Path) -> None:
    uv = _uv()
    if uv:
        steps = [
            # --no-config: the project's own [tool.uv] settings (its constraints) must not leak into a tool's env.
            [uv, "venv", "--quiet", "--no-config", "--python", interpreter(tool.python), str(env_dir)],
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--no-config",
                "--python",
                str(env_dir / "bin" / "python"),
                "--require-hashes",
                "-r",
                str(tool.lock_file),
            ],
        ]
    else:
        steps = [
            [interpreter(tool.python), "-m", "venv", str(env_dir)],
            [
                str(env_dir / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--require-hashes",
                "-r",
                str(tool.lock_file),
            ],
        ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(env_dir, ignore_errors=True)
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise MissingToolError(
                f"could not install {tool.name} {tool.version} into {env_dir}: {last[0]}",
                hint="check that the package registry is reachable, then rerun",
            )


def lock(tool: IsolatedTool, version: str | None = None) -> None:
    """Regenerate ``tool``'s hash-locked requirements (used by ``inv tools.lock``)."""
    uv = _uv()
    if uv is None:
        raise MissingToolError("uv is needed to lock tool environments", hint="pip install uv")
    spec = f"{tool.name}=={version or tool.version}"
    proc = subprocess.run(
        [
            uv,
            "pip",
            "compile",
            "--no-config",
            "--universal",
            "--python-version",
            ".".join(map(str, tool.python)),
            "--generate-hashes",
            "--no-header",
            "-",
            "-o",
            str(tool.lock_file),
        ],
        input=spec,
        text=True,
        check=False,
        capture_output=True,
    )
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise MissingToolError(f"could not lock {spec}: {last[0]}", hint="check the name and version")
