"""The embedded AWS of the ``local`` target: a moto server started on demand, shared by every environment.

``up(root)`` starts ``python -m moto.server`` bound to ``127.0.0.1`` in the background (its own session, so it keeps
answering after ``inv pipeline`` returns) and records it in ``.cicd/local/server.json`` (or under
``$CICD_LOCAL_HOME``, shared by several workspaces)::

    {"pid": 4242, "port": 4566, "endpoint": "http://localhost:4566", "region": "us-east-1",
     "account_id": "123456789012", "started_at": "...", "bootstrapped": ["us-east-1"], "log": "..."}

Clients use ``http://localhost:PORT``, not ``127.0.0.1``: moto recognises path-style S3 URLs (which the CDK CLI uses
for its template uploads) only when the host contains ``localhost``. The port is ``CICD_LOCAL_PORT`` if set, else
the ``port`` argument (the project's ``local_port``), else 4566; ``0`` means "any free port". A configured port held
by another program is a :class:`UsageError`: we never adopt or stop a process we did not start.

The server is *ours* when the state file names it, its pid is alive (and is a moto server) and it answers HTTP.
``status`` cleans a stale state file (a server that died, a reboot) and reports a hung one; ``up`` replaces both.
A server that disappears while a run is using it (:func:`current`, :func:`check_alive`) is reported as
:class:`LocalAwsStopped` (exit 3) and its state is reset. A new server is a new, empty AWS: it needs a fresh
``cdk bootstrap`` and has no deployments, so starting one clears both records.

``up`` returns once moto has also answered one CloudFormation call: moto imports all its resource models on the
first one (seconds); where ``PYTHONDONTWRITEBYTECODE`` is set, the server keeps its bytecode in ``.cicd/pycache``
(:mod:`cicd.bytecode`) so that import is not recompiled on every start.

Per-environment deployment records (``.cicd/local/deployments/<env>.json``) let the deploy step remember what it
deployed (digest, version, commit, outputs...) for as long as the server lives.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from cicd import bytecode
from cicd.errors import CicdError, MissingToolError, UsageError

if TYPE_CHECKING:
    import boto3

    from cicd.context import StepContext
    from cicd.local_api import ApiState

DEFAULT_PORT: Final = 4566
PORT_ENV: Final = "CICD_LOCAL_PORT"
DEFAULT_REGION: Final = "us-east-1"
ACCOUNT_ID: Final = "123456789012"
"""moto's default account (what ``sts get-caller-identity`` answers with the dummy credentials)."""
DUMMY_CREDENTIALS: Final = {  # nosec B105 # moto's documented fake credentials, never real ones
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
HOST: Final = "127.0.0.1"
START_TIMEOUT_S: Final = 30.0
HEALTH_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 5.0
ENV_NAME: Final = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class LocalAwsStopped(MissingToolError):
    """The moto server recorded for this checkout is gone (killed, crashed, machine restarted)."""


@dataclass(frozen=True)
class LocalAws:
    """A running moto server, as recorded in ``.cicd/local/server.json``."""

    pid: int
    port: int
    endpoint: str
    started_at: str
    region: str = DEFAULT_REGION
    account_id: str = ACCOUNT_ID
    bootstrapped: tuple[str, ...] = ()
    log: str = ""

    @property
    def health_url(self) -> str:
        return f"http://{HOST}:{self.port}/moto-api/config"

    def is_bootstrapped(self, region: str | None = None) -> bool:
        return (region or self.region) in self.bootstrapped

    def environ(self) -> dict[str, str]:
        """Variables that point an AWS SDK or CLI at this server, with dummy credentials."""
        return client_environ(self.endpoint, self.region)

    def session(self) -> boto3.Session:
        """A boto3 session with the dummy credentials (pass ``endpoint_url=self.endpoint`` to its clients)."""
        import boto3

        return boto3.Session(
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=self.region,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["bootstrapped"] = list(self.bootstrapped)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LocalAws:
        return cls(
            pid=int(data["pid"]),
            port=int(data["port"]),
            endpoint=str(data["endpoint"]),
            started_at=str(data["started_at"]),
            region=str(data.get("region", DEFAULT_REGION)),
            account_id=str(data.get("account_id", ACCOUNT_ID)),
            bootstrapped=tuple(str(r) for r in data.get("bootstrapped", ())),
            log=str(data.get("log", "")),
        )


@dataclass(frozen=True)
class LocalStatus:
    """What ``inv local.status`` shows: the server (if running) and the served APIs per environment."""

    running: bool
    server: LocalAws | None
    note: str
    apis: list[ApiState] = field(default_factory=list)


def client_environ(endpoint: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """``AWS_ENDPOINT_URL`` + dummy credentials + region, and no proxy for the local endpoint."""
    no_proxy = ",".join(
        p for p in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), "localhost,127.0.0.1") if p
    )
    return {
        "AWS_ENDPOINT_URL": endpoint,
        **DUMMY_CREDENTIALS,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }


# --- paths and state files ----------------------------------------------------------------------------------


HOME_ENV: Final = "CICD_LOCAL_HOME"


def local_dir(root: Path) -> Path:
    """Where the server and local API records live: ``.cicd/local/`` of the checkout, or ``$CICD_LOCAL_HOME``, which
    lets several workspaces (one per CI job, as in the adapters' job-by-job tests) share one embedded AWS."""
    shared = os.environ.get(HOME_ENV)
    return Path(shared) if shared else root / ".cicd" / "local"


def state_path(root: Path) -> Path:
    return local_dir(root) / "server.json"


def deployments_dir(root: Path) -> Path:
    return local_dir(root) / "deployments"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a corrupt state file is treated like a missing one (and overwritten)
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def locked(root: Path, name: str = "server") -> Iterator[None]:
    """Serialize changes to the local target between processes (parallel steps, two terminals)."""
    folder = local_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f".{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(root: Path) -> LocalAws | None:
    data = read_json(state_path(root))
    if data is None:
        return None
    try:
        return LocalAws.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


def _write_state(root: Path, server: LocalAws) -> None:
    write_json_atomic(state_path(root), server.to_json())


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# --- processes ------------------------------------------------------------------------------------------------

# Children started by this process: polling them reaps a killed child (otherwise it would linger as a zombie whose
# pid still "exists").
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn_detached(cmd: list[str], *, log: Path, cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session with output appended to ``log``; it outlives this process."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def pid_alive(pid: int) -> bool:
    """True when ``pid`` is a live process (a zombie or a reaped child of ours is not)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
        return state not in {"Z", "X"}
    return True


def process_cmdline(pid: int) -> str | None:
    """The command line of ``pid`` where ``/proc`` exists (Linux); None elsewhere or when unreadable."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return None


def stop_process(pid: int, *, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the process group of ``pid`` (we start each in its own session), SIGKILL after ``timeout``."""
    if not pid_alive(pid):
        return False
    leader = _group_of(pid) == pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if leader:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                _CHILDREN.pop(pid, None)
                return True
            time.sleep(0.02)
    return not pid_alive(pid)


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def http_get(url: str, *, timeout: float = 2.0) -> tuple[int, bytes] | None:
    """GET ``url`` without any proxy; ``(status, body)``, or None when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()
    except (OSError, ValueError):
        return None


def _moto_answers(port: int, *, timeout: float = 2.0) -> bool:
    answer = http_get(f"http://{HOST}:{port}/moto-api/config", timeout=timeout)
    if answer is None or not 200 <= answer[0] < 300:
        return False
    try:
        data = json.loads(answer[1])
    except ValueError:
        return False
    return isinstance(data, dict) and "lambda" in data


def _is_our_process(server: LocalAws) -> bool:
    if not pid_alive(server.pid):
        return False
    cmdline = process_cmdline(server.pid)
    return cmdline is None or ("moto" in cmdline and str(server.port) in cmdline)  # else: the pid was reused


def _is_our_server(server: LocalAws) -> bool:
    """Our process, and it answers (a busy server may take seconds, e.g. in the middle of a deploy)."""
    return _is_our_process(server) and _moto_answers(server.port, timeout=HEALTH_TIMEOUT_S)


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def configured_port(port: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    """``CICD_LOCAL_PORT``, else ``port``, else 4566 (0 = any free port); a bad value is a :class:`UsageError`."""
    env = os.environ if environ is None else environ
    raw = env.get(PORT_ENV, "").strip()
    if raw:
        if not raw.isdigit() or not 0 <= int(raw) <= 65535:
            raise UsageError(f"{PORT_ENV}={raw!r} is not a port number", hint="use 1-65535, or 0 for any free port")
        return int(raw)
    if port is None:
        return DEFAULT_PORT
    if not 0 <= port <= 65535:
        raise UsageError(f"local port {port} is not a port number", hint="use 1-65535, or 0 for any free port")
    return port


def _check_localhost() -> None:
    try:
        infos = socket.getaddrinfo("localhost", None, socket.AF_INET)
    except OSError:
        infos = []
    if not any(info[4][0] == HOST for info in infos):
        raise UsageError(
            "the name 'localhost' does not resolve to 127.0.0.1, which the local AWS endpoint needs",
            hint="add the line `127.0.0.1 localhost` to /etc/hosts",
        )


# --- lifecycle ---------------------------------------------------------------------------------------------------


def up(root: Path, *, port: int | None = None, region: str = DEFAULT_REGION, warm: bool = True) -> LocalAws:
    """Return the running server of this checkout, starting one first if needed (waits until it answers).

    ``warm`` makes one CloudFormation call before returning, so the first deploy does not pay moto's import of
    its CloudFormation machinery (seconds); callers that only use S3 or STS can skip it.
    """
    with locked(root):
        existing = _read_state(root)
        if existing is not None:
            if _is_our_server(existing):
                return existing
            _forget(root, existing)
        wanted = configured_port(port)
        _check_localhost()
        if wanted == 0:
            wanted = free_port()
        elif port_in_use(wanted):
            raise UsageError(
                f"port {wanted} is in use by another program: set {PORT_ENV} or stop it",
                hint=f"e.g. {PORT_ENV}=0 picks any free port",
            )
        return _start(root, wanted, region, warm=warm)


def _start(root: Path, port: int, region: str, *, warm: bool) -> LocalAws:
    folder = local_dir(root)
    log = folder / "moto.log"
    env = bytecode.python_env({k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
    env["MOTO_PORT"] = str(port)
    cmd = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    proc = spawn_detached(cmd, log=log, cwd=folder, env=env)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _moto_answers(port, timeout=1.0):
        if proc.poll() is not None:
            _CHILDREN.pop(proc.pid, None)
            last = last_line(log)
            if "in use" in last.lower():
                raise UsageError(
                    f"port {port} is in use by another program: set {PORT_ENV} or stop it",
                    hint=f"e.g. {PORT_ENV}=0 picks any free port",
                )
            raise MissingToolError(
                f"local AWS (moto) exited while starting on port {port}: {last}",
                hint=f"see {log}; check that moto[server] is installed (uv sync)",
            )
        if time.monotonic() > deadline:
            stop_process(proc.pid)
            raise MissingToolError(
                f"local AWS (moto) did not answer on port {port} within {START_TIMEOUT_S:.0f} s",
                hint=f"see {log}",
            )
        time.sleep(0.05)
    if warm:
        _warm_up(port, region)
    server = LocalAws(
        pid=proc.pid,
        port=port,
        endpoint=f"http://localhost:{port}",
        started_at=_now(),
        region=region,
        log=str(log),
    )
    _write_state(root, server)
    shutil.rmtree(deployments_dir(root), ignore_errors=True)
    return server


def _warm_up(port: int, region: str) -> None:
    """One CloudFormation call before the server counts as ready: moto imports its CloudFormation machinery (every
    resource model, seconds) on first use and answers nothing else meanwhile."""
    scope = f"testing/20260101/{region}/cloudformation/aws4_request"
    request = urllib.request.Request(
        f"http://{HOST}:{port}/",
        data=b"Action=ListStacks&Version=2010-05-15",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0",
        },
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with contextlib.suppress(OSError), opener.open(request, timeout=START_TIMEOUT_S * 4) as resp:
        resp.read()


def last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"


def _forget(root: Path, server: LocalAws) -> None:
    """Drop a server that does not answer: stop its process if it is still ours (hung), then reset the state."""
    if _is_our_process(server):
        stop_process(server.pid)
    _reset(root)


def _reset(root: Path) -> None:
    """Forget a server that is gone: its state, its deployments, the APIs serving them."""
    from cicd import local_api

    local_api.stop_all(root)
    state_path(root).unlink(missing_ok=True)
    shutil.rmtree(deployments_dir(root), ignore_errors=True)


def down(root: Path) -> bool:
    """Stop the local APIs and the server of this checkout; True when a server was running."""
    from cicd import local_api

    with locked(root):
        local_api.stop_all(root)
        server = _read_state(root)
        stopped = False
        if server is not None and _is_our_process(server):
            stopped = stop_process(server.pid)
        state_path(root).unlink(missing_ok=True)
        shutil.rmtree(deployments_dir(root), ignore_errors=True)
        shutil.rmtree(local_dir(root) / "functions", ignore_errors=True)
        return stopped


def status(root: Path) -> LocalStatus:
    """Is the server alive (pid and an HTTP answer)? A stale state file is removed and reported."""
    from cicd import local_api

    with locked(root):
        server = _read_state(root)
        if server is None:
            return LocalStatus(False, None, "local AWS is not running", local_api.list_apis(root))
        if _is_our_server(server):
            return LocalStatus(
                True, server, f"local AWS (moto) is running at {server.endpoint}", local_api.list_apis(root)
            )
        if _is_our_process(server):
            return LocalStatus(
                False,
                server,
                f"local AWS (moto) pid {server.pid} is alive but does not answer on port {server.port}: "
                "`inv local.down` stops it",
                local_api.list_apis(root),
            )
        _reset(root)
        return LocalStatus(
            False,
            None,
            f"local AWS (moto) on port {server.port} (pid {server.pid}) is no longer running; stale state removed",
            [],
        )


def current(root: Path) -> LocalAws:
    """The running server, for a step in the middle of a run; raises when it is not (or no longer) running."""
    server = _read_state(root)
    if server is None:
        raise LocalAwsStopped("local AWS (moto) is not running", hint="run `inv local.up`, or deploy first")
    check_alive(root, server)
    return server


def check_alive(root: Path, server: LocalAws) -> None:
    """Raise :class:`LocalAwsStopped` (exit 3) and reset the state when ``server`` is gone.

    Call it after a command against the server failed, to report a killed server instead of a confusing error.
    """
    if _is_our_server(server):
        return
    if _is_our_process(server):
        raise LocalAwsStopped(
            f"local AWS (moto) on port {server.port} does not answer (pid {server.pid} is alive)",
            hint="run `inv local.down` and rerun",
        )
    with locked(root):
        recorded = _read_state(root)
        if recorded is not None and recorded.pid == server.pid:
            _reset(root)
    raise _stopped(server.port)


def _stopped(port: int) -> LocalAwsStopped:
    return LocalAwsStopped(
        f"local AWS (moto) on port {port} is not running (it stopped during the run): "
        "run `inv local.up` or rerun; state was reset"
    )


def reset(root: Path) -> LocalAws:
    """Empty the running server (moto's reset): no stacks, buckets or deployments; bootstrap needed again."""
    server = current(root)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://{HOST}:{server.port}/moto-api/reset", method="POST")
    try:
        with opener.open(request, timeout=10) as resp:
            resp.read()
    except OSError:
        check_alive(root, server)
        raise
    from cicd import local_api

    with locked(root):
        local_api.stop_all(root)
        shutil.rmtree(deployments_dir(root), ignore_errors=True)
        fresh = replace(server, bootstrapped=())
        _write_state(root, fresh)
    return fresh


def ensure_bootstrapped(
    root: Path,
    server: LocalAws,
    *,
    log: StepContext | IO[str] | None = None,
    region: str | None = None,
) -> LocalAws:
    """Run ``cdk bootstrap aws://<moto account>/<region>`` once per server (a new server is bootstrapped again)."""
    from cicd import cdk_cli

    where = region or server.region
    with locked(root):
        recorded = _read_state(root)
        if recorded is None or recorded.pid != server.pid:
            raise _stopped(server.port)  # gone, or replaced by another server meanwhile
        if not _is_our_process(recorded):
            _reset(root)
            raise _stopped(server.port)
        if recorded.is_bootstrapped(where):
            return recorded
        try:
            cdk_cli.bootstrap(log, endpoint=recorded.endpoint, account=recorded.account_id, region=where)
        except CicdError:
            if not _is_our_process(recorded):
                _reset(root)
                raise _stopped(recorded.port) from None
            raise
        updated = replace(recorded, bootstrapped=(*recorded.bootstrapped, where))
        _write_state(root, updated)
        return updated


# --- deployment records -----------------------------------------------------------------------------------------


def _deployment_path(root: Path, env: str) -> Path:
    if not ENV_NAME.match(env):
        raise UsageError(f"'{env}' is not a valid environment name", hint="use dev, preprod or prod")
    return deployments_dir(root) / f"{env}.json"


def record_deployment(root: Path, env: str, data: Mapping[str, Any]) -> Path:
    """Remember what was deployed to ``env`` on the current server (adds ``deployed_at`` when absent)."""
    path = _deployment_path(root, env)
    record = dict(data)
    record.setdefault("deployed_at", _now())
    record.setdefault("env", env)
    write_json_atomic(path, record)
    return path


def read_deployment(root: Path, env: str) -> dict[str, Any] | None:
    """The record of the last deployment to ``env`` on the current server, or None."""
    return read_json(_deployment_path(root, env))
