"""The service's own promises, as schemathesis checks (loaded by ``inv dast`` through ``SCHEMATHESIS_HOOKS``).

Schemathesis' built-in checks cover the contract (status, headers, content type, body schema, no 5xx); these add
what the contract cannot say in a schema:

- ``no_internal_details``: no answer body shows a stack trace, a source file, an exception class, an AWS ARN or
  the function's module names;
- ``security_headers``: every answer the service gives (JSON from the function) carries ``Cache-Control:
  no-store`` and ``X-Content-Type-Options: nosniff``;
- ``presigned_url_bounded``: a download URL lives ``expires_in`` seconds (its ``X-Amz-Expires``), never longer than
  the contract's maximum, and as long as the request's ``expires`` asked for.

The maximum comes from the contract named by ``CICD_CONTRACT`` (default ``openapi.yaml`` in the working directory).
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import schemathesis
import yaml

from cicd.contract import CONTRACT
from cicd.contract import ttl_maximum as contract_ttl_maximum

INTERNAL = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\.py\"|\b(?:latest_apk|botocore|boto3)\b|"
    r"\b[A-Z][A-Za-z]*(?:Error|Exception)\b|arn:aws[a-z-]*:|/var/(?:task|runtime)/"
)


@cache
def ttl_maximum() -> int:
    spec = yaml.safe_load(Path(os.environ.get("CICD_CONTRACT", CONTRACT)).read_text(encoding="utf-8"))
    return contract_ttl_maximum(spec)


def _json(response: Any) -> Any:
    try:
        return json.loads(response.content or b"null")
    except ValueError:
        return None


def _from_function(response: Any) -> bool:
    """API Gateway's own answers (403 for a method or path it has no route for) carry none of the function's headers."""
    return "application/json" in _header(response, "content-type") and "error" in str(_json(response))


def _header(response: Any, name: str) -> str:
    """One header's first value (schemathesis keeps lowercase names and lists of values)."""
    values = response.headers.get(name) or [""]
    return str(values[0])


@schemathesis.check
def no_internal_details(ctx: Any, response: Any, case: Any) -> bool | None:  # noqa: ARG001 - schemathesis' check signature
    """No stack trace, source path, exception class, ARN or module name in an answer body."""
    text = (response.content or b"").decode("utf-8", errors="replace")
    found = INTERNAL.search(text)
    if found:
        raise AssertionError(f"The answer shows an internal detail: {found.group(0)!r}")
    return None


@schemathesis.check
def security_headers(ctx: Any, response: Any, case: Any) -> bool | None:  # noqa: ARG001 - schemathesis' check signature
    """The function's answers are never cached and never content-sniffed."""
    if response.status_code == 403 and not _from_function(response):
        return None
    missing = [
        f"{name}: {want}"
        for name, want in (("cache-control", "no-store"), ("x-content-type-options", "nosniff"))
        if _header(response, name) != want
    ]
    if missing:
        raise AssertionError(f"Missing security headers: {', '.join(missing)}")
    return None


@schemathesis.check
def presigned_url_bounded(ctx: Any, response: Any, case: Any) -> bool | None:  # noqa: ARG001 - schemathesis' check signature
    """A download URL expires when the answer says, within the contract's maximum and the request's ``expires``."""
    body = _json(response)
    if response.status_code != 200 or not isinstance(body, dict) or "url" not in body:
        return None
    query = parse_qs(urlsplit(str(body["url"])).query)
    lifetime = query.get("X-Amz-Expires", [""])[0]
    if not lifetime.isdigit():
        raise AssertionError("The download URL is not a SigV4 presigned URL (no X-Amz-Expires)")
    seconds, maximum = int(lifetime), ttl_maximum()
    if seconds > maximum:
        raise AssertionError(f"The download URL lives {seconds} s, above the documented maximum of {maximum} s")
    if seconds != body.get("expires_in"):
        raise AssertionError(
            f"The download URL lives {seconds} s but the answer says expires_in={body.get('expires_in')}"
        )
    asked = (case.query or {}).get("expires")
    if isinstance(asked, int | str) and str(asked).isdigit() and int(asked) != seconds:
        raise AssertionError(f"expires={asked} was asked for, the download URL lives {seconds} s")
    return None
