"""Generated requests (paths, methods, query strings, absurd sizes) never make the function answer 5xx, except
502 while S3 is failing; every answer keeps the JSON error shape."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from latest_apk import handler as lambda_handler

from tests.unit.apk_store import put_apk, put_pointer
from tests.unit.functions.apk_helpers import api_event, invoke

# Time is no verdict here: the suite shares two cores with the pipeline that runs it (deadline, too_slow).
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEWER = settings(SETTINGS, max_examples=80)
KNOWN = ["/apk/latest", "/apk/1.0.0", "/apk/2.0.0", "/health", "/apk/", "/dev/apk/latest"]

segments = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["apk", "latest", "health", "1.0.0", "..", ".", "%2F", "LATEST", "", "dev"]),
    st.integers(min_value=0, max_value=30_000).map(lambda n: "9" * n),  # past int()'s digit limit
)
paths = st.one_of(
    st.sampled_from(KNOWN),
    st.lists(segments, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.builds(lambda base, tail: base + tail, st.sampled_from(KNOWN), st.text(max_size=30)),
    st.text(max_size=200),
    st.builds(lambda piece, n: piece * n, st.text(min_size=1, max_size=4), st.integers(0, 20_000)),
)
values = st.one_of(
    st.text(max_size=30),
    st.integers().map(str),
    st.floats(allow_nan=True).map(str),
    st.integers(min_value=0, max_value=20_000).map(lambda n: "1" * n),
)
queries = st.one_of(
    st.none(),
    st.dictionaries(st.one_of(st.just("expires"), st.text(max_size=10)), values, max_size=4),
)
multi_queries = st.one_of(
    st.none(),
    st.dictionaries(st.one_of(st.just("expires"), st.text(max_size=10)), st.lists(values, max_size=3), max_size=3),
)
methods = st.one_of(
    st.sampled_from(["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "get", "Get"]),
    st.text(max_size=12),
)


@pytest.fixture
def store(s3: Any) -> Any:
    for version in ("1.0.0", "2.0.0"):
        put_apk(s3, version)
    put_pointer(s3, {"version": "2.0.0", "key": "apk/2.0.0/app-release.apk"})
    return s3


def check_shape(answer: Any, method: str) -> None:
    if answer.status >= 400 and answer.raw_body:
        assert set(answer.body) == {"error", "message"}
    if answer.status == 405:
        assert answer.headers["Allow"] == "GET, HEAD, OPTIONS"
    if not answer.raw_body:
        assert answer.status == 204 or method.upper() == "HEAD"


@SETTINGS
@given(method=methods, path=paths, query=queries, multi=multi_queries, stage=st.sampled_from(["dev", "", "apk"]))
def test_generated_requests_never_5xx(
    store: Any, *, method: str, path: str, query: Any, multi: Any, stage: str
) -> None:
    event = api_event(method, path, query, multi, stage=stage)
    event["multiValueQueryStringParameters"] = multi
    answer = invoke(event)
    assert answer.status in {200, 204, 400, 404, 405}, (answer.status, answer.raw_body)
    check_shape(answer, method)


@FEWER
@given(method=methods, path=paths, query=queries)
def test_generated_requests_during_an_s3_outage_are_at_worst_502(
    store: Any, monkeypatch: Any, method: str, path: str, query: Any
) -> None:
    client = lambda_handler.s3_client()

    def unreachable(operation: str, params: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://s3.eu-west-1.amazonaws.com")

    with monkeypatch.context() as patch:
        patch.setattr(client, "_make_api_call", unreachable)
        answer = invoke(api_event(method, path, query))
    assert answer.status in {200, 204, 400, 404, 405, 502}, (answer.status, answer.raw_body)
    if answer.status == 200:
        assert answer.body is None or set(answer.body) == {"service", "environment", "version", "commit"}
    check_shape(answer, method)


@FEWER
@given(
    event=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )
)
def test_arbitrary_event_shapes_are_at_worst_400(store: Any, event: Any) -> None:
    assert invoke(event).status == 400
