"""``dast`` finds what it promises to find: copies of the function broken on purpose each fail schemathesis' run (and
the unchanged copy passes it), served on 127.0.0.1 the way a deployed environment is served locally."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from cicd import dast
from tests.reliability.served_handler import handler_copy, served

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261206

Edits = Mapping[str, Callable[[str], str]]
CRASH_ON_LONG_EXPIRY: Edits = {
    "logic.py": lambda s: s.replace(
        "    return seconds\n", "    if seconds > 1800:\n        raise RuntimeError(seconds)\n    return seconds\n"
    )
}


def run_against(tmp_path: Path, edits: Edits | None = None) -> dast.DastResult:
    code = handler_copy(tmp_path / "code", edits)
    with served(code, tmp_path / "work") as url:
        return dast.run(ROOT, url, tmp_path / "reports", dast.FULL, seed=SEED)


def test_the_unchanged_function_passes_every_check(tmp_path: Path) -> None:
    result = run_against(tmp_path)
    assert result.passed, (result.failures, result.log_tail)
    assert result.operations == 3 and result.requests >= 100
    assert (tmp_path / "reports" / "dast.junit.xml").is_file()
    events = (tmp_path / "reports" / "dast-events.ndjson").read_text()
    assert all(f'"name":"{check}"' in events.replace(" ", "") for check in dast.CUSTOM_CHECKS), "hooks not loaded"


FAULTS: dict[str, tuple[Edits, str]] = {
    "a field the contract does not have": (
        {"logic.py": lambda s: s.replace('"expires_in": expires,', '"expires_in": expires,\n"bucket": config.bucket,')},
        "Response violates schema",
    ),
    "a 500 on one class of input (a long expiry)": (CRASH_ON_LONG_EXPIRY, "Server error"),
    "a stack trace in an error body": (
        {
            **CRASH_ON_LONG_EXPIRY,
            "handler.py": lambda s: s.replace(
                "response = _answer(500, INTERNAL_ERROR)",
                'response = _answer(500, {"error": "internal_error", "message": traceback.format_exc()})',
            ),
        },
        "no_internal_details",
    ),
    "a download URL living longer than asked": (
        {"logic.py": lambda s: s.replace("store.presign(apk.key, expires)", "store.presign(apk.key, expires * 2)")},
        "presigned_url_bounded",
    ),
    "a missing security header": (
        {"handler.py": lambda s: s.replace('    "X-Content-Type-Options": "nosniff",\n', "")},
        "security_headers",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_broken_function_fails_dast(tmp_path: Path, fault: str) -> None:
    edits, expected = FAULTS[fault]
    result = run_against(tmp_path, edits)
    assert not result.passed
    assert any(expected in failure for failure in result.failures), result.failures
