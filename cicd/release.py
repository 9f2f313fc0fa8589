"""What each environment runs and ran: deploy history, last good artifact, and one deploy at a time.

``.cicd/state/<target>/<env>.json`` keeps the deploy history of an environment (newest last), each entry with the
artifact digest and whether its post-deploy tests passed. ``rollback`` redeploys the newest passed entry that is
not the one running. A file lock per target and environment makes a second deploy wait (with a message) until the
first is done, or give up after ``CICD_DEPLOY_LOCK_TIMEOUT`` seconds; two deploys to one environment never overlap.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cicd.errors import StepFailed

STATE = Path(".cicd") / "state"
LOCKS = Path(".cicd") / "locks"
DEFAULT_LOCK_TIMEOUT_S = 900.0
HISTORY_LIMIT = 50


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def state_path(root: Path, target: str, env: str) -> Path:
    return root / STATE / target / f"{env}.json"


def read_state(root: Path, target: str, env: str) -> dict[str, Any]:
    try:
        data = json.loads(state_path(root, target, env).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"history": []}
    if not isinstance(data, dict) or not isinstance(data.get("history"), list):
        return {"history": []}
    return data


def _write_state(root: Path, target: str, env: str, data: dict[str, Any]) -> None:
    path = state_path(root, target, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    data["history"] = data["history"][-HISTORY_LIMIT:]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{env}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
    Path(tmp).replace(path)


def record_deploy(root: Path, target: str, env: str, *, digest: str, version: str, run_id: str) -> None:
    data = read_state(root, target, env)
    data["history"].append(
        {"digest": digest, "version": version, "run_id": run_id, "deployed_at": now(), "passed": None}
    )
    data["running"] = digest
    _write_state(root, target, env, data)


def mark_tested(root: Path, target: str, env: str, *, digest: str, passed: bool) -> None:
    """Mark the newest deploy of ``digest`` in ``env`` as passed or failed its post-deploy tests."""
    data = read_state(root, target, env)
    for entry in reversed(data["history"]):
        if entry.get("digest") == digest:
            entry["passed"] = passed
            entry["tested_at"] = now()
            break
    else:
        data["history"].append({"digest": digest, "passed": passed, "tested_at": now()})
    _write_state(root, target, env, data)


def last_good(root: Path, target: str, env: str, *, other_than: str | None = None) -> str | None:
    """The newest artifact that passed its tests in ``env`` (other than ``other_than``)."""
    for entry in reversed(read_state(root, target, env)["history"]):
        if entry.get("passed") and entry.get("digest") != other_than:
            return str(entry["digest"])
    return None


def running(root: Path, target: str, env: str) -> str | None:
    value = read_state(root, target, env).get("running")
    return str(value) if value else None


@contextlib.contextmanager
def deploy_lock(
    root: Path, target: str, env: str, *, notify: Callable[[str], None], timeout_s: float | None = None
) -> Iterator[None]:
    """Hold the deploy lock of ``env``: wait (saying so) while another deploy holds it, give up after a timeout."""
    limit = (
        float(os.environ.get("CICD_DEPLOY_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT_S)) if timeout_s is None else timeout_s
    )
    path = root / LOCKS / f"{target}-{env}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another run"
            notify(f"another deploy to {env} is running ({holder}); waiting for it to finish")
            deadline = time.monotonic() + limit
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StepFailed(
                            f"another deploy to {env} ({holder}) still runs after {limit:.0f} s; not deploying",
                            hint="wait for it, or raise CICD_DEPLOY_LOCK_TIMEOUT",
                        ) from None
                    time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {now()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
