"""Delivery steps without the CDK CLI: promotion rules, approval, publish, rollback and failure paths."""

from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cicd import artifact as artifacts
from cicd import dast, state
from cicd.context import StepContext
from cicd.errors import ConfigError, MissingToolError, StepFailed
from cicd.results import Status
from cicd.steps import deploy, verify
from tests.conftest import ROOT


def project(tmp_path: Path, extra: str = "") -> Path:
    root = tmp_path / "repo"
    root.mkdir(parents=True)
    text = (ROOT / "pyproject.toml").read_text().replace("[tool.cicd]\n", f"[tool.cicd]\n{extra}", 1)
    (root / "pyproject.toml").write_text(text)
    return root


def stored_artifact(root: Path, name: str = "a", apk: bool = False) -> artifacts.Artifact:
    folder = root.parent / f"payload-{name}"
    (folder / "cdk.out").mkdir(parents=True)
    (folder / "cdk.out" / "manifest.json").write_text(json.dumps({"name": name}))
    if apk:
        (folder / "flutter" / "web").mkdir(parents=True)
        with zipfile.ZipFile(folder / "flutter" / "app-release.apk", "w") as z:
            z.writestr("AndroidManifest.xml", "<manifest/>")
        (folder / "flutter" / "web" / "index.html").write_text("<html></html>")
    artifacts.build(folder, version="1.0.7", commit="c0ffee")
    return artifacts.put(root, folder)


def hand_off(root: Path, art: artifacts.Artifact, *, passed: str | None = None, target: str = "local") -> Path:
    """Put ``art`` where a CI job finds what the previous job handed on, with evidence of ``passed`` if given."""
    folder = root / artifacts.CI_ARTIFACT
    shutil.copytree(art.path, folder, dirs_exist_ok=True)
    if passed:
        record = {"digest": art.digest, "env": passed, "target": target, "passed": True, "run_id": "r1"}
        assert state.attach_evidence(root, None, record)
    return folder


@pytest.fixture
def stores(moto_env: None, monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], state.Store]:
    """Each environment's state in an in-process moto S3 (the tests here start no local AWS)."""
    s3: Any = boto3.client("s3", region_name="eu-west-1")
    made: dict[tuple[str, str], state.Store] = {}

    def open_store(root: Path, env: str, target: str) -> state.Store:
        return made.setdefault((env, target), state.Store(s3, f"state-{target}-{env}", env, target, "eu-west-1"))

    monkeypatch.setattr(state, "open_store", open_store)
    monkeypatch.setattr(state, "available", lambda root, target: True)
    return made


@pytest.fixture
def ctx_for(make_ctx: Callable[..., StepContext]) -> Callable[..., StepContext]:
    def factory(root: Path, step: str, env: str | None, target: str = "local") -> StepContext:
        return make_ctx(root=root, step=step, env=env, target=target)

    return factory


def test_previous_environment() -> None:
    assert deploy.previous_env("preprod") == "dev" and deploy.previous_env("prod") == "preprod"
    with pytest.raises(ConfigError, match="first environment"):
        deploy.previous_env("dev")


def test_promote_needs_the_handed_on_artifact_with_its_evidence(
    tmp_path: Path, ctx_for: Callable[..., StepContext]
) -> None:
    root = project(tmp_path)
    ctx = ctx_for(root, "promote", "preprod")
    with pytest.raises(StepFailed, match="no artifact was handed to this job"):
        deploy.promotion_candidate(ctx, "dev")
    art = stored_artifact(root)
    hand_off(root, art)
    with pytest.raises(StepFailed, match="arrived without evidence that it passed the tests in dev"):
        deploy.promotion_candidate(ctx, "dev")
    hand_off(root, art, passed="dev")
    assert deploy.promotion_candidate(ctx, "dev").digest == art.digest
    with pytest.raises(StepFailed, match="arrived without evidence"):  # evidence of the local target, not aws
        deploy.promotion_candidate(ctx_for(root, "promote", "preprod", target="aws"), "dev")


