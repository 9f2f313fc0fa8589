"""Pinned and verified runtimes in every adapter: images by digest (or listed, with the reason, as not
digest-pinnable), uv installed only hash-checked. Each check is also run on a mutated copy that must fail."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from cicd.adapters import cli, pins
from cicd.config import PipelineConfig
from cicd.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "cd" * 32
HASH = "sha256:" + "ef" * 32


@pytest.fixture(autouse=True)
def pins_table_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bump`` also moves this process's table: every test gets it back afterwards."""
    monkeypatch.setattr(pins, "PINS", pins.PINS)
    monkeypatch.setattr(pins, "_BY_NAME", dict(pins._BY_NAME))


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    """Every file the adapters render from the model with the default settings."""
    return dict(cli.render_all(config=PipelineConfig()))


def adapter_files(rendered: dict[str, str]) -> Iterator[tuple[str, str]]:
    return ((path, text) for path, text in rendered.items() if path.startswith("ci-adapters/"))


def image_pins() -> list[pins.Pin]:
    return [p for p in pins.PINS if p.name.startswith(pins.IMAGE_PREFIX)]


# --- images --------------------------------------------------------------------------------------------------------


def test_exactly_the_managed_and_unsourced_images_are_not_digest_pinned_each_with_its_reason() -> None:
    assert set(pins.NOT_DIGEST_PINNED) == {
        "instrumentisto/flutter",  # no public record of its digest; the registry is out of reach here
        "CodeCatalystLinux_x86_64",  # CodeCatalyst's curated image: named by release only
        "aws/codebuild/standard",  # CodeBuild's managed image: named by image id only
    }
    undigested = {p.name.removeprefix(pins.IMAGE_PREFIX) for p in image_pins() if not p.digest}
    assert undigested == set(pins.NOT_DIGEST_PINNED)
    assert all(len(reason) > 40 for reason in pins.NOT_DIGEST_PINNED.values())
    assert pins.image("python") == (
        "python:3.11.14-bookworm@sha256:c09c742c4b1379b4ab7a59169ad814542f11ff9ac72f4feaf6bd67db38d32e3b"
    )


def test_every_digest_is_well_formed_and_has_its_source_recorded() -> None:
    digests = {p.digest for p in pins.PINS if p.digest}
    assert digests and all(pins.DIGEST_RE.match(d) for d in digests)
    assert set(pins.DIGEST_SOURCES) == digests
    assert all("/" in source for source in pins.DIGEST_SOURCES.values())  # names a repository path or a URL


def test_an_image_without_digest_must_be_listed_or_rendering_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(pins._BY_NAME, "image:python", pins.Pin("image:python", "3.11.14-bookworm"))
    with pytest.raises(ConfigError, match="no digest and is not listed"):
        pins.image("python")
    monkeypatch.setitem(pins.NOT_DIGEST_PINNED, "python", "a reason")
    assert pins.image("python") == "python:3.11.14-bookworm"


def test_every_image_reference_in_every_adapter_is_digest_pinned_or_listed(rendered: dict[str, str]) -> None:
    found: dict[str, set[str]] = {}
    for path, text in adapter_files(rendered):
        assert pins.image_problems(text) == [], path
        for match in pins.IMAGE_REF_RE.finditer(text):
            found.setdefault(path.split("/")[1], set()).add(match["ref"])
    pinned = pins.image("python")
    for tool in ("gitlab", "bitbucket", "jenkins", "circleci"):  # the tools whose jobs run in the Python image
        assert pinned in found[tool], tool
    assert {"circleci", "codebuild", "codecatalyst"} <= set(found)
    assert not any("@" not in ref and ref.startswith("python:") for refs in found.values() for ref in refs)


@pytest.mark.component  # the committed files, a stale one too (the rendered ones are checked above)
def test_every_committed_adapter_file_pins_its_images_and_installs_uv_hash_checked() -> None:
    committed = [p for p in (ROOT / "ci-adapters").rglob("*") if p.is_file()]
    assert len(committed) > 8
    for path in committed:
        text = path.read_text(encoding="utf-8")
        assert pins.image_problems(text) == [] and pins.install_problems(text) == [], path


