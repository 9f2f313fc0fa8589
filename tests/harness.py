"""What the slow suites share: project copies, running `inv` in them, reading their reports and environments.

Every pipeline here runs in a throw-away copy of the project (:func:`cicd.sandbox.copy_project`) with its own local
AWS on a free port (``CICD_LOCAL_PORT=0``) and the checkout's installed scanners (``CICD_TOOLS_DIR``). Variables
that would change how the pipeline behaves (a CI provider, ``CICD_*``, ``PYTEST_ADDOPTS``) are not inherited from
the environment the suite runs in; a test sets what it needs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cicd import artifact as artifacts
from cicd.pipeline import MODEL, parse_node_id
from cicd.sandbox import copy_project, git
from tests.conftest import CI_VARIABLES, ROOT

INV = ROOT / ".venv" / "bin" / "inv"
ENVIRONMENTS = ("dev", "preprod", "prod")
# The runs of these suites start at synth: lint, typecheck, unit-test, component-test, sast, secrets-scan, sca and sbom
# touch no environment and cost minutes together on 2 cores; the faults that concern them run them on purpose.
PIPELINE = ("pipeline", "--from", "synth")
PLUGINS = Path(__file__).resolve().parent / "reliability" / "plugins"
# The scanners installed for this checkout (or for the checkout named by the environment the suite runs in).
TOOLS_DIR = os.environ.get("CICD_TOOLS_DIR") or str(ROOT / ".cicd" / "tools")


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an `inv` run in a copy (wide terminal so each message stays on one line)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in CI_VARIABLES and not k.startswith("CICD_") and k != "PYTEST_ADDOPTS"
    }
    env.update(CICD_LOCAL_PORT="0", CICD_TOOLS_DIR=TOOLS_DIR, COLUMNS="400")
    env.update(extra or {})
    return env


def tail(proc: subprocess.CompletedProcess[str], chars: int = 4000) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-chars:]}\n--- stderr\n{proc.stderr[-chars:]}"


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, tail(proc)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The contract for errors caught before a run: exit code, one line on stderr naming problem and fix."""
    assert proc.returncode == code, tail(proc)
    no_traceback(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, tail(proc)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@dataclass
class Project:
    """A copy of the project and the commands a user would type in it."""

    root: Path

    # ------------------------------------------------------------------------------------------------ commands
    def inv(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(INV), *args],
            cwd=self.root,
            env=base_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str, env: Mapping[str, str] | None = None, output: Path) -> subprocess.Popen[bytes]:
        """`inv ARGS` in the background, in its own process group (so a test can signal it like a terminal)."""
        with output.open("wb") as out:
            return subprocess.Popen(
                [str(INV), *args],
                cwd=self.root,
                env=base_env(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def pipeline(self, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.inv(*PIPELINE, env=env)

    def commit(self, message: str = "a new build") -> None:
        """A new commit: the next package is a new artifact (the version counts commits)."""
        git(self.root, "commit", "-q", "--allow-empty", "-m", message)

    def down(self) -> None:
        self.inv("local.down", timeout=120)

    # ------------------------------------------------------------------------------------------------ reports
    def runs(self) -> Path:
        return self.root / ".cicd" / "runs"

    def run_dir(self) -> Path:
        return (self.runs() / "latest").resolve()

    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.runs() / "latest" / "report.json").read_text(encoding="utf-8"))
        return data

    def rows(self) -> dict[str, dict[str, Any]]:
        return {(r["name"] + (f":{r['env']}" if r["env"] else "")): r for r in self.report()["steps"]}

    def start_until_deploying(self, output: Path, env: str = "dev") -> tuple[subprocess.Popen[bytes], Path]:
        """Commit a new build, start ``inv pipeline --from synth`` and return (the process, its run folder) once the
        CDK CLI of that run deploys ``env``. If it never does, the process group is killed before the error."""
        self.commit()
        known = set(self.runs().iterdir())
        proc = self.start(*PIPELINE, output=output)

        def new_runs() -> list[Path]:
            return [r for r in set(self.runs().iterdir()) - known if r.is_dir() and not r.is_symlink()]

        def deploying() -> bool:
            logs = [r / "logs" / f"deploy-{env}.log" for r in new_runs()]
            return any(" deploy --app " in log.read_text(errors="replace") for log in logs if log.is_file())

        try:
            wait_for(deploying, timeout=300, what=f"the CDK CLI to start deploying {env}")
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        (run_dir,) = new_runs()
        return proc, run_dir

    def log(self, node: str) -> str:
        return (self.run_dir() / "logs" / f"{node.replace(':', '-')}.log").read_text(encoding="utf-8")

    # ------------------------------------------------------------------------------------------------ environments
    def history(self, env: str) -> list[dict[str, Any]]:
        """``env``'s deploy history, as its state in the local AWS records it (:mod:`cicd.state`)."""
        client = self.client("s3")
        if client is None:
            return []
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = client.get_object(Bucket=f"latestapk-{env}-state", Key="history.json")["Body"].read()
        except (ClientError, BotoCoreError):
            return []
        history: list[dict[str, Any]] = json.loads(body)["history"]
        return history

    def client(self, service: str) -> Any:
        """A boto3 client of the copy's local AWS (None when it does not run)."""
        server = self.server()
        return None if server is None else local_client(server, service)

    def deploys(self, env: str) -> list[str]:
        """The digests deployed to ``env``, oldest first (entries written by a deploy, not by a test verdict)."""
        return [entry["digest"] for entry in self.history(env) if "deployed_at" in entry]

    def server(self) -> dict[str, Any] | None:
        path = self.root / ".cicd" / "local" / "server.json"
        if not path.is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def api_url(self, env: str) -> str | None:
        path = self.root / ".cicd" / "local" / f"api-{env}.json"
        if not path.is_file():
            return None
        url = json.loads(path.read_text(encoding="utf-8")).get("url")
        return str(url) if url else None

    def health(self, env: str) -> dict[str, Any] | None:
        """What ``env`` answers on ``/health`` (None when nothing answers)."""
        url = self.api_url(env)
        if url is None:
            return None
        status, body = http_get(url + "health")
        return body if status == 200 else None

    def version(self, env: str) -> str:
        """The build version ``env`` serves (it must answer)."""
        health = self.health(env)
        assert health is not None, f"{env} does not answer on /health"
        return str(health["version"])

    def versions(self) -> dict[str, str | None]:
        return {env: (h or {}).get("version") for env, h in ((e, self.health(e)) for e in ENVIRONMENTS)}

    def stacks(self) -> dict[str, tuple[str, str | None]]:
        """Per environment, the CloudFormation stack status and the artifact digest it was deployed with."""
        server = self.server()
        return {} if server is None else stacks_of(server)

    def snapshot(self) -> dict[str, Any]:
        """Everything that says what the environments run: the local AWS, the stacks, /health, deploy history."""
        server = self.server()
        return {
            "server": None if server is None else (server["pid"], server["port"]),
            "stacks": self.stacks(),
            "health": {env: self.health(env) for env in ENVIRONMENTS},
            "history": {env: self.history(env) for env in ENVIRONMENTS},
        }

    # ------------------------------------------------------------------------------------------------ artifacts
    def latest_artifact(self) -> artifacts.Artifact:
        latest = artifacts.store_dir(self.root) / artifacts.LATEST
        return artifacts.get(self.root, latest.read_text(encoding="utf-8").strip())

    def last_passed(self, env: str) -> artifacts.Artifact:
        """The newest stored artifact with the evidence that it passed ``env``, handed to the next job as a CI tool
        would (copied into ``.cicd/artifact/``, evidence included): what ``promote`` then takes."""
        records = [
            json.loads(p.read_text(encoding="utf-8"))
            for p in artifacts.store_dir(self.root).glob(f"*/{artifacts.PASSED}/local-{env}.json")
        ]
        assert records, f"no stored artifact has evidence that it passed {env}"
        newest = max(records, key=lambda r: str(r["passed_at"]))
        folder = self.root / artifacts.CI_ARTIFACT
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(artifacts.store_dir(self.root) / str(newest["digest"]), folder)
        return artifacts.verify(folder)

    def stage_ci_artifact(self, version: str) -> artifacts.Artifact:
        """Put a new artifact in ``.cicd/artifact/``, as a CI deploy job receives it from the package job.

        It is the latest packaged artifact under another build version (a new digest, the same templates), so a
        deploy of it is a real CloudFormation update without synthesizing again.
        """
        source = self.latest_artifact()
        folder = self.root / artifacts.CI_ARTIFACT
        shutil.rmtree(folder, ignore_errors=True)

        def top_level_records(where: str, names: list[str]) -> list[str]:
            return [n for n in names if Path(where) == source.path and n in (artifacts.PASSED, artifacts.MANIFEST)]

        shutil.copytree(source.path, folder, ignore=top_level_records)
        return artifacts.build(folder, version=version, commit=source.commit)

    # ------------------------------------------------------------------------------------------------ processes
    def processes(self, run_dir: Path) -> list[int]:
        """Pids of live processes working for the run ``run_dir`` (the CDK CLI, pytest... their command names it)."""
        marker = str(run_dir)
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if marker in cmdline and state not in ("Z", "X"):
                    found.append(int(proc.name))
        return found

    def wait_for_processes_to_end(self, run_dir: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.processes(run_dir):
            assert time.monotonic() < deadline, f"processes of {run_dir} still running: {self.processes(run_dir)}"
            time.sleep(0.2)


def local_client(server: Mapping[str, Any], service: str) -> Any:
    """A boto3 client of the local AWS described by ``server`` (its ``server.json``)."""
    import boto3

    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=server["endpoint"],
        region_name=server["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def stacks_of(server: Mapping[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Per environment deployed on the local AWS ``server``: its stack status and the artifact digest it runs."""
    from botocore.exceptions import BotoCoreError, ClientError

    cfn = local_client(server, "cloudformation")
    found: dict[str, tuple[str, str | None]] = {}
    for env in ENVIRONMENTS:
        try:
            stack = cfn.describe_stacks(StackName=f"LatestApk-{env}")["Stacks"][0]
        except (ClientError, BotoCoreError):
            continue
        params = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", [])}
        found[env] = (stack["StackStatus"], params.get("ArtifactDigest"))
    return found


def http_get(url: str, *, timeout: float = 30) -> tuple[int, dict[str, Any]]:
    """GET a localhost URL: ``(status, JSON body)`` (a non-JSON body comes back as ``{"raw": ...}``)."""
    assert url.startswith(("http://127.0.0.1:", "http://localhost:")), url
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            status, raw = int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        status, raw = int(err.code), err.read()
    except OSError:
        return 0, {}
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {"raw": raw.decode(errors="replace")}
    return status, body if isinstance(body, dict) else {"value": body}


def downstream(node: str, rows: Mapping[str, Any]) -> list[str]:
    """The nodes of a run that need ``node`` (directly or not)."""
    found = MODEL.descendants([parse_node_id(node)])
    return sorted(n.id for n in found if n.id != node and n.id in rows)


def wait_for(predicate: Any, *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


@dataclass(frozen=True)
class FirstRun:
    """A copy where the README's main command, ``inv pipeline``, ran once from a cold start."""

    project: Project
    proc: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    checkout: Path
    """A clone of the copy's commit holding the first run's step cache, taken right after that run: what the tests
    that only read the pipelined commit start from (the suites that deploy again change the copy itself)."""


def pipelined_copy(parent: Path) -> tuple[Project, subprocess.CompletedProcess[str], dict[str, Any]]:
    """Copy the project and run the whole pipeline in it, cold: its own local AWS, an empty step cache."""
    project = Project(copy_project(parent / "project", share_node_modules=True))
    try:
        proc = project.inv("pipeline", timeout=2400)
        return project, proc, project.report()
    except BaseException:
        project.down()
        raise


def frozen_checkout(project: Path, dest: Path) -> Path:
    """A clone of ``project``'s commit with a copy of its step cache, its shared environment and Node packages, and
    the scanners installed for this checkout (:data:`TOOLS_DIR`): a checkout as a user's looks after a pipeline ran.
    Nothing written to ``project`` afterwards reaches it."""
    git(dest.parent, "clone", "-q", str(project), str(dest))
    shutil.copytree(project / ".cicd" / "cache", dest / ".cicd" / "cache", symlinks=True)
    Path(TOOLS_DIR).mkdir(parents=True, exist_ok=True)
    (dest / ".cicd" / "tools").symlink_to(Path(TOOLS_DIR).resolve())
    for shared in (".venv", "node_modules"):
        if (project / shared).exists() and not (dest / shared).is_symlink():
            (dest / shared).symlink_to((project / shared).resolve())
    return dest


FIRST_RUN = "first-run.json"


def first_run(shared: Path) -> FirstRun:
    """The session's one cold ``inv pipeline`` (:func:`pipelined_copy`) and the :func:`frozen_checkout` of its commit,
    made in ``shared/`` by the first process that asks. pytest-xdist workers ask with the same folder: the others
    wait on its lock and read the record, so the cold run happens once per session whichever worker needs it first.
    The copy's local AWS keeps running until :func:`stop_first_run`."""
    shared.mkdir(parents=True, exist_ok=True)
    record = shared / FIRST_RUN
    with (shared / f"{FIRST_RUN}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.is_file():
            project, proc, report = pipelined_copy(shared)
            frozen_checkout(project.root, shared / "checkout")
            run = {"args": proc.args, "returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
            record.write_text(json.dumps({"proc": run, "report": report}), encoding="utf-8")
    data = json.loads(record.read_text(encoding="utf-8"))
    run = data["proc"]
    proc = subprocess.CompletedProcess(run["args"], run["returncode"], run["stdout"], run["stderr"])
    return FirstRun(Project(shared / "project"), proc, data["report"], shared / "checkout")


def stop_first_run(shared: Path) -> None:
    """Stop the local AWS of the session's pipelined copy in ``shared/``, if one was made."""
    if (shared / FIRST_RUN).is_file():
        Project(shared / "project").down()


@contextlib.contextmanager
def lock_held(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding a deploy lock (as a deploy in progress does) until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    code = (
        "import fcntl, sys\n"
        "handle = open(sys.argv[1], 'a+')\n"
        "fcntl.flock(handle, fcntl.LOCK_EX)\n"
        "handle.seek(0); handle.truncate(); handle.write('pid of another deploy'); handle.flush()\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", code, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)


def shadow_venv(dest: Path, *, without: set[str]) -> Path:
    """The project's virtual environment minus some programs; returns its ``bin`` folder.

    ``cicd.command.which`` always searches the interpreter's own ``bin`` folder, so hiding a program from the PATH
    is not enough while the pipeline runs from ``.venv``. ``<bin>/python -m invoke`` runs the pipeline exactly as
    ``inv`` does, from an interpreter whose ``bin`` folder lacks the hidden programs.
    """
    venv = ROOT / ".venv"
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(venv / "pyvenv.cfg", dest / "pyvenv.cfg")
    (dest / "lib").symlink_to(venv / "lib")
    for entry in (venv / "bin").iterdir():
        if entry.name not in without:
            (dest / "bin" / entry.name).symlink_to(entry)
    return dest / "bin"


def system_path(dest: Path, programs: tuple[str, ...] = ("git",)) -> str:
    """A PATH with only ``programs`` from the system (so nothing else, e.g. a system Node.js, is found)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in programs:
        found = shutil.which(name)
        assert found, f"{name} is needed on the PATH to run the suite"
        (dest / name).symlink_to(found)
    return str(dest)


def run_without(
    project: Project, bin_dir: Path, path: str, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`inv ARGS` from a shadow virtual environment with PATH limited to ``path``."""
    return subprocess.run(
        [str(bin_dir / "python"), "-m", "invoke", *args],
        cwd=project.root,
        env=base_env({**(env or {}), "PATH": f"{bin_dir}{os.pathsep}{path}"}),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
