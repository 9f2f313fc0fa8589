"""Private S3 buckets: the APK bucket, the web bucket, and the bucket their server access logs go to.

Every bucket blocks all public access, refuses plain HTTP (``aws:SecureTransport`` deny), is encrypted with
S3-managed keys, is versioned, and expires superseded versions after the environment's
``noncurrent_version_days``. The APK and web buckets log every request into the logs bucket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.waivers import Waiver, waive

if TYPE_CHECKING:
    from cicd.config import Environment


def removal_policy(env: Environment) -> cdk.RemovalPolicy:
    """``destroy`` deletes (empty) buckets and log groups with the stack; ``retain`` keeps them."""
    return cdk.RemovalPolicy.DESTROY if env.removal_policy == "destroy" else cdk.RemovalPolicy.RETAIN


class Storage(Construct):
    """The three buckets of one environment. ``acl_logs`` enables ACLs on the logs bucket, which CloudFront's
    standard logging needs (it delivers through the bucket ACL)."""

    def __init__(self, scope: Construct, construct_id: str, *, env: Environment, acl_logs: bool) -> None:
        super().__init__(scope, construct_id)
        policy = removal_policy(env)
        noncurrent = cdk.Duration.days(env.noncurrent_version_days)
        self.logs_bucket = s3.Bucket(
            self,
            "LogsBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            object_ownership=(
                s3.ObjectOwnership.BUCKET_OWNER_PREFERRED if acl_logs else s3.ObjectOwnership.BUCKET_OWNER_ENFORCED
            ),
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-logs",
                    expiration=cdk.Duration.days(env.log_retention_days),
                    noncurrent_version_expiration=noncurrent,
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                )
            ],
            removal_policy=policy,
        )
        waive(
            self.logs_bucket,
            Waiver(
                "CKV_AWS_18",
                "this is the access-log bucket itself: logging it into itself would log its own deliveries in a "
                "loop, and a further bucket would only move the question; its objects expire with the log retention",
            ),
        )

        self.apk_bucket = self._data_bucket("ApkBucket", "apk-bucket/", noncurrent, policy)
        self.web_bucket = self._data_bucket("WebBucket", "web-bucket/", noncurrent, policy)

    def _data_bucket(
        self,
        construct_id: str,
        log_prefix: str,
        noncurrent: cdk.Duration,
        policy: cdk.RemovalPolicy,
    ) -> s3.Bucket:
        return s3.Bucket(
            self,
            construct_id,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            server_access_logs_bucket=self.logs_bucket,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=noncurrent,
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
                )
            ],
            removal_policy=policy,
        )
