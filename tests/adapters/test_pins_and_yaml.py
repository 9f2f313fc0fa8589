"""The one pins table (and its bump command), and the YAML writer the adapters are rendered with."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cicd.adapters import pins
from cicd.adapters.yamltext import Anchored, Commented, Flow, Reuse, dump
from cicd.errors import UsageError


@pytest.fixture(autouse=True)
def pins_table_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bump`` also moves this process's table (so a regeneration right after it renders the new pin): every test
    here gets the table back afterwards, whatever it bumped, so later tests render the committed pins."""
    monkeypatch.setattr(pins, "PINS", pins.PINS)
    monkeypatch.setattr(pins, "_BY_NAME", dict(pins._BY_NAME))


def test_every_action_is_pinned_by_a_full_sha_and_everything_else_by_an_exact_version() -> None:
    for p in pins.PINS:
        if p.sha:
            assert re.fullmatch(r"[0-9a-f]{40}", p.sha), p
            assert re.fullmatch(r"v\d+\.\d+\.\d+", p.version), p
        assert p.version not in ("latest", "main", "master") and re.search(r"\d", p.version), p
    assert pins.action("actions/checkout").endswith(" # v5.0.0")


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("pins_copy", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["pins_copy"] = module  # dataclasses look their module up while the class is created
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["pins_copy"]
    return module


NEW_HASH = "sha256:" + "ab" * 32


def test_bump_rewrites_only_that_row_of_the_table(tmp_path: Path) -> None:
    copy = tmp_path / "pins.py"
    shutil.copy(pins.__file__, copy)
    before = copy.read_text()
    new_sha = "1" * 40
    pins.bump("actions/checkout", "v6.0.1", new_sha, source=copy)
    after = copy.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and new_sha in changed[0][1] and "v6.0.1" in changed[0][1]
    module = _load(copy)
    bumped = {p.name: p for p in module.PINS}
    assert bumped["actions/checkout"].sha == new_sha
    assert (bumped["uv"].version, bumped["uv"].sha) == (pins.version("uv"), "")
    pins.bump("uv", "0.14.0", hashes=(NEW_HASH,), source=copy)
    uv = {p.name: p for p in _load(copy).PINS}["uv"]
    assert (uv.version, uv.hashes) == ("0.14.0", (NEW_HASH,))


@pytest.mark.parametrize(
    ("name", "version", "sha", "message"),
    [
        ("actions/checkout", "v6", "1" * 40, "not an exact version"),
        ("actions/checkout", "v6.0.1", "abc", "full 40-hex commit SHA"),
        ("uv", "0.14.0", "1" * 40, "pinned by version only"),
        ("uv", "latest", "", "not an exact version"),
        ("nope", "1.0.0", "", "no pin named 'nope'"),
    ],
)
def test_bump_refuses_a_moving_or_malformed_pin(
    name: str, version: str, sha: str, message: str, tmp_path: Path
) -> None:
    copy = tmp_path / "pins.py"
    shutil.copy(pins.__file__, copy)
    with pytest.raises(UsageError, match=message) as err:
        pins.bump(name, version, sha, source=copy)
    assert err.value.return_code == 2
    assert copy.read_text() == Path(pins.__file__).read_text()


scalars = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
    st.integers(-1000, 1000),
    st.booleans(),
    st.sampled_from(
        [
            *("on", "no", "1.0", "*x", "&y", "a: b", "x #y", "${{ a }}", "-", "[a]", "{b}", "@v", "'q'", ""),
            *("=", "<<", "2001-12-14", "2001-12-14 21:59:43.10 -5", "2001-12-14t21:59:43.10-05:00"),
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text("abcdefgh-_", min_size=1, max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
# The suite shares two cores with the pipeline that runs it: how long generating an input or running an example takes
# says nothing about the dump, so neither time is a failure.
PATIENT = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PATIENT
@given(st.dictionaries(st.text("abcdefgh-_", min_size=1, max_size=6), values, min_size=1, max_size=5))
def test_dump_round_trips_through_a_yaml_parser(doc: dict[str, object]) -> None:
    assert yaml.safe_load(dump(doc)) == doc


@PATIENT
@given(st.lists(st.text("abc: #-", max_size=8), max_size=5))
def test_flow_lists_and_maps_round_trip(items: list[str]) -> None:
    doc = {"list": Flow(items), "map": Flow({f"k{i}": v for i, v in enumerate(items)})}
    assert yaml.safe_load(dump(doc)) == {"list": items, "map": {f"k{i}": v for i, v in enumerate(items)}}


def test_comments_anchors_and_aliases() -> None:
    reuse = Reuse()
    doc = {
        "uses": Commented("actions/checkout@" + "a" * 40, "v5.0.0"),
        "first": reuse("steps", [1, 2]),
        "second": reuse("steps", [1, 2]),
        "block": Anchored("blk", {"x": "multi\nline\n"}),
    }
    text = dump(doc, header="# head\n")
    assert text.startswith("# head\n")
    assert "  # v5.0.0" in text and "first: &steps [1, 2]" in text and "second: *steps" in text
    assert yaml.safe_load(text) == {
        "uses": "actions/checkout@" + "a" * 40,
        "first": [1, 2],
        "second": [1, 2],
        "block": {"x": "multi\nline\n"},
    }


def test_one_command_bumps_a_pin_in_every_adapter(tmp_path: Path) -> None:
    from cicd.adapters import cli

    copy = tmp_path / "pins.py"
    shutil.copy(pins.__file__, copy)
    before, hashes = pins.version("uv"), pins.pin("uv").hashes
    try:
        cli.bump("uv", "0.14.1", root=tmp_path, hashes=(NEW_HASH,), source=copy)
        texts = [p.read_text() for p in (tmp_path / "ci-adapters").rglob("*") if p.is_file()]
        assert texts and all(f"uv=={before}" not in t for t in texts)
        assert sum(f"uv==0.14.1 --hash={NEW_HASH}" in t for t in texts) >= 8
        assert f'Pin("uv", "0.14.1", hashes=("{NEW_HASH}",)),' in copy.read_text()
    finally:
        pins.bump("uv", before, hashes=hashes, source=copy)
    assert pins.version("uv") == before
