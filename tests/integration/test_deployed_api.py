"""The deployed service, through its real API: health, the latest APK and its download, bad requests."""

from __future__ import annotations

import hashlib
import secrets
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cicd.publish import publish_apk
from tests.integration.conftest import Deployed, call


@pytest.mark.smoke
def test_health_reports_the_deployed_build(deployed: Deployed) -> None:
    answer = call(deployed.url("/health"))
    assert answer.status == 200, answer.body
    assert answer.body["environment"] == deployed.env
    assert answer.body["version"] == deployed.version
    if deployed.commit:
        assert answer.body["commit"] == deployed.commit


@pytest.mark.smoke
def test_latest_answers_with_a_build_or_the_empty_404(deployed: Deployed) -> None:
    answer = call(deployed.url("/apk/latest"))
    assert answer.status in (200, 404), answer.body
    if answer.status == 200:
        assert {"version", "key", "size", "sha256", "url", "expires_in"} <= set(answer.body)
    else:
        assert answer.body["error"] == "no_build_published"


@pytest.fixture(scope="module")
def test_apk(tmp_path_factory: pytest.TempPathFactory, deployed: Deployed, s3: Any) -> tuple[str, str]:
    """A throw-away APK (a zip, like a real one) published with the pipeline's own publish code."""
    path = tmp_path_factory.mktemp("apk") / "integration-test.apk"
    with zipfile.ZipFile(path, "w") as apk:
        apk.writestr("AndroidManifest.xml", f"<manifest nonce='{secrets.token_hex(16)}'/>")
    published = publish_apk(s3, deployed.apk_bucket, path, deployed.version)
    return published.key, hashlib.sha256(path.read_bytes()).hexdigest()


def test_latest_serves_the_published_apk_and_its_download_matches(
    deployed: Deployed, test_apk: tuple[str, str]
) -> None:
    key, sha = test_apk
    answer = call(deployed.url("/apk/latest?expires=120"))
    assert answer.status == 200, answer.body
    assert answer.body["version"] == deployed.version
    assert answer.body["key"] == key and answer.body["sha256"] == sha
    assert answer.body["expires_in"] == 120
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(answer.body["url"], timeout=30) as resp:  # the presigned URL itself
        assert hashlib.sha256(resp.read()).hexdigest() == sha


def test_a_version_is_served_by_its_own_path(deployed: Deployed, test_apk: tuple[str, str]) -> None:
    answer = call(deployed.url(f"/apk/{deployed.version}"))
    assert answer.status == 200 and answer.body["key"] == test_apk[0]
    missing = call(deployed.url("/apk/999.999.999"))
    assert missing.status == 404 and missing.body["error"]


@pytest.mark.parametrize("query", ["expires=0", "expires=abc", "expires=999999", "expires=-5"])
def test_bad_expires_is_a_400(deployed: Deployed, query: str) -> None:
    answer = call(deployed.url(f"/apk/latest?{query}"))
    assert answer.status == 400, answer.body
    assert answer.body.get("message")


def test_unknown_paths_and_methods_are_4xx(deployed: Deployed) -> None:
    assert call(deployed.url("/no/such/path")).status in (403, 404)
    assert call(deployed.url("/health"), method="POST").status in (403, 405)


def test_outputs_name_this_environment(deployed: Deployed) -> None:
    assert deployed.env in deployed.apk_bucket.lower() or deployed.apk_bucket
    assert Path(deployed.api_url).name != ""