@pytest.mark.parametrize(
    ("mutated", "problem"),
    [
        ("image: python:3.11.14-bookworm\n", "not digest-pinned and not listed"),
        ("image: python:latest\n", "not the exact pinned tag"),
        ("  - image: python:3.11\n", "not the exact pinned tag"),  # a floating minor tag
        ("image: alpine:3.20\n", "not the exact pinned tag"),  # an image the table does not pin
        ("image: instrumentisto/flutter\n", "not the exact pinned tag"),  # no tag: latest
        (f"image: python:3.11.14-bookworm@{DIGEST}\n", "digest differs"),
        ("agent { docker { image 'python:3.11.14-bookworm'; args '-u root' } }\n", "not digest-pinned"),
        ('"image": "instrumentisto/flutter:3.35"\n', "not the exact pinned tag"),
        ("Container: {Registry: DockerHub, Image: instrumentisto/flutter:latest}\n", "not the exact pinned tag"),
    ],
)
def test_image_check_breaker(rendered: dict[str, str], mutated: str, problem: str) -> None:
    text = rendered["ci-adapters/gitlab/.gitlab-ci.yml"]
    assert pins.image_problems(text) == []
    problems = pins.image_problems(text + mutated)
    assert len(problems) == 1 and problem in problems[0]


def test_a_hosted_vm_label_is_not_an_image_reference() -> None:
    assert pins.image_problems("pool: {vmImage: ubuntu-24.04}\n# the pinned Flutter image (Android SDK)\n") == []


# --- uv ------------------------------------------------------------------------------------------------------------


def test_uv_is_pinned_with_the_hash_of_each_wheel_a_job_may_pick() -> None:
    uv = pins.pin("uv")
    assert len(uv.hashes) == len(pins.UV_WHEELS) == 2 and len(set(uv.hashes)) == 2
    assert all(pins.DIGEST_RE.match(h) for h in uv.hashes)
    assert all(w.startswith(f"uv-{uv.version}-") for w in pins.UV_WHEELS)
    assert pins.uv_requirement() == f"uv=={uv.version} --hash={uv.hashes[0]} --hash={uv.hashes[1]}"


def test_the_install_command_is_one_hash_checked_posix_line() -> None:
    command = pins.uv_install()
    assert "\n" not in command and "--require-hashes" in command and "--no-deps" in command
    assert command.startswith(f"printf '%s\\n' '{pins.uv_requirement()}' | python3 -m pip install ")
    assert pins.install_problems(command) == []


def test_every_adapter_installs_uv_only_hash_checked(rendered: dict[str, str]) -> None:
    requirement = pins.uv_requirement()
    by_tool: dict[str, str] = {}
    for path, text in adapter_files(rendered):
        assert pins.install_problems(text) == [], path
        by_tool[path.split("/")[1]] = by_tool.get(path.split("/")[1], "") + text
    assert "github" in by_tool and len(by_tool) == 8
    for tool, text in by_tool.items():
        assert requirement in text and "--require-hashes -r /dev/stdin" in text, tool
        assert set(re.findall(r"--hash=(sha256:[0-9a-f]+)", text)) == set(pins.pin("uv").hashes), tool


GITHUB = "ci-adapters/github/.github/workflows/pipeline.yml"


def github_uv_problems(text: str) -> list[str]:
    """Each GitHub job whose steps run ``uv`` without first installing it with ``pins.uv_install()`` and putting it
    on ``PATH`` (``GITHUB_PATH``), or that takes uv (or its cache) from an action such as setup-uv."""
    doc = yaml.safe_load(text)
    problems = []
    for job_id, job in doc["jobs"].items():
        runs = [str(step.get("run", "")) for step in job.get("steps", [])]
        uses = [str(step.get("uses", "")) for step in job.get("steps", [])]
        installs = [i for i, r in enumerate(runs) if pins.uv_install() in r and '>> "$GITHUB_PATH"' in r]
        first_use = next((i for i, r in enumerate(runs) if re.search(r"(^|[\s;&|])uv ", r, re.MULTILINE)), None)
        if first_use is not None and (not installs or installs[0] > first_use):
            problems.append(f"{job_id}: runs uv before installing it hash-checked")
        problems += [f"{job_id}: uv from an action: {u}" for u in uses if "setup-uv" in u]
    if (doc.get("env") or {}).get("UV_PYTHON") != "3.11":
        problems.append("UV_PYTHON is not 3.11 for the whole workflow")
    return problems


