"""The pipeline's state, with one owner: what each environment runs and ran, which artifact passed where, who
approved what, and each deploy's outputs.

A CI job starts on a fresh machine, so nothing here lives on the job's disk. Each environment keeps its own
state **in its target**, where every job and a laptop see the same truth and only that environment's credentials
are needed (the DPRA layout: each environment's account stores the artifacts it ran and its deploy history):

* **aws**: the bucket ``latestapk-<env>-state-<account>-<region>`` (or ``state_bucket`` of
  ``[tool.cicd.environments.<env>]``) in the environment's own account, created on first use: private, encrypted,
  versioned. The deploy roles of ``infra/ci`` may manage it (their ``latestapk-<env>-*`` buckets).
* **local**: the bucket ``latestapk-<env>-state`` in the embedded AWS (moto), so jobs in separate workspaces that
  share one local AWS share their state, the way CI jobs share an account.

Keys, under the environment's bucket::

    history.json                 {"running": digest, "history": [{digest, version, run_id, deployed_at,
                                   passed: true|false|null, tested_at}, ...]}   (newest last)
    artifacts/<digest>.tar.gz    the artifact as deployed there: ``rollback`` redeploys it from here
    approvals/<digest>.json      who approved the artifact for this environment, and when
    outputs.json                 what the last deploy recorded (API URL, stack outputs, digest)

**Evidence.** When an artifact passes an environment's tests, the same record is written to that environment's
history and, as ``passed/<target>-<env>.json``, into the artifact hand-off folder (``.cicd/artifact/``, which the CI
tools carry from job to job). ``promote`` accepts only an artifact that arrived with the evidence of the
environment before, recorded for exactly its digest and target (:func:`verify_evidence`); the evidence is never
part of the digest, so adding it changes nothing that was tested.

A file lock per target and environment (:func:`deploy_lock`) makes a second deploy *in the same workspace* wait;
across CI jobs the tools' own per-environment concurrency controls serialize deploys.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd import artifact as artifacts
from cicd import config as cfg
from cicd.errors import ConfigError, StepFailed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from cicd.context import StepContext

LOCKS = Path(".cicd") / "locks"
DEFAULT_LOCK_TIMEOUT_S = 900.0
HISTORY_LIMIT = 50
BUCKET_PREFIX = "latestapk"
"""``latestapk-<env>-...``: the names the deploy roles of ``infra/ci`` may manage (``AppResourcesByName``)."""
HISTORY = "history.json"
OUTPUTS = "outputs.json"
EVIDENCE_DIR = artifacts.PASSED


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def bucket_name(env: cfg.Environment, target: str) -> str:
    """The state bucket of ``env`` on ``target`` (see the module docstring)."""
    if target == "local":
        return f"{BUCKET_PREFIX}-{env.name}-state"
    if env.state_bucket:
        return env.state_bucket
    account, region = cfg.require_aws(env)
    return f"{BUCKET_PREFIX}-{env.name}-state-{account}-{region}"


@dataclass
class Store:
    """One environment's state in its target: a thin JSON/file layer over one S3 bucket."""

    s3: S3Client
    bucket: str
    env: str
    target: str
    region: str
    _ready: bool = False

    # -------------------------------------------------------------------------------------------- raw access
    def _ensure(self) -> None:
        if self._ready:
            return
        from botocore.exceptions import ClientError

        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise StepFailed(
                    f"the state bucket {self.bucket} of {self.env} cannot be read ({code})",
                    hint="the job's role needs s3 access to it (infra/ci grants its latestapk-<env>-* buckets)",
                ) from None
            self._create()
        self._ready = True

    def _create(self) -> None:
        from botocore.exceptions import ClientError

        args: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.s3.create_bucket(**args)
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code", "")) not in ("BucketAlreadyOwnedByYou",):
                raise StepFailed(f"could not create the state bucket {self.bucket}: {err}") from None
        self.s3.put_public_access_block(
            Bucket=self.bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        self.s3.put_bucket_encryption(
            Bucket=self.bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})

    def get_json(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        self._ensure()
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404"):
                return None
            raise
        try:
            data = json.loads(body)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def put_json(self, key: str, data: dict[str, Any]) -> None:
        self._ensure()
        body = (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def has(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        self._ensure()
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return False
        return True

    # -------------------------------------------------------------------------------------------- history
    def history(self) -> dict[str, Any]:
        data = self.get_json(HISTORY) or {}
        if not isinstance(data.get("history"), list):
            data["history"] = []
        return data

    def _write_history(self, data: dict[str, Any]) -> None:
        data["history"] = data["history"][-HISTORY_LIMIT:]
        self.put_json(HISTORY, data)

    def record_deploy(self, *, digest: str, version: str, run_id: str) -> None:
        data = self.history()
        data["history"].append(
            {"digest": digest, "version": version, "run_id": run_id, "deployed_at": now(), "passed": None}
        )
        data["running"] = digest
        self._write_history(data)

    def mark_tested(self, *, digest: str, passed: bool, run_id: str) -> dict[str, Any]:
        """Mark the newest deploy of ``digest`` as passed or failed its tests; returns the record (the evidence)."""
        data = self.history()
        for entry in reversed(data["history"]):
            if entry.get("digest") == digest:
                break
        else:
            entry = {"digest": digest}
            data["history"].append(entry)
        entry.update({"passed": passed, "tested_at": now(), "tested_by_run": run_id})
        self._write_history(data)
        return {
            "digest": digest,
            "version": entry.get("version"),
            "env": self.env,
            "target": self.target,
            "run_id": run_id,
            "passed": passed,
            "passed_at": entry["tested_at"],
        }

    def running(self) -> str | None:
        value = self.history().get("running")
        return str(value) if value else None

    def last_good(self, *, other_than: str | None = None) -> str | None:
        """The newest artifact that passed its tests here (other than ``other_than``)."""
        for entry in reversed(self.history()["history"]):
            if entry.get("passed") and entry.get("digest") != other_than:
                return str(entry["digest"])
        return None

    def tested(self, digest: str) -> bool | None:
        """True/False when ``digest``'s newest deploy here was tested, None when it never was."""
        for entry in reversed(self.history()["history"]):
            if entry.get("digest") == digest and entry.get("passed") is not None:
                return bool(entry["passed"])
        return None

    # -------------------------------------------------------------------------------------------- artifacts
    def artifact_key(self, digest: str) -> str:
        return f"artifacts/{digest}.tar.gz"

    def keep_artifact(self, art: artifacts.Artifact) -> None:
        """Store the deployed artifact (once per digest), so a fresh job can roll back to it."""
        key = self.artifact_key(art.digest)
        if self.has(key):
            return
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(art.path.rglob("*")):
                rel = path.relative_to(art.path).as_posix()
                if path.is_file() and not rel.startswith(f"{EVIDENCE_DIR}/"):
                    tar.add(path, arcname=rel, recursive=False)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=buffer.getvalue())

    def fetch_artifact(self, root: Path, digest: str) -> artifacts.Artifact:
        """The artifact ``digest`` as this environment ran it: from the local store, else from the state bucket."""
        with contextlib.suppress(StepFailed):
            return artifacts.get(root, digest)
        from botocore.exceptions import ClientError

        self._ensure()
        try:
            blob = self.s3.get_object(Bucket=self.bucket, Key=self.artifact_key(digest))["Body"].read()
        except ClientError:
            raise StepFailed(
                f"artifact {digest[:12]} is neither in this workspace nor in {self.env}'s state bucket {self.bucket}"
            ) from None
        store = artifacts.store_dir(root)
        store.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=store, prefix=".fetch-"))
        try:
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
                tar.extractall(tmp, filter="data")
            fetched = artifacts.put(root, tmp, latest=False)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if fetched.digest != digest:
            raise StepFailed(f"{self.env}'s stored artifact {digest[:12]} has the digest {fetched.short}: refusing it")
        return fetched

    # -------------------------------------------------------------------------------------------- approvals
    def approval(self, digest: str) -> dict[str, Any] | None:
        return self.get_json(f"approvals/{digest}.json")

    def approve(self, art: artifacts.Artifact, by: str) -> dict[str, Any]:
        record = {"digest": art.digest, "version": art.version, "env": self.env, "by": by, "at": now()}
        self.put_json(f"approvals/{art.digest}.json", record)
        return record

    # -------------------------------------------------------------------------------------------- outputs
    def outputs(self) -> dict[str, Any] | None:
        return self.get_json(OUTPUTS)

    def write_outputs(self, data: dict[str, Any]) -> None:
        self.put_json(OUTPUTS, data)