def test_promote_refuses_this_runs_artifact_before_it_passed(
    tmp_path: Path, ctx_for: Callable[..., StepContext]
) -> None:
    root = project(tmp_path)
    ctx = ctx_for(root, "promote", "preprod")
    folder = ctx.run_dir / "artifact"
    (folder / "cdk.out").mkdir(parents=True)
    (folder / "cdk.out" / "manifest.json").write_text("{}")
    artifacts.build(folder, version="1.0.0", commit=None)
    with pytest.raises(StepFailed, match=r"without evidence that it passed the tests in dev .*: refusing to promote"):
        deploy.promote(ctx)


def test_promote_refuses_a_tampered_artifact(tmp_path: Path, ctx_for: Callable[..., StepContext]) -> None:
    root = project(tmp_path)
    folder = hand_off(root, stored_artifact(root), passed="dev")
    (folder / "cdk.out" / "manifest.json").write_text('{"evil": true}')
    with pytest.raises(StepFailed, match="tampered"):
        deploy.promote(ctx_for(root, "promote", "preprod"))


def test_a_deploy_refuses_an_artifact_packaged_for_another_target(
    tmp_path: Path, ctx_for: Callable[..., StepContext]
) -> None:
    root = project(tmp_path)
    folder = tmp_path / "aws-payload"
    (folder / "cdk.out").mkdir(parents=True)
    (folder / "cdk.out" / "manifest.json").write_text("{}")
    art = artifacts.put(root, artifacts.build(folder, version="1.0.0", commit="c", target="aws").path)
    with pytest.raises(ConfigError, match="packaged for the aws target: refusing to deploy it to dev on the local"):
        deploy._deploy(ctx_for(root, "deploy", "dev"), art, "test")