def test_github_installs_uv_hash_checked_in_every_job_before_using_it(rendered: dict[str, str]) -> None:
    text = rendered[GITHUB]
    assert github_uv_problems(text) == []
    doc = yaml.safe_load(text)
    assert all(any(pins.uv_install() in str(s.get("run", "")) for s in job["steps"]) for job in doc["jobs"].values())
    assert "setup-uv" not in text and all(not p.name.endswith("setup-uv") for p in pins.PINS)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (  # the uv step of every job (an anchor and its aliases) becomes setup-uv
            lambda t: re.sub(
                r"- &uv\n(?: {10}.*\n)+",
                "- &uv {uses: astral-sh/setup-uv@" + "0" * 40 + ", with: {version: 0.13.8}}\n",
                t,
            ),
            "runs uv before installing it",
        ),
        (lambda t: t.replace('echo "$RUNNER_TEMP/uv/bin" >> "$GITHUB_PATH"', "true"), "runs uv before installing it"),
        (
            lambda t: t.replace("      - *uv\n      - *locked\n", "      - *locked\n      - *uv\n", 1),
            "before installing",
        ),
        (lambda t: t.replace(', UV_PYTHON: "3.11"', ""), "UV_PYTHON"),
    ],
)
def test_github_uv_check_breaker(rendered: dict[str, str], edit: Callable[[str], str], problem: str) -> None:
    broken = edit(rendered[GITHUB])
    assert broken != rendered[GITHUB]
    assert any(problem in p for p in github_uv_problems(broken)), github_uv_problems(broken)


@pytest.mark.parametrize(
    ("mutated", "problem"),
    [
        ("python3 -m pip install --quiet uv==0.13.8", "without the pinned wheel hashes"),
        ("pip install uv", "without the pinned wheel hashes"),
        ("curl -LsSf https://astral.sh/uv/install.sh | sh", "piped into a shell"),
        ("wget -qO- https://astral.sh/uv/install.sh | bash", "wget"),
        ('powershell -c "irm https://astral.sh/uv/install.ps1 | iex"', "irm | iex"),
    ],
)
def test_install_check_breaker(rendered: dict[str, str], mutated: str, problem: str) -> None:
    text = rendered["ci-adapters/gitlab/.gitlab-ci.yml"]
    assert pins.install_problems(text) == [] and pins.uv_install() in text
    broken = text.replace(pins.uv_install(), mutated, 1)
    assert broken != text
    assert any(problem in p for p in pins.install_problems(broken))


def test_a_tampered_hash_in_a_rendered_command_is_caught(rendered: dict[str, str]) -> None:
    text = rendered["ci-adapters/gitlab/.gitlab-ci.yml"]
    tampered = text.replace(pins.pin("uv").hashes[0], HASH)
    assert tampered != text
    assert any("without the pinned wheel hashes" in p for p in pins.install_problems(tampered))


