"""The packaged artifact (digests, tamper detection, the store) and environment release state (history, lock)."""

from __future__ import annotations

import json
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cicd import artifact as artifacts
from cicd import release
from cicd.errors import StepFailed, UsageError


def make_payload(folder: Path, text: str = "v1") -> Path:
    (folder / "cdk.out").mkdir(parents=True)
    (folder / "cdk.out" / "manifest.json").write_text('{"version": "40.0.0"}')
    (folder / "cdk.out" / "stack.template.json").write_text(json.dumps({"text": text}))
    (folder / "lambda.zip").write_bytes(b"zip-bytes")
    return folder


def test_manifest_digest_changes_with_any_byte_version_or_commit(tmp_path: Path) -> None:
    a = artifacts.build(make_payload(tmp_path / "a"), version="1.2.3", commit="abc")
    b = artifacts.build(make_payload(tmp_path / "b"), version="1.2.3", commit="abc")
    assert a.digest == b.digest and len(a.digest) == 64
    c = artifacts.build(make_payload(tmp_path / "c", "v2"), version="1.2.3", commit="abc")
    d = artifacts.build(make_payload(tmp_path / "d"), version="1.2.4", commit="abc")
    e = artifacts.build(make_payload(tmp_path / "e"), version="1.2.3", commit="def")
    assert len({a.digest, c.digest, d.digest, e.digest}) == 4
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"cdk.out/manifest.json", "cdk.out/stack.template.json", "lambda.zip"}


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda f: (f / "lambda.zip").write_bytes(b"evil"), "lambda.zip no longer matches"),
        (lambda f: (f / "lambda.zip").unlink(), "lambda.zip is missing"),
        (lambda f: (f / "cdk.out" / "extra.json").write_text("{}"), "cdk.out/extra.json was added"),
        (lambda f: (f / "manifest.json").write_text("{not json"), "is corrupt"),
    ],
)
def test_verify_names_the_tampered_file(tmp_path: Path, tamper: Callable[[Path], object], message: str) -> None:
    folder = make_payload(tmp_path / "art")
    artifacts.build(folder, version="1.0.0", commit=None)
    artifacts.verify(folder)
    tamper(folder)
    with pytest.raises(StepFailed, match=message):
        artifacts.verify(folder)


def test_store_put_get_latest_and_passed_records(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    folder = make_payload(tmp_path / "art")
    made = artifacts.build(folder, version="1.0.0", commit="c1")
    stored = artifacts.put(root, folder)
    assert stored.path == root / ".cicd" / "artifacts" / made.digest
    assert artifacts.get(root, made.digest[:10]).digest == made.digest
    assert artifacts.resolve(root).digest == made.digest  # via LATEST
    assert not artifacts.passed_in(stored, "local", "dev")
    artifacts.record_passed(stored, "local", "dev", "run-1")
    assert artifacts.passed_in(stored, "local", "dev")
    artifacts.verify(stored.path)  # passed records are not part of the digest
    (stored.path / "lambda.zip").write_bytes(b"changed")
    with pytest.raises(StepFailed, match="tampered"):
        artifacts.get(root, made.digest)
    with pytest.raises(StepFailed, match="not in the store"):
        artifacts.get(root, "0" * 64)


def test_resolve_prefers_the_run_then_the_ci_folder(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    with pytest.raises(StepFailed, match="no packaged artifact"):
        artifacts.resolve(root)
    ci = make_payload(root / ".cicd" / "artifact")
    from_ci = artifacts.build(ci, version="2.0.0", commit=None)
    assert artifacts.resolve(root).digest == from_ci.digest
    run_dir = tmp_path / "run"
    mine = artifacts.build(make_payload(run_dir / "artifact", "other"), version="2.0.1", commit=None)
    assert artifacts.resolve(root, run_dir).digest == mine.digest


def test_ambiguous_prefix_is_a_usage_error(tmp_path: Path) -> None:
    store = tmp_path / ".cicd" / "artifacts"
    (store / "ab1").mkdir(parents=True)
    (store / "ab2").mkdir()
    with pytest.raises(UsageError, match="ambiguous"):
        artifacts.get(tmp_path, "ab")


def test_deterministic_zip(tmp_path: Path) -> None:
    src = tmp_path / "pkg"
    (src / "__pycache__").mkdir(parents=True)
    (src / "a.py").write_text("x = 1\n")
    (src / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    artifacts.deterministic_zip(src, tmp_path / "one.zip")
    time.sleep(0.01)
    (src / "a.py").touch()
    artifacts.deterministic_zip(src, tmp_path / "two.zip")
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    assert zipfile.ZipFile(tmp_path / "one.zip").namelist() == ["pkg/a.py"]


def test_release_history_last_good_and_running(tmp_path: Path) -> None:
    assert release.last_good(tmp_path, "local", "dev") is None
    release.record_deploy(tmp_path, "local", "dev", digest="d1", version="1.0.1", run_id="r1")
    release.mark_tested(tmp_path, "local", "dev", digest="d1", passed=True)
    release.record_deploy(tmp_path, "local", "dev", digest="d2", version="1.0.2", run_id="r2")
    release.mark_tested(tmp_path, "local", "dev", digest="d2", passed=False)
    assert release.running(tmp_path, "local", "dev") == "d2"
    assert release.last_good(tmp_path, "local", "dev") == "d1"
    assert release.last_good(tmp_path, "local", "dev", other_than="d1") is None
    assert release.last_good(tmp_path, "aws", "dev") is None  # targets are separate
    release.state_path(tmp_path, "local", "dev").write_text("{corrupt")
    assert release.read_state(tmp_path, "local", "dev") == {"history": []}


def test_deploy_lock_makes_the_second_deploy_wait(tmp_path: Path) -> None:
    events: list[str] = []
    notes: list[str] = []
    inside = threading.Event()

    def first() -> None:
        with release.deploy_lock(tmp_path, "local", "dev", notify=notes.append):
            events.append("first in")
            inside.set()
            time.sleep(0.5)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait(5)
    with release.deploy_lock(tmp_path, "local", "dev", notify=notes.append):
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]
    assert notes and "another deploy to dev is running" in notes[0]


def test_deploy_lock_gives_up_after_the_timeout(tmp_path: Path) -> None:
    release_it = threading.Event()
    held = threading.Event()

    def holder() -> None:
        with release.deploy_lock(tmp_path, "local", "prod", notify=lambda _: None):
            held.set()
            release_it.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    try:
        with (
            pytest.raises(StepFailed, match="still runs after"),
            release.deploy_lock(tmp_path, "local", "prod", notify=lambda _: None, timeout_s=0.3),
        ):
            pass
    finally:
        release_it.set()
        thread.join()