def available(root: Path, target: str) -> bool:
    """False when there can be no state to read: the local target with no local AWS running (a new server is an
    empty AWS). Readers ask first, so reading never starts a server."""
    if target != "local":
        return True
    from cicd import local_aws

    return local_aws.status(root).running


def open_store(root: Path, env: str, target: str) -> Store:
    """The state store of ``env`` on ``target`` (starting the local AWS on the local target)."""
    config = cfg.load_config(root)
    environment = config.environment(env)
    if target == "local":
        from cicd import local_aws

        server = local_aws.up(root, port=config.local_port, region=config.local_region, warm=False)
        s3 = server.session().client("s3", endpoint_url=server.endpoint)
        return Store(s3, bucket_name(environment, target), env, target, server.region)
    if target != "aws":
        raise ConfigError(f"unknown target '{target}'", hint="use local or aws")
    import boto3

    _, region = cfg.require_aws(environment)
    return Store(boto3.client("s3", region_name=region), bucket_name(environment, target), env, target, region)


def for_step(ctx: StepContext, env: str | None = None) -> Store:
    name = env or ctx.env
    if name is None:
        raise ConfigError(f"step {ctx.step} needs an environment")
    return open_store(ctx.root, name, ctx.target)


# ------------------------------------------------------------------------------------------------- evidence
def evidence_name(target: str, env: str) -> str:
    return f"{target}-{env}.json"