@pytest.mark.slow
def test_the_requirement_installs_uv_hash_checked_and_a_wrong_hash_is_refused(tmp_path: Path) -> None:
    """pip in hash-checking mode installs exactly the pinned wheel, and refuses it when a hash is wrong (needs the
    package index: skipped, with the reason, when it is out of reach)."""
    version = pins.version("uv")
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "download", f"uv=={version}", "--no-deps", "--only-binary=:all:", "-d",
         str(tmp_path / "probe"), "--quiet", "--disable-pip-version-check"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"the package index is not reachable: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    shutil.rmtree(tmp_path / "probe")

    def install(requirement: str, target: Path) -> subprocess.CompletedProcess[str]:
        req = tmp_path / "uv-requirements.txt"
        req.write_text(requirement + "\n", encoding="utf-8")
        return subprocess.run(
            [sys.executable, "-m", "pip", "install", "--require-hashes", "--no-deps", "--quiet",
             "--disable-pip-version-check", "-r", str(req), "--target", str(target)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    ok = install(pins.uv_requirement(), tmp_path / "ok")
    assert ok.returncode == 0, ok.stderr
    out = subprocess.run([tmp_path / "ok/bin/uv", "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"uv {version} ")
    refused = install(f"uv=={version} --hash={HASH}", tmp_path / "refused")
    assert refused.returncode != 0 and "DO NOT MATCH THE HASHES" in refused.stderr
    assert not (tmp_path / "refused/bin/uv").exists()


# --- bump ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "kwargs", "message"),
    [
        ("image:python", "3.11.15-bookworm", {}, "pass the digest of its 3.11.15-bookworm tag"),
        ("image:python", "3.11.15-bookworm", {"digest": "sha256:abc"}, "is not an image digest"),
        ("image:python", "3.11.15-bookworm", {"digest": "c" * 64}, "is not an image digest"),
        ("flutter", "3.35.6", {"digest": DIGEST}, "not an image: do not pass a digest"),
        ("uv", "0.14.0", {}, "installed hash-checked"),
        ("uv", "0.14.0", {"hashes": ("e" * 64,)}, "installed hash-checked"),
        ("flutter", "3.35.6", {"hashes": (HASH,)}, "not uv: do not pass wheel hashes"),
    ],
)
def test_bump_refuses_an_image_without_its_digest_decision_and_uv_without_hashes(
    name: str, version: str, kwargs: dict[str, object], message: str, tmp_path: Path
) -> None:
    copy = tmp_path / "pins.py"
    shutil.copy(pins.__file__, copy)
    with pytest.raises(UsageError, match=message):
        pins.bump(name, version, source=copy, **kwargs)  # type: ignore[arg-type]
    assert copy.read_text() == Path(pins.__file__).read_text()


def _changed(before: str, after: str) -> list[str]:
    return [b for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]


def test_bump_moves_an_image_with_its_digest_or_explicitly_none(tmp_path: Path) -> None:
    copy = tmp_path / "pins.py"
    shutil.copy(pins.__file__, copy)
    before = copy.read_text()
    pins.bump("image:python", "3.11.15-bookworm", digest=DIGEST, source=copy)
    after = copy.read_text()
    assert _changed(before, after) == [f'    Pin("image:python", "3.11.15-bookworm", digest="{DIGEST}"),  # noqa: E501']
    assert pins.image("python") == f"python:3.11.15-bookworm@{DIGEST}"  # this process renders the new pin at once
    pins.bump("image:instrumentisto/flutter", "3.35.6", digest="", source=copy)  # explicitly none: it is listed
    assert _changed(after, copy.read_text()) == ['    Pin("image:instrumentisto/flutter", "3.35.6"),']
    assert pins.image("instrumentisto/flutter") == "instrumentisto/flutter:3.35.6"


def test_bump_of_uv_writes_its_hashes_and_keeps_every_other_line(tmp_path: Path) -> None:
    copy = tmp_path / "pins.py"
    shutil.copy(pins.__file__, copy)
    before = copy.read_text()
    pins.bump("uv", "0.14.0", hashes=(HASH, DIGEST), source=copy)
    changed = _changed(before, copy.read_text())
    assert changed == [f'    Pin("uv", "0.14.0", hashes=("{HASH}", "{DIGEST}")),  # noqa: E501']
    assert pins.uv_requirement() == f"uv==0.14.0 --hash={HASH} --hash={DIGEST}"


def test_the_bump_task_takes_a_digest_and_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    from cicd import cli as top

    calls: list[tuple[object, ...]] = []

    def bump(*args: object, **kwargs: object) -> list[Path]:
        calls.append((*args, kwargs))
        return []

    monkeypatch.setattr(cli, "bump", bump)
    top.adapters_bump("image:python", "3.11.15-bookworm", "", DIGEST, "")
    top.adapters_bump("image:instrumentisto/flutter", "3.35.6", "", "none", "")
    top.adapters_bump("uv", "0.14.0", "", "", f"{HASH}, {DIGEST}")
    assert [c[-1] for c in calls] == [
        {"digest": DIGEST, "hashes": None},
        {"digest": "", "hashes": None},
        {"digest": None, "hashes": (HASH, DIGEST)},
    ]


def test_every_row_of_the_committed_table_is_written_as_bump_writes_it() -> None:
    text = Path(pins.__file__).read_text(encoding="utf-8")
    table = text[text.index("# --- pins table") : text.index("# --- end of pins table")]
    assert [row for row in table.splitlines() if row.startswith("    Pin(")] == [pins.render_row(p) for p in pins.PINS]
