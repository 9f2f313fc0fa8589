"""Build once, deploy many: package, deploy, promote, rollback, publish.

``package`` freezes this commit's cloud assembly (all environments, synthesized for the target it will deploy to),
Lambda code and Flutter builds into one artifact with a digest (:mod:`cicd.artifact`). Every later step deploys
*that* artifact, never a new synth: ``deploy`` (dev, or any environment by hand), ``promote`` (the artifact handed
on with the evidence that it passed the previous environment's tests, verified byte for byte), ``rollback`` (the
last artifact that passed in the environment, fetched from that environment's state in the target).
What each environment ran, passed and approved lives in the target (:mod:`cicd.state`), never on a job's disk.

Targets: ``local`` deploys with the real CDK CLI to the embedded moto server (``--method=direct``) and serves the
deployed API on localhost; ``aws`` runs a standard ``cdk deploy`` (change sets) with the caller's credentials.
The build version, commit and digest go in as stack parameters; an environment already running the digest is a
no-op (one CloudFormation read).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cicd import artifact as artifacts
from cicd import command, state
from cicd import config as cfg
from cicd.context import StepContext
from cicd.errors import CommandFailed, ConfigError, MissingToolError, StepFailed
from cicd.results import Outcome, Status

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_s3 import S3Client

CREDENTIAL_SOURCES = (
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ("AWS_PROFILE",),
    ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"),
    ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",),
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI",),
)
IMDS_TIMEOUT_S = 1
"""How long the preflight waits for an instance role (EC2 instance metadata, e.g. a Jenkins agent's role)."""


# ---------------------------------------------------------------------------------------------------- targets
def check_aws_target(root: Path, environ: dict[str, str] | os._Environ[str], envs: tuple[str, ...]) -> None:
    """Up-front checks of the aws target: account and region per environment, then credentials."""
    check_aws_accounts(root, envs)
    has_files = any((Path.home() / ".aws" / f).is_file() for f in ("credentials", "config"))
    if has_files or any(all(environ.get(v) for v in group) for group in CREDENTIAL_SOURCES):
        return
    if environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true" and instance_role_available():
        return
    raise MissingToolError(
        "no AWS credentials for the aws target (none of AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
        "AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN, a container role, an instance role or ~/.aws/credentials)",
        hint="on a laptop: `aws sso login` and set AWS_PROFILE; on CI: the OIDC role of the job",
    )


def instance_role_available() -> bool:
    """True when the EC2 instance metadata service hands out role credentials (an agent's instance role)."""
    from botocore.credentials import InstanceMetadataFetcher

    fetcher = InstanceMetadataFetcher(timeout=IMDS_TIMEOUT_S, num_attempts=1)
    try:
        return bool(fetcher.retrieve_iam_role_credentials())
    except Exception:
        return False


def _env(ctx: StepContext) -> cfg.Environment:
    if ctx.env is None:
        raise ConfigError(f"step {ctx.step} needs an environment")
    return cfg.load_config(ctx.root).environment(ctx.env)


def _endpoint(ctx: StepContext) -> str | None:
    """The local AWS endpoint (starting the server if needed), or None on the aws target."""
    if ctx.target != "local":
        return None
    from cicd import local_aws

    config = cfg.load_config(ctx.root)
    return local_aws.up(ctx.root, port=config.local_port, region=config.local_region).endpoint


def _session_client(ctx: StepContext, service: str, env: cfg.Environment) -> Any:
    import boto3

    if ctx.target == "local":
        from cicd import local_aws

        server = local_aws.current(ctx.root)
        return server.session().client(service, endpoint_url=server.endpoint)  # type: ignore[call-overload]
    _, region = cfg.require_aws(env)
    return boto3.client(service, region_name=region)  # type: ignore[call-overload]


def deployed_digest(cfn: CloudFormationClient, stack: str) -> str | None:
    """The ArtifactDigest parameter of a healthy stack, or None when the stack is absent or not settled."""
    from botocore.exceptions import ClientError

    try:
        stacks = cfn.describe_stacks(StackName=stack)["Stacks"]
    except ClientError:
        return None
    if not stacks or not stacks[0]["StackStatus"].endswith("_COMPLETE") or "ROLLBACK" in stacks[0]["StackStatus"]:
        return None
    params = {p["ParameterKey"]: p.get("ParameterValue") for p in stacks[0].get("Parameters", [])}
    return params.get("ArtifactDigest")


def _stack_outputs(cfn: CloudFormationClient, stack: str) -> dict[str, str]:
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", []) if "OutputValue" in o}


# ---------------------------------------------------------------------------------------------------- outputs
def write_outputs(ctx: StepContext, env: str, data: dict[str, Any]) -> Path:
    """Record what a deploy produced: in the environment's state (for later jobs) and in this run's folder."""
    state.for_step(ctx, env).write_outputs(data)
    path = ctx.out("outputs", f"{env}.json")
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_outputs(ctx: StepContext, env: str) -> dict[str, Any]:
    """What the last deploy to ``env`` recorded: this run's record, else the environment's state in the target."""
    path = ctx.run_dir / "outputs" / f"{env}.json"
    if path.is_file():
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    recorded = state.for_step(ctx, env).outputs() if state.available(ctx.root, ctx.target) else None
    if recorded is None:
        raise StepFailed(
            f"{env} has no recorded deployment on the {ctx.target} target", hint=f"run `inv deploy --env {env}`"
        )
    return recorded


# ---------------------------------------------------------------------------------------------------- package
def package(ctx: StepContext) -> Outcome:
    """Freeze this commit's assembly (for the run's target), Lambda code and Flutter builds into one artifact."""
    from cicd import versioning
    from cicd.steps import iac

    build = versioning.build_version(ctx.root)
    if not versioning.VERSION_RE.match(build.version):  # e.g. a bad CICD_BUILD_VERSION, with synth from the cache
        raise ConfigError(
            f"build version '{build.version}' is not MAJOR.MINOR.PATCH",
            hint="set CICD_BUILD_VERSION=1.2.3, or unset it to derive the version from git",
        )
    if ctx.target == "aws":
        check_aws_accounts(ctx.root, cfg.ENVIRONMENTS)
    # The assembly is synthesized for the target the artifact will be deployed to (the synth check's own
    # assembly is the aws one, for the scans, whatever the target).
    assembly = iac.synthesize(ctx, ctx.target, ctx.out("package", "cdk.out"))
    folder = ctx.run_dir / "artifact"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copytree(assembly, folder / "cdk.out")
    artifacts.deterministic_zip(ctx.root / "functions" / "latest_apk", folder / "lambda.zip")
    flutter = _flutter_build(ctx, build.version)
    if flutter is not None:
        shutil.copytree(flutter, folder / "flutter")
    made = artifacts.build(folder, version=build.version, commit=build.commit, target=ctx.target)
    stored = artifacts.put(ctx.root, folder)
    ci_copy = ctx.root / artifacts.CI_ARTIFACT
    shutil.rmtree(ci_copy, ignore_errors=True)
    shutil.copytree(folder, ci_copy)
    files = len(json.loads((folder / artifacts.MANIFEST).read_text())["files"])
    ctx.note(f"artifact {made.digest} (version {made.version}, {ctx.target} target) stored at {ctx.rel(stored.path)}")
    return Outcome.passed(
        f"artifact {made.short} · version {made.version} · {ctx.target} target · {files} files"
        f"{'' if made.apk() else ' · no APK'}",
        digest=made.digest,
        version=made.version,
        target=ctx.target,
    )


def _flutter_build(ctx: StepContext, version: str) -> Path | None:
    """The Flutter build of this version: this run's, else the one a CI job handed on in ``.cicd/artifact/flutter``."""
    for folder in (ctx.run_dir / "flutter", ctx.root / artifacts.CI_ARTIFACT / "flutter"):
        info = folder / "build.json"
        if not info.is_file():
            continue
        built = json.loads(info.read_text(encoding="utf-8")).get("version")
        if built != version:
            raise StepFailed(
                f"the Flutter build in {ctx.rel(folder)} is version {built}, not this build's {version}",
                hint="run `inv flutter-build` for this commit before `inv package`",
            )
        ctx.note(f"Flutter build {version} from {ctx.rel(folder)}")
        return folder
    if ctx.environ.get("CICD_REQUIRE_FLUTTER") == "1":
        raise StepFailed(
            "no Flutter build reached package (CICD_REQUIRE_FLUTTER=1)",
            hint="the flutter-build job must hand on .cicd/artifact/flutter/ to the package job",
        )
    ctx.note("no Flutter build in this run (flutter-build skipped or not run): the artifact carries no APK")
    return None


def check_aws_accounts(root: Path, envs: tuple[str, ...]) -> None:
    config = cfg.load_config(root)
    for name in envs:
        cfg.require_aws(config.environment(name))


# ---------------------------------------------------------------------------------------------------- deploy
class DeployRejected(StepFailed):
    """CloudFormation (through the CDK CLI) refused a deploy; the environment is rolled back to its last good one."""


def _deploy(ctx: StepContext, art: artifacts.Artifact, why: str, *, roll_back: bool = True) -> Outcome:
    env = _env(ctx)
    art = artifacts.verify(art.path)
    if art.target != ctx.target:
        raise ConfigError(
            f"artifact {art.short} was packaged for the {art.target} target: refusing to deploy it to {env.name} "
            f"on the {ctx.target} target",
            hint=f"package for this target (`CICD_TARGET={ctx.target} inv package`) and deploy that",
        )
    try:
        with state.deploy_lock(ctx.root, ctx.target, env.name, notify=_notifier(ctx)):
            return _deploy_locked(ctx, env, art, why)
    except DeployRejected as err:
        if not roll_back:
            raise
        # CloudFormation rolls a failed update back on AWS; moto may leave it half applied. Either way the
        # environment ends on the last artifact that passed its tests there (outside the lock, which it takes).
        outcome = rollback_to_last_good(ctx, env.name, art.digest)
        ctx.note(outcome)
        raise StepFailed(f"{err}; {outcome}") from None


def _notifier(ctx: StepContext) -> Callable[[str], None]:
    """Note a message in the step log and say it on the terminal too (a deploy waiting for the lock)."""

    def say(message: str) -> None:
        ctx.note(message)
        print(command.scrubber()(f"{ctx.node_id}: {message}"), file=sys.stderr, flush=True)

    return say


def _check_local_aws(ctx: StepContext) -> None:
    """On the local target, raise ``LocalAwsStopped`` (exit 3) when the local AWS died under the deploy."""
    if ctx.target == "local":
        from cicd import local_aws

        local_aws.current(ctx.root)


def _deploy_locked(ctx: StepContext, env: cfg.Environment, art: artifacts.Artifact, why: str) -> Outcome:
    from botocore.exceptions import BotoCoreError

    from cicd import cdk_cli

    try:
        endpoint = _endpoint(ctx)
        cfn = _session_client(ctx, "cloudformation", env)
        if deployed_digest(cfn, env.stack_name) == art.digest:
            outputs = _stack_outputs(cfn, env.stack_name)
            _after_deploy(ctx, env, art, outputs)
            return Outcome.passed(f"{env.name} already runs artifact {art.short}: nothing to deploy", digest=art.digest)
        if ctx.target == "local":
            from cicd import local_aws

            local_aws.ensure_bootstrapped(ctx.root, local_aws.current(ctx.root), log=ctx)
        params = {"BuildVersion": art.version, "BuildCommit": art.commit or "unknown", "ArtifactDigest": art.digest}
        extra = [arg for key, value in params.items() for arg in ("--parameters", f"{key}={value}")]
        region = cfg.require_aws(env)[1] if ctx.target == "aws" else cfg.load_config(ctx.root).local_region
        ctx.note(f"deploying artifact {art.digest} (version {art.version}) to {env.name}: {why}")
        # The CDK CLI writes its asset zips into the assembly: deploy from a scratch copy, keep the artifact intact.
        scratch = ctx.run_dir / "deploy" / env.name / "cdk.out"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(art.assembly, scratch)
        try:
            outputs = cdk_cli.deploy(
                ctx,
                scratch,
                env.stack_selector,
                endpoint=endpoint,
                outputs_file=ctx.out("outputs", f"{env.name}.cdk.json"),
                extra_args=extra,
                region=region,
                root=ctx.root,
            )
        except StepFailed as err:
            _check_local_aws(ctx)  # a local AWS that died mid-deploy is exit 3, not a rejected deploy
            message = (
                f"deploy of {art.short} to {env.name} failed ({err}); stack is {_stack_status(cfn, env.stack_name)}"
            )
            if isinstance(err, CommandFailed) and err.returncode > 0 and err.returncode != 130:
                raise DeployRejected(message) from None
            raise StepFailed(message) from None  # stopped (Ctrl-C, a signal) or no outputs: not a rejection
        store = state.for_step(ctx, env.name)
        store.keep_artifact(art)
        store.record_deploy(digest=art.digest, version=art.version, run_id=ctx.run_dir.name)
        _after_deploy(ctx, env, art, outputs or _stack_outputs(cfn, env.stack_name))
    except BotoCoreError as err:
        _check_local_aws(ctx)
        raise StepFailed(f"deploy of {art.short} to {env.name} could not reach AWS: {err}") from None
    return Outcome.passed(f"deployed artifact {art.short} (version {art.version}) to {env.name}", digest=art.digest)


def _stack_status(cfn: CloudFormationClient, stack: str) -> str:
    from botocore.exceptions import ClientError

    try:
        return cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except (ClientError, IndexError, KeyError):
        return "absent"


def _after_deploy(ctx: StepContext, env: cfg.Environment, art: artifacts.Artifact, outputs: dict[str, str]) -> None:
    data: dict[str, Any] = {
        "env": env.name,
        "target": ctx.target,
        "stack": env.stack_name,
        "digest": art.digest,
        "version": art.version,
        "commit": art.commit,
        "outputs": outputs,
    }
    if ctx.target == "local":
        from cicd import local_api, local_aws

        server = local_aws.current(ctx.root)
        data["api_url"] = local_api.serve_environment(ctx.root, env.name, env.stack_name)
        data["aws_endpoint"] = server.endpoint
        data["region"] = server.region
    else:
        data["api_url"] = outputs.get("ApiUrl", "")
        data["region"] = cfg.require_aws(env)[1]
    if not data["api_url"]:
        raise StepFailed(f"{env.name} was deployed but its API URL is unknown (no ApiUrl output)")
    path = write_outputs(ctx, env.name, data)
    ctx.note(f"{env.name}: API {data['api_url']} (outputs in {ctx.rel(path)})")


def deploy(ctx: StepContext) -> Outcome:
    """Deploy the packaged artifact (this run's, else the latest) to the step's environment."""
    art = artifacts.resolve(ctx.root, ctx.run_dir)
    return _deploy(ctx, art, "packaged artifact")


def previous_env(env: str) -> str:
    index = cfg.ENVIRONMENTS.index(env)
    if index == 0:
        raise ConfigError(f"{env} is the first environment: deploy to it, there is nothing to promote from")
    return cfg.ENVIRONMENTS[index - 1]


def promotion_candidate(ctx: StepContext, source: str) -> artifacts.Artifact:
    """The artifact handed to this job (this run's package, else ``.cicd/artifact/``), with verified evidence that
    it passed ``source``. Never another environment's store: promotion crosses accounts only with the hand-off."""
    folders = state.hand_off_folders(ctx.root, ctx.run_dir)
    if not folders:
        raise StepFailed(
            f"no artifact was handed to this job ({artifacts.CI_ARTIFACT}/ is empty): nothing to promote from {source}",
            hint=f"the CI job must download the artifact the {source} job handed on; on a laptop run `inv pipeline`",
        )
    art = artifacts.put(ctx.root, folders[0])
    state.verify_evidence(folders[0], art, ctx.target, source)
    return art


def promote(ctx: StepContext) -> Outcome:
    """Deploy to this environment exactly the artifact that passed the previous one, verified byte for byte."""
    env = _env(ctx)
    source = previous_env(env.name)
    art = promotion_candidate(ctx, source)
    return _deploy(ctx, art, f"promoted from {source}")


def rollback_to_last_good(ctx: StepContext, env: str, failing: str | None) -> str:
    """Redeploy the last artifact that passed in ``env``; returns a sentence saying what happened."""
    if not state.available(ctx.root, ctx.target):
        return f"no earlier artifact passed in {env}, so there is nothing to roll back to"
    store = state.for_step(ctx, env)
    good = store.last_good(other_than=failing)
    if good is None:
        return f"no earlier artifact passed in {env}, so there is nothing to roll back to"
    try:
        art = store.fetch_artifact(ctx.root, good)
        _deploy(ctx, art, f"rollback from {failing[:12] if failing else 'a failed deploy'}", roll_back=False)
    except StepFailed as err:
        return f"could not roll back to {good[:12]}: {err}"
    return f"rolled {env} back to artifact {good[:12]} (version {art.version})"


def rollback(ctx: StepContext) -> Outcome:
    """Redeploy the last artifact that passed its tests in this environment (from its state in the target)."""
    env = _env(ctx)
    store = state.for_step(ctx, env.name) if state.available(ctx.root, ctx.target) else None
    good = store.last_good(other_than=store.running()) if store is not None else None
    if store is None or good is None:
        raise StepFailed(
            f"no earlier artifact passed in {env.name} on the {ctx.target} target: nothing to roll back to",
            hint="deploy a fixed build instead",
        )
    return _deploy(ctx, store.fetch_artifact(ctx.root, good), "rollback")


# ---------------------------------------------------------------------------------------------------- publish
def publish(ctx: StepContext) -> Outcome:
    """Upload the artifact's APK (versioned key, sha256) and web build (with this environment's config.json)."""
    from cicd.publish import publish_apk, publish_directory
    from cicd.steps.flutter import write_runtime_config

    env = _env(ctx)
    deployed = read_outputs(ctx, env.name)
    art = artifacts.get(ctx.root, str(deployed["digest"]))
    apk, web = art.apk(), art.web()
    if apk is None and web is None:
        return Outcome.skipped("the artifact has no Flutter build (flutter-build was skipped: no Flutter SDK)")
    s3: S3Client = _session_client(ctx, "s3", env)
    notes = []
    if apk is not None:
        published = publish_apk(s3, str(deployed["outputs"]["ApkBucketName"]), apk, art.version)
        notes.append(f"APK {published.version} -> s3://{published.bucket}/{published.key}")
    if web is not None:
        staged = ctx.out("publish", env.name, "web")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(web, staged)
        write_runtime_config(staged, api_base_url=str(deployed.get("api_url") or ""), environment=env.name)
        tree = publish_directory(s3, str(deployed["outputs"]["WebBucketName"]), staged)
        notes.append(f"web build ({len(tree.files)} files) -> s3://{tree.bucket}/")
    for note in notes:
        ctx.note(note)
    return Outcome.passed("; ".join(notes))


# ---------------------------------------------------------------------------------------------------- approval
def approve(ctx: StepContext) -> Outcome:
    """Pass when no approval is required or the candidate was approved; otherwise show what the environment would
    get (``cdk diff`` of the candidate's assembly against the deployed stack) and wait (blocks the promotion)."""
    env = _env(ctx)
    config = cfg.load_config(ctx.root)
    if not config.approval_before_prod:
        return Outcome.passed("no approval required ([tool.cicd] approval = false: the trunk ships automatically)")
    candidate = promotion_candidate(ctx, previous_env(env.name))
    record = state.for_step(ctx).approval(candidate.digest)
    if record is not None:
        return Outcome.passed(
            f"artifact {candidate.short} approved for {env.name} by {record.get('by')} at {record.get('at')}"
        )
    diff = change_set(ctx, env, candidate)
    return Outcome(
        Status.SKIPPED,
        f"waiting for approval of artifact {candidate.short} (version {candidate.version}) for {env.name} "
        f"(what it changes: {ctx.rel(diff)}): approve it in the CI tool's gate, or run "
        f"`uv run inv approve --env {env.name}`, then `uv run inv pipeline --from promote:{env.name}`",
        {"blocks": True, "digest": candidate.digest, "diff": ctx.rel(diff)},
    )


def change_set(ctx: StepContext, env: cfg.Environment, art: artifacts.Artifact) -> Path:
    """``cdk diff`` of the artifact's assembly against the stack deployed in ``env``, written to the run folder."""
    from cicd import cdk_cli

    endpoint = _endpoint(ctx)
    region = cfg.require_aws(env)[1] if ctx.target == "aws" else cfg.load_config(ctx.root).local_region
    scratch = ctx.run_dir / "diff" / env.name / "cdk.out"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(art.assembly, scratch)
    text = cdk_cli.diff(ctx, scratch, env.stack_selector, endpoint=endpoint, region=region, root=ctx.root)
    path = ctx.out("reports", f"change-set-{env.name}.txt")
    path.write_text(text, encoding="utf-8")
    ctx.note(f"what {env.name} would get from artifact {art.short}:\n{text}")
    return path


def grant_approval(ctx: StepContext, by: str) -> str:
    """Record the approval of the candidate for ``ctx.env`` in that environment's state (``inv approve``)."""
    env = _env(ctx)
    candidate = promotion_candidate(ctx, previous_env(env.name))
    state.for_step(ctx).approve(candidate, by)
    return f"approved artifact {candidate.short} (version {candidate.version}) for {env.name}"