def hand_off_folders(root: Path, run_dir: Path | None) -> list[Path]:
    """The artifact folders that travel on: this run's package and the CI hand-off folder."""
    folders = [run_dir / "artifact"] if run_dir is not None else []
    folders.append(root / artifacts.CI_ARTIFACT)
    return [f for f in folders if (f / artifacts.MANIFEST).is_file()]


def attach_evidence(root: Path, run_dir: Path | None, record: dict[str, Any]) -> list[Path]:
    """Write the passed record into every hand-off folder (and the local store copy) that holds its digest."""
    written: list[Path] = []
    name = evidence_name(str(record["target"]), str(record["env"]))
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    folders = hand_off_folders(root, run_dir)
    stored = artifacts.store_dir(root) / str(record["digest"])
    if (stored / artifacts.MANIFEST).is_file():
        folders.append(stored)
    for folder in folders:
        if manifest_digest(folder) == record["digest"]:
            path = folder / EVIDENCE_DIR / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def withdraw_evidence(root: Path, run_dir: Path | None, record: dict[str, Any]) -> list[Path]:
    """Remove the evidence that ``record``'s artifact passed its environment (a later test of it failed)."""
    name = evidence_name(str(record["target"]), str(record["env"]))
    folders = [*hand_off_folders(root, run_dir), artifacts.store_dir(root) / str(record["digest"])]
    removed = []
    for folder in folders:
        path = folder / EVIDENCE_DIR / name
        if manifest_digest(folder) == record["digest"] and path.is_file():
            path.unlink()
            removed.append(path)
    return removed


def manifest_digest(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / artifacts.MANIFEST).read_text(encoding="utf-8"))["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def verify_evidence(folder: Path, art: artifacts.Artifact, target: str, source: str) -> dict[str, Any]:
    """The evidence in ``folder`` that ``art`` passed ``source`` on ``target``; :class:`StepFailed` otherwise."""
    path = folder / EVIDENCE_DIR / evidence_name(target, source)
    hint = f"the job must receive the artifact that the {source} job handed on after its tests passed"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StepFailed(
            f"artifact {art.short} arrived without evidence that it passed the tests in {source} "
            f"({artifacts.CI_ARTIFACT}/{EVIDENCE_DIR}/{path.name} is missing): refusing to promote it",
            hint=hint,
        ) from None
    except (OSError, ValueError):
        raise StepFailed(f"the evidence {path} is corrupt: refusing to promote artifact {art.short}") from None
    problems = [
        f"{key} is {record.get(key)!r}, not {want!r}"
        for key, want in (("digest", art.digest), ("target", target), ("env", source), ("passed", True))
        if not isinstance(record, dict) or record.get(key) != want
    ]
    if problems:
        raise StepFailed(
            f"the evidence that artifact {art.short} passed {source} does not match it ({'; '.join(problems)})",
            hint=hint,
        )
    return dict(record)


# ------------------------------------------------------------------------------------------------- locks
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