def test_approval_off_passes_on_waits_then_passes_after_approve(
    tmp_path: Path,
    ctx_for: Callable[..., StepContext],
    stores: dict[tuple[str, str], state.Store],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    off = project(tmp_path)
    assert deploy.approve(ctx_for(off, "approve", "prod")).status is Status.PASSED
    root = project(tmp_path / "on", "approval = true\n")
    hand_off(root, stored_artifact(root), passed="preprod")
    diffs: list[str] = []

    def change_set(ctx: StepContext, env: Any, art: artifacts.Artifact) -> Path:
        diffs.append(art.digest)
        path = ctx.out("reports", "change-set-prod.txt")
        path.write_text("[~] AWS::Lambda::Function Handler\n")
        return path

    monkeypatch.setattr(deploy, "change_set", change_set)
    waiting = deploy.approve(ctx_for(root, "approve", "prod"))
    assert waiting.status is Status.SKIPPED and waiting.details["blocks"] is True and diffs
    assert "uv run inv approve --env prod" in (waiting.reason or "") and "change-set-prod.txt" in (waiting.reason or "")
    assert "approved artifact" in deploy.grant_approval(ctx_for(root, "approve", "prod"), "alice")
    assert stores[("prod", "local")].approval(diffs[0]) is not None  # kept in prod's state, not on this disk
    approved = deploy.approve(ctx_for(root, "approve", "prod"))
    assert approved.status is Status.PASSED and "alice" in (approved.reason or "")


def test_without_a_local_aws_there_is_no_state_and_reading_it_starts_none(
    tmp_path: Path, ctx_for: Callable[..., StepContext]
) -> None:
    root = project(tmp_path)
    with pytest.raises(StepFailed, match="nothing to roll back to"):
        deploy.rollback(ctx_for(root, "rollback", "prod"))
    with pytest.raises(StepFailed, match="dev has no recorded deployment on the local target"):
        deploy.read_outputs(ctx_for(root, "integration-test", "dev"), "dev")
    assert not (root / ".cicd" / "local" / "server.json").exists()


def test_rollback_without_a_good_artifact_fails_clearly(
    tmp_path: Path, ctx_for: Callable[..., StepContext], stores: dict[tuple[str, str], state.Store]
) -> None:
    root = project(tmp_path)
    with pytest.raises(StepFailed, match="nothing to roll back to"):
        deploy.rollback(ctx_for(root, "rollback", "prod"))
    assert "nothing to roll back to" in deploy.rollback_to_last_good(ctx_for(root, "x", "dev"), "dev", "d1")
    dev = state.open_store(root, "dev", "local")
    dev.record_deploy(digest="f" * 64, version="1.0.0", run_id="r")
    dev.mark_tested(digest="f" * 64, passed=True, run_id="r")
    message = deploy.rollback_to_last_good(ctx_for(root, "x", "dev"), "dev", "d1")
    assert "could not roll back" in message and "neither in this workspace nor in dev's state bucket" in message


def test_a_fresh_workspace_fetches_the_artifact_to_roll_back_to_from_the_environments_state(
    tmp_path: Path, stores: dict[tuple[str, str], state.Store]
) -> None:
    first = project(tmp_path / "job-1")
    art = stored_artifact(first, apk=True)
    store = state.open_store(first, "preprod", "local")
    store.keep_artifact(art)
    store.record_deploy(digest=art.digest, version=art.version, run_id="r1")
    store.mark_tested(digest=art.digest, passed=True, run_id="r1")
    store.record_deploy(digest="e" * 64, version="1.0.8", run_id="r2")
    store.mark_tested(digest="e" * 64, passed=False, run_id="r2")
    fresh = project(tmp_path / "job-2")
    assert store.running() == "e" * 64 and store.last_good(other_than=store.running()) == art.digest
    fetched = store.fetch_artifact(fresh, art.digest)
    assert fetched.digest == art.digest and fetched.path.is_relative_to(fresh) and fetched.apk() is not None


def test_state_history_last_good_running_and_tested(stores: dict[tuple[str, str], state.Store], tmp_path: Path) -> None:
    dev = state.open_store(tmp_path, "dev", "local")
    assert dev.last_good() is None and dev.running() is None
    dev.record_deploy(digest="d1", version="1.0.1", run_id="r1")
    evidence = dev.mark_tested(digest="d1", passed=True, run_id="r1")
    assert evidence["env"] == "dev" and evidence["target"] == "local" and evidence["passed"] is True
    dev.record_deploy(digest="d2", version="1.0.2", run_id="r2")
    dev.mark_tested(digest="d2", passed=False, run_id="r2")
    assert dev.running() == "d2" and dev.last_good() == "d1" and dev.last_good(other_than="d1") is None
    assert dev.tested("d2") is False and dev.tested("d1") is True and dev.tested("d3") is None
    assert state.open_store(tmp_path, "dev", "aws").last_good() is None  # targets are separate
    dev.s3.put_object(Bucket=dev.bucket, Key=state.HISTORY, Body=b"{corrupt")
    assert dev.history() == {"history": []}


def test_aws_target_checks_account_region_and_credentials_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path)
    with pytest.raises(ConfigError, match="has no account"):
        deploy.check_aws_target(root, {}, ("dev",))
    configured = project(
        tmp_path / "ok", '[tool.cicd.environments.dev]\naccount = "123456789012"\nregion = "eu-west-1"\n'
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(MissingToolError, match="no AWS credentials") as err:
        deploy.check_aws_target(configured, {}, ("dev",))
    assert err.value.return_code == 3
    deploy.check_aws_target(configured, {"AWS_PROFILE": "ci"}, ("dev",))


@pytest.fixture
def moto_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def write_deployed(ctx: StepContext, digest: str, buckets: dict[str, str]) -> None:
    deploy.write_outputs(
        ctx,
        "dev",
        {
            "env": "dev",
            "target": ctx.target,
            "digest": digest,
            "version": "1.0.7",
            "api_url": "http://127.0.0.1:9/",
            "outputs": buckets,
            "region": "eu-west-1",
            # what a deploy to the local target records: its AWS is on this machine (nothing answers here)
            **({"aws_endpoint": "http://127.0.0.1:9"} if ctx.target == "local" else {}),
        },
    )


def test_publish_uploads_the_apk_and_the_web_build_with_its_config(
    tmp_path: Path, ctx_for: Callable[..., StepContext], stores: dict[tuple[str, str], state.Store]
) -> None:
    root = project(tmp_path, '[tool.cicd.environments.dev]\naccount = "123456789012"\nregion = "eu-west-1"\n')
    art = stored_artifact(root, apk=True)
    s3 = boto3.client("s3", region_name="eu-west-1")
    for bucket in ("apk-bucket", "web-bucket"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    ctx = ctx_for(root, "publish", "dev", target="aws")
    write_deployed(ctx, art.digest, {"ApkBucketName": "apk-bucket", "WebBucketName": "web-bucket"})
    outcome = deploy.publish(ctx)
    assert outcome.status is Status.PASSED and "APK 1.0.7" in (outcome.reason or "")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="apk-bucket")["Contents"]]
    assert "apk/1.0.7/app-release.apk" in keys and "apk/LATEST" in keys
    config = json.loads(s3.get_object(Bucket="web-bucket", Key="config.json")["Body"].read())
    assert config["api_base_url"] == "http://127.0.0.1:9" and config["environment"] == "dev"


