"""Hosting of the Flutter web build: the private web bucket, served through CloudFront with Origin Access Control
on targets that have CloudFront (the bucket never becomes public; its policy admits only the distribution)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from constructs import Construct

from infra.waivers import Waiver, waive

if TYPE_CHECKING:
    from aws_cdk import aws_s3 as s3

    from cicd.config import Environment

NO_WAF = (
    "no WAF web ACL: the distribution serves static, public web assets from a private bucket (no forms, no "
    "backend behind it); a web ACL's fixed monthly cost per environment is not justified for that"
)
NO_GEO = "the app is published worldwide; no geographic restriction applies to a public release"
NO_CUSTOM_DOMAIN = (
    "served on the default *.cloudfront.net certificate, whose TLS policy CloudFront fixes; TLSv1.2_2021 needs a "
    "custom domain and ACM certificate, which the project does not assume"
)


class WebDistribution(Construct):
    """CloudFront in front of ``bucket``: HTTPS only, security headers, SPA fallback to ``index.html``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: Environment,
        bucket: s3.IBucket,
        logs_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        spa_fallback = [
            cloudfront.ErrorResponse(
                http_status=status,
                response_http_status=200,
                response_page_path="/index.html",
                ttl=cdk.Duration.seconds(0),
            )
            for status in (403, 404)
        ]
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"{env.stack_name} web app",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                compress=True,
            ),
            default_root_object="index.html",
            error_responses=spa_fallback,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_logging=True,
            log_bucket=logs_bucket,
            log_file_prefix="cloudfront/",
        )
        waive(
            self.distribution,
            Waiver("AwsSolutions-CFR1", NO_GEO),
            Waiver("AwsSolutions-CFR2", NO_WAF),
            Waiver("AwsSolutions-CFR4", NO_CUSTOM_DOMAIN),
            Waiver("CKV_AWS_68", NO_WAF),
            Waiver("CKV_AWS_174", NO_CUSTOM_DOMAIN),
        )
