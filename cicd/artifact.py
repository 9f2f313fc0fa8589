"""Build once, deploy many: the packaged artifact, its manifest of digests, and the local artifact store.

An artifact is a folder: ``cdk.out/`` (the cloud assembly of every environment), ``lambda.zip`` (the function code,
for the record and for audits), ``flutter/`` when the app was built, and ``manifest.json``::

    {"digest": "<sha256>", "version": "0.1.42", "commit": "...", "target": "aws", "created_at": "...",
     "files": {"cdk.out/manifest.json": "<sha256>", ...}}

``target`` is the target the assembly was synthesized for (``local`` or ``aws``): a deploy to another target
refuses the artifact. ``digest`` is the SHA-256 of the version, the commit, the target and every
``<sha256>  <path>`` line, sorted, so one changed byte anywhere gives another digest. Artifacts live in the
workspace's store ``.cicd/artifacts/<digest>/`` (``LATEST`` names the newest one) and, on CI, travel between jobs
as the folder ``.cicd/artifact/``, which :func:`resolve` imports into the store after verifying it. The evidence
of the environments an artifact passed (``passed/<target>-<env>.json``, written by :mod:`cicd.state`) travels
beside the payload and is not part of the digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cicd.errors import StepFailed, UsageError

STORE = Path(".cicd") / "artifacts"
CI_ARTIFACT = Path(".cicd") / "artifact"
MANIFEST = "manifest.json"
PASSED = "passed"
LATEST = "LATEST"
ZIP_EPOCH = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Artifact:
    path: Path
    digest: str
    version: str
    commit: str | None
    created_at: str
    target: str = "local"

    @property
    def assembly(self) -> Path:
        return self.path / "cdk.out"

    @property
    def short(self) -> str:
        return self.digest[:12]

    def apk(self) -> Path | None:
        apk = self.path / "flutter" / "app-release.apk"
        return apk if apk.is_file() else None

    def web(self) -> Path | None:
        web = self.path / "flutter" / "web"
        return web if web.is_dir() else None


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _payload_files(folder: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST and not rel.startswith(f"{PASSED}/"):
            files[rel] = sha256_file(path)
    return files


def overall_digest(files: dict[str, str], version: str, commit: str | None, target: str = "local") -> str:
    lines = [f"version {version}", f"commit {commit or ''}", f"target {target}"]
    lines += [f"{sha}  {rel}" for rel, sha in sorted(files.items())]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def deterministic_zip(source: Path, dest: Path, *, exclude: tuple[str, ...] = ("__pycache__", ".pyc")) -> None:
    """Zip ``source`` with fixed timestamps and order, so the same code always gives the same bytes."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source.parent).as_posix()
            if not path.is_file() or any(part in rel for part in exclude):
                continue
            info = zipfile.ZipInfo(rel, date_time=ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())


def build(folder: Path, *, version: str, commit: str | None, target: str = "local") -> Artifact:
    """Write the manifest of an artifact folder whose payload is already in place."""
    files = _payload_files(folder)
    digest = overall_digest(files, version, commit, target)
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    manifest = {
        "digest": digest,
        "version": version,
        "commit": commit,
        "target": target,
        "created_at": created,
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return Artifact(folder, digest, version, commit, created, target)


def verify(folder: Path) -> Artifact:
    """Recompute every digest of ``folder``; raise :class:`StepFailed` naming the first mismatch."""
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        recorded: dict[str, str] = dict(manifest["files"])
        version, commit, digest = str(manifest["version"]), manifest.get("commit"), str(manifest["digest"])
        target = str(manifest.get("target") or "local")
    except FileNotFoundError:
        raise StepFailed(f"artifact {folder} has no {MANIFEST}", hint="run `inv package` to build one") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise StepFailed(f"artifact manifest {folder / MANIFEST} is corrupt", hint="run `inv package` again") from None
    actual = _payload_files(folder)
    for rel in sorted(set(recorded) | set(actual)):
        if rel not in actual:
            raise StepFailed(f"artifact {digest[:12]} was tampered with: {rel} is missing", hint="package again")
        if rel not in recorded:
            raise StepFailed(f"artifact {digest[:12]} was tampered with: {rel} was added", hint="package again")
        if recorded[rel] != actual[rel]:
            raise StepFailed(
                f"artifact {digest[:12]} was tampered with: {rel} no longer matches its sha256", hint="package again"
            )
    if overall_digest(actual, version, commit, target) != digest:
        raise StepFailed(f"artifact {digest[:12]}: the manifest digest does not match its contents")
    return Artifact(folder, digest, version, commit, str(manifest.get("created_at", "")), target)


def store_dir(root: Path) -> Path:
    return root / STORE


def put(root: Path, folder: Path, *, latest: bool = True) -> Artifact:
    """Copy a verified artifact folder into the store (once per digest); ``latest`` marks it the newest."""
    artifact = verify(folder)
    store = store_dir(root)
    dest = store / artifact.digest
    if not dest.exists():
        store.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=store, prefix=".tmp-"))
        try:
            shutil.copytree(folder, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(PASSED))
            try:
                tmp.rename(dest)
            except OSError:  # stored meanwhile by another run
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _merge_passed(folder, dest)
    if latest:
        _write_text_atomic(store / LATEST, artifact.digest)
    return Artifact(dest, artifact.digest, artifact.version, artifact.commit, artifact.created_at, artifact.target)


def _merge_passed(src: Path, dest: Path) -> None:
    if (src / PASSED).is_dir():
        (dest / PASSED).mkdir(exist_ok=True)
        for record in (src / PASSED).glob("*.json"):
            if not (dest / PASSED / record.name).exists():
                shutil.copy2(record, dest / PASSED / record.name)


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    Path(tmp).replace(path)


def get(root: Path, digest: str) -> Artifact:
    """The stored artifact ``digest`` (a unique prefix is enough), verified byte for byte."""
    store = store_dir(root)
    matches = [p for p in store.glob(f"{digest}*") if p.is_dir()] if store.is_dir() and digest else []
    if not matches:
        raise StepFailed(f"artifact {digest[:12]} is not in the store {STORE}", hint="run `inv package` to build it")
    if len(matches) > 1:
        raise UsageError(f"artifact prefix '{digest}' is ambiguous", hint="give more characters of the digest")
    return verify(matches[0])


def resolve(root: Path, run_dir: Path | None = None) -> Artifact:
    """The artifact to deploy: this run's package, else the CI-transported folder, else the store's latest."""
    if run_dir is not None and (run_dir / "artifact" / MANIFEST).exists():
        return put(root, run_dir / "artifact")
    if (root / CI_ARTIFACT / MANIFEST).exists():
        return put(root, root / CI_ARTIFACT)
    latest = store_dir(root) / LATEST
    if latest.exists():
        return get(root, latest.read_text(encoding="utf-8").strip())
    raise StepFailed("no packaged artifact found", hint="run `inv package` (or `inv pipeline`) first")
