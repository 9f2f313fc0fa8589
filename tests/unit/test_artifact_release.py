"""The packaged artifact (digests, tamper detection, the store) and the pipeline state (history, evidence, lock)."""

from __future__ import annotations

import json
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cicd import artifact as artifacts
from cicd import state
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
    f = artifacts.build(make_payload(tmp_path / "f"), version="1.2.3", commit="abc", target="aws")
    assert len({a.digest, c.digest, d.digest, e.digest, f.digest}) == 5
    assert artifacts.verify(tmp_path / "f").target == "aws" and a.target == "local"
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


def test_store_put_get_latest_and_evidence(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    folder = make_payload(tmp_path / "art")
    made = artifacts.build(folder, version="1.0.0", commit="c1")
    stored = artifacts.put(root, folder)
    assert stored.path == root / ".cicd" / "artifacts" / made.digest
    assert artifacts.get(root, made.digest[:10]).digest == made.digest
    assert artifacts.resolve(root).digest == made.digest  # via LATEST
    record = {"digest": made.digest, "env": "dev", "target": "local", "passed": True, "run_id": "run-1"}
    assert state.attach_evidence(root, None, record) == [stored.path / "passed" / "local-dev.json"]
    assert state.verify_evidence(stored.path, stored, "local", "dev")["run_id"] == "run-1"
    artifacts.verify(stored.path)  # evidence is not part of the digest
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


def test_evidence_must_name_this_artifact_target_and_environment(tmp_path: Path) -> None:
    folder = make_payload(tmp_path / "art")
    art = artifacts.build(folder, version="1.0.0", commit="c1")
    with pytest.raises(StepFailed, match="arrived without evidence that it passed the tests in dev"):
        state.verify_evidence(folder, art, "local", "dev")
    for wrong, needle in (
        ({"digest": "0" * 64}, "digest is"),
        ({"target": "aws"}, "target is 'aws'"),
        ({"passed": False}, "passed is False"),
    ):
        record = {"digest": art.digest, "env": "dev", "target": "local", "passed": True, **wrong}
        (folder / "passed").mkdir(exist_ok=True)
        (folder / "passed" / "local-dev.json").write_text(json.dumps(record))
        with pytest.raises(StepFailed, match=needle):
            state.verify_evidence(folder, art, "local", "dev")
    (folder / "passed" / "local-dev.json").write_text("{not json")
    with pytest.raises(StepFailed, match="corrupt"):
        state.verify_evidence(folder, art, "local", "dev")


def test_deploy_lock_makes_the_second_deploy_wait(tmp_path: Path) -> None:
    events: list[str] = []
    notes: list[str] = []
    inside = threading.Event()

    def first() -> None:
        with state.deploy_lock(tmp_path, "local", "dev", notify=notes.append):
            events.append("first in")
            inside.set()
            time.sleep(0.5)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait(5)
    with state.deploy_lock(tmp_path, "local", "dev", notify=notes.append):
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]
    assert notes and "another deploy to dev is running" in notes[0]


def test_deploy_lock_gives_up_after_the_timeout(tmp_path: Path) -> None:
    release_it = threading.Event()
    held = threading.Event()

    def holder() -> None:
        with state.deploy_lock(tmp_path, "local", "prod", notify=lambda _: None):
            held.set()
            release_it.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    try:
        with (
            pytest.raises(StepFailed, match="still runs after"),
            state.deploy_lock(tmp_path, "local", "prod", notify=lambda _: None, timeout_s=0.3),
        ):
            pass
    finally:
        release_it.set()
        thread.join()