def test_publish_is_skipped_with_the_reason_without_a_flutter_build(
    tmp_path: Path, ctx_for: Callable[..., StepContext], stores: dict[tuple[str, str], state.Store]
) -> None:
    root = project(tmp_path)
    art = stored_artifact(root)
    ctx = ctx_for(root, "publish", "dev")
    write_deployed(ctx, art.digest, {"ApkBucketName": "b", "WebBucketName": "w"})
    outcome = deploy.publish(ctx)
    assert outcome.status is Status.SKIPPED and "no Flutter build" in (outcome.reason or "")


def test_deployed_digest_reads_the_stack_parameter(moto_env: None) -> None:
    cfn: Any = boto3.client("cloudformation", region_name="eu-west-1")
    template = {
        "Parameters": {"ArtifactDigest": {"Type": "String", "Default": "none"}},
        "Resources": {"B": {"Type": "AWS::S3::Bucket"}},
    }
    assert deploy.deployed_digest(cfn, "LatestApk-dev") is None
    cfn.create_stack(
        StackName="LatestApk-dev",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "ArtifactDigest", "ParameterValue": "abc123"}],
    )
    assert deploy.deployed_digest(cfn, "LatestApk-dev") == "abc123"


def test_failed_integration_tests_fail_the_step_mark_the_deploy_and_say_what_rollback_did(
    tmp_path: Path,
    ctx_for: Callable[..., StepContext],
    stores: dict[tuple[str, str], state.Store],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The suite runs for real against a dev where nothing answers (API and AWS on a closed local port)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the suite's S3 upload fails at once, without botocore's retries
    root = project(tmp_path)
    for folder in ("tests", "cicd", "functions"):
        (root / folder).symlink_to(ROOT / folder)
    art = stored_artifact(root)
    hand_off(root, art)
    ctx = ctx_for(root, "integration-test", "dev")
    write_deployed(ctx, art.digest, {"ApkBucketName": "b", "WebBucketName": "w"})
    dev = state.open_store(root, "dev", "local")
    dev.record_deploy(digest=art.digest, version="1.0.7", run_id="r")
    with pytest.raises(StepFailed, match="integration tests failed in dev") as err:
        verify.integration_test(ctx)
    assert "nothing to roll back to" in str(err.value)
    assert dev.history()["history"][-1]["passed"] is False
    assert not (root / artifacts.CI_ARTIFACT / "passed").exists()  # no evidence handed on
    assert (ctx.run_dir / "reports" / "integration-test-dev.junit.xml").is_file()


@pytest.fixture
def dast_ready(
    tmp_path: Path, ctx_for: Callable[..., StepContext], stores: dict[tuple[str, str], state.Store]
) -> tuple[StepContext, artifacts.Artifact]:
    """dev runs ``art`` and its integration tests passed (state and evidence), as when ``dast:dev`` starts."""
    root = project(tmp_path)
    art = stored_artifact(root)
    hand_off(root, art, passed="dev")
    ctx = ctx_for(root, "dast", "dev")
    write_deployed(ctx, art.digest, {"ApkBucketName": "b", "WebBucketName": "w"})
    dev = state.open_store(root, "dev", "local")
    dev.record_deploy(digest=art.digest, version="1.0.7", run_id="r")
    dev.mark_tested(digest=art.digest, passed=True, run_id="r")
    return ctx, art


def test_dast_runs_schemathesis_against_the_deployed_api_and_says_what_it_did(
    dast_ready: tuple[StepContext, artifacts.Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, art = dast_ready
    calls: list[dict[str, Any]] = []

    def run(root: Path, url: str, out: Path, profile: dast.Profile, **kw: Any) -> dast.DastResult:
        calls.append({"url": url, "profile": profile, **kw})
        out.mkdir(parents=True, exist_ok=True)
        (out / "dast.junit.xml").write_text('<testsuites><testsuite name="schemathesis" tests="3"/></testsuites>')
        return dast.DastResult(0, 312, 3, junit=out / "dast.junit.xml")

    monkeypatch.setattr(dast, "run", run)
    outcome = verify.dast(ctx)
    assert outcome.status is Status.PASSED
    assert outcome.reason == "schemathesis (full) made 312 requests to 3 operations, no failures"
    assert calls[0]["url"] == "http://127.0.0.1:9/" and calls[0]["profile"] is dast.FULL
    assert calls[0]["rate_limit"] is None and calls[0]["seed"] == int(art.digest[:8], 16)
    assert 'name="dast-dev"' in (ctx.run_dir / "reports" / "dast-dev.junit.xml").read_text()


def test_a_dast_failure_fails_the_step_withdraws_the_evidence_and_rolls_back(
    dast_ready: tuple[StepContext, artifacts.Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, art = dast_ready
    evidence = ctx.root / artifacts.CI_ARTIFACT / "passed" / "local-dev.json"
    assert evidence.is_file()
    failures = [f"GET /apk/latest: ST10{i} Server error" for i in range(5)]
    monkeypatch.setattr(dast, "run", lambda *a, **kw: dast.DastResult(1, 200, 3, failures))
    with pytest.raises(StepFailed, match=r"DAST failed in dev \(schemathesis \(full\) made 200 requests") as err:
        verify.dast(ctx)
    assert "5 failure(s)" in str(err.value) and "and 2 more" in str(err.value)
    assert "nothing to roll back to" in str(err.value)
    assert state.open_store(ctx.root, "dev", "local").tested(art.digest) is False
    assert not evidence.exists()  # promote:preprod now refuses the artifact


def test_a_dast_run_that_did_not_finish_says_so(
    dast_ready: tuple[StepContext, artifacts.Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, _ = dast_ready
    stopped = dast.DastResult(-9, 0, 0, log_tail="fuzzing GET /apk/latest\n")
    monkeypatch.setattr(dast, "run", lambda *a, **kw: stopped)
    with pytest.raises(StepFailed, match=r"schemathesis did not finish \(exit -9\): fuzzing GET /apk/latest"):
        verify.dast(ctx)


def test_the_state_bucket_is_one_the_environments_deploy_role_may_manage() -> None:
    """infra/ci's deploy roles manage the buckets named `latestapk-<env>-*` (AppResourcesByName)."""
    import fnmatch

    from cicd import config as cfg

    for env in cfg.DEFAULT_ENVIRONMENTS:
        aws = dataclasses.replace(env, account="123456789012", region="eu-west-1")
        name = state.bucket_name(aws, "aws")
        assert fnmatch.fnmatch(name, f"{cfg.APP_NAME.lower()}-{env.name}-*"), name
        assert len(name) <= 63 and name == name.lower()
        assert state.bucket_name(dataclasses.replace(aws, state_bucket="my-state"), "aws") == "my-state"
    assert state.bucket_name(cfg.DEFAULT_ENVIRONMENTS[0], "local") == "latestapk-dev-state"


def test_dast_on_the_local_target_only_targets_this_machine(
    dast_ready: tuple[StepContext, artifacts.Artifact], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, _ = dast_ready
    deployed = deploy.read_outputs(ctx, "dev")
    deploy.write_outputs(ctx, "dev", {**deployed, "api_url": "https://abc.execute-api.eu-west-1.amazonaws.com/api/"})
    monkeypatch.setattr(dast, "run", lambda *a, **kw: pytest.fail("schemathesis must not start"))
    with pytest.raises(StepFailed, match=r"refusing to run DAST against https://abc\.execute-api"):
        verify.dast(ctx)
