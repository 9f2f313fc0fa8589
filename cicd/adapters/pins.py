"""Every external version the adapters reference, in one table: actions by commit SHA, images by exact tag and
(where a public source records it) the digest of that tag's multi-arch index, tools by exact version; uv also by the
sha256 of every wheel a CI job may install. Renderers read only this module, so one command (``bump``) moves a pin
everywhere at once.

GitHub actions are referenced as ``owner/repo[/path]@<40-hex sha> # vX.Y.Z``; the SHA is the commit of the release
tag named by ``version``. ``bump("actions/checkout", "v6.0.1", "<sha>")`` rewrites that one row of the table in this
file: rerun ``inv adapters.generate`` afterwards and every adapter follows.

Images are referenced as ``name:tag@sha256:<digest>``: the runtime pulls by digest (the tag is only a readable
hint, Docker ignores it), so a re-pushed tag cannot change what a job runs. An image without a digest is listed in
``NOT_DIGEST_PINNED`` with the reason; ``image()`` refuses any other. A bump of an image names its new digest, or
``digest=""`` for explicitly none. To check or find a digest (needs access to the registry)::

    docker buildx imagetools inspect python:3.11.14-bookworm     # "Digest:" is the multi-arch index digest
    docker buildx imagetools inspect python:3.11.14-bookworm@sha256:<digest>   # fails if the digest is unknown

and record where the digest came from in ``DIGEST_SOURCES``.

uv is installed with ``pip --require-hashes`` from a one-line requirement carrying the sha256 of each uv wheel a job
may pick (``uv_install()``): pip refuses any file whose hash is not listed. To check the hashes::

    python3 -m pip download uv==0.13.8 --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 -d w
    python3 -m pip download uv==0.13.8 --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 -d w
    sha256sum w/*.whl

A bump of uv names the new hashes (``bump("uv", "0.14.0", hashes=(...))``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cicd.errors import ConfigError, UsageError

SHA_RE: Final = re.compile(r"^[0-9a-f]{40}$")
VERSION_RE: Final = re.compile(r"^v?\d+(\.\d+){1,3}$")
DIGEST_RE: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
IMAGE_PREFIX: Final = "image:"
MAX_LINE: Final = 120


@dataclass(frozen=True)
class Pin:
    """One pinned dependency: ``name`` (action path, image or tool), exact ``version``; for actions the commit
    ``sha``, for images the index ``digest`` (``sha256:...``, empty when not digest-pinned), for uv the ``hashes``
    (``sha256:...``) of the wheels a CI job may install."""

    name: str
    version: str
    sha: str = ""
    digest: str = ""
    hashes: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """What a workflow writes after ``uses:`` (actions) or as the image/package reference (everything else)."""
        return f"{self.name}@{self.sha}" if self.sha else f"{self.name}:{self.version}"


# fmt: off
# --- pins table (bump() rewrites one row at a time; one row per line) ----------------------------------------------
PINS: Final[tuple[Pin, ...]] = (
    Pin("actions/checkout", "v5.0.0", "08c6903cd8c0fde910a37f88322edcfb5dd907a8"),
    Pin("actions/cache", "v5.0.1", "9255dc7a253b0ccc959486e2bca901246202afeb"),
    Pin("actions/upload-artifact", "v5.0.0", "330a01c490aca151604b8cf639adc76d48f6c5d4"),
    Pin("actions/download-artifact", "v6.0.0", "018cc2cf5baa6db3ef3c5f8a56943fffe632ef53"),
    Pin("aws-actions/configure-aws-credentials", "v5.1.0", "00943011d9042930efac3dcd3a170e4273319bc8"),
    Pin("github/codeql-action/upload-sarif", "v4.31.9", "5d4e8d1aca955e8d8589aabd499c5cae939e33c7"),
    Pin("subosito/flutter-action", "v2.21.0", "fd55f4c5af5b953cc57a2be44cb082c8f6635e8e"),
    Pin("uv", "0.13.8", hashes=("sha256:e18a57b8b352eb7c8feb317b9f6f533c8f0ad9673fd6cf34bbe3cf1a9f6a8984", "sha256:5337c30bb893b4f9ce0ceb921ba2da0d13f649da644f40ad3bef84083bef0203")),  # noqa: E501
    Pin("python", "3.11.14"),
    Pin("flutter", "3.35.5"),
    # Images: each digest's source is in DIGEST_SOURCES, each image without one is in NOT_DIGEST_PINNED (below).
    Pin("image:python", "3.11.14-bookworm", digest="sha256:c09c742c4b1379b4ab7a59169ad814542f11ff9ac72f4feaf6bd67db38d32e3b"),  # noqa: E501
    Pin("image:instrumentisto/flutter", "3.35.5"),
    Pin("image:CodeCatalystLinux_x86_64", "2024_03"),
    Pin("codecatalyst:aws/build", "v1.0.0"),
    Pin("codecatalyst:aws/approval", "v1.0.0"),
    Pin("image:aws/codebuild/standard", "7.0"),
)
# --- end of pins table ----------------------------------------------------------------------------------------------
# fmt: on

UV_WHEELS: Final = (
    "uv-0.13.8-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl (what pip picks on every x86_64 job)",
    "uv-0.13.8-py3-none-manylinux_2_28_aarch64.whl (what pip picks on an aarch64 job: glibc >= 2.28 prefers it)",
)
"""The uv wheels whose sha256 the uv pin lists, in the order of its ``hashes``. Every job runs on glibc >= 2.28
(Debian bookworm, Ubuntu 22.04/24.04, Amazon Linux 2023): none is Alpine, so no musllinux wheel is listed, and no
job can pick the manylinux_2_17 aarch64 wheel; pip refuses any file not listed. Source of the hashes: the package
index's own sha256 for these files, checked by downloading each wheel (``pip download --platform ...``) and
``sha256sum``."""

DIGEST_SOURCES: Final[dict[str, str]] = {
    "sha256:c09c742c4b1379b4ab7a59169ad814542f11ff9ac72f4feaf6bd67db38d32e3b": (
        "python:3.11.14-bookworm, OCI index of 14 platform entries built 2026-01-13: docker-library repo-info record "
        "repos/python/remote/3.11.14-bookworm.md, as mirrored in github.com/maxmood96/repo-info at commit "
        "0028dcd4f03052b7bd3cfe67413a5053ee515ac2"
    ),
}
"""Where each digest in the table was read (a test requires an entry for every digest)."""

NOT_DIGEST_PINNED: Final[dict[str, str]] = {
    "instrumentisto/flutter": (
        "no public record of the digest of instrumentisto/flutter:3.35.5 was found and the registry is not "
        "reachable from where the adapters are generated; add it with `inv adapters.bump "
        "image:instrumentisto/flutter 3.35.5 --digest sha256:...` after `docker buildx imagetools inspect`"
    ),
    "CodeCatalystLinux_x86_64": (
        "CodeCatalyst's curated image (Registry: CODECATALYST) is named only by its release (2024_03); it is not "
        "published to a registry, so there is no digest to pin"
    ),
    "aws/codebuild/standard": (
        "CodeBuild's managed image is named only by its image id (aws/codebuild/standard:7.0); it is not published "
        "to a registry, so there is no digest to pin (CodeBuild takes <repository>@<digest> only for Docker Hub "
        "and ECR images)"
    ),
}
"""Images referenced by tag only, with the reason. A test keeps this exactly the image pins without a digest."""

_BY_NAME: Final = {p.name: p for p in PINS}
_TABLE_START: Final = "# --- pins table"
_TABLE_END: Final = "# --- end of pins table"


def pin(name: str) -> Pin:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UsageError(f"no pin named '{name}'", hint=f"known: {', '.join(_BY_NAME)}") from None


def action(name: str) -> str:
    """``uses:`` value with the version comment: ``actions/checkout@<sha> # v5.0.0``."""
    p = pin(name)
    if not p.sha:
        raise UsageError(f"'{name}' is not an action pin (no commit SHA)")
    return f"{p.ref} # {p.version}"


def version(name: str) -> str:
    return pin(name).version


def image(name: str) -> str:
    """An image reference: ``python:3.11.14-bookworm@sha256:<digest>``, or only the exact tag for an image listed
    in ``NOT_DIGEST_PINNED``. Any other image without a digest is refused."""
    p = pin(IMAGE_PREFIX + name)
    if not p.digest and name not in NOT_DIGEST_PINNED:
        raise ConfigError(
            f"image {name}:{p.version} has no digest and is not listed in NOT_DIGEST_PINNED",
            hint="bump it with its digest (docker buildx imagetools inspect) or list it with the reason",
        )
    return f"{name}:{p.version}" + (f"@{p.digest}" if p.digest else "")


def codecatalyst_action(name: str) -> str:
    """A CodeCatalyst action identifier at its exact version: ``aws/build@v1.0.0``."""
    return f"{name}@{pin('codecatalyst:' + name).version}"


def uv_requirement() -> str:
    """The one requirement line pip installs uv from: ``uv==X --hash=sha256:A --hash=sha256:B ...``."""
    p = pin("uv")
    if not p.hashes:
        raise ConfigError("the uv pin has no wheel hashes", hint="bump uv with hashes=(...)")
    return " ".join([f"uv=={p.version}", *(f"--hash={h}" for h in p.hashes)])


def uv_install() -> str:
    """The one shell command every job uses to install uv: pip in hash-checking mode reads the requirement line
    (version and wheel hashes) from stdin, so it installs that exact wheel or fails. POSIX sh; no checkout needed."""
    return (
        f"printf '%s\\n' '{uv_requirement()}' | python3 -m pip install --quiet --disable-pip-version-check "
        "--no-deps --require-hashes -r /dev/stdin"
    )


def render_row(p: Pin) -> str:
    """One row of the table as this file writes it (``# noqa: E501`` when a digest or hashes make it long)."""
    args = [repr(p.name), repr(p.version)] + ([repr(p.sha)] if p.sha else [])
    if p.digest:
        args.append(f"digest={p.digest!r}")
    if p.hashes:
        args.append("hashes=(" + ", ".join(repr(h) for h in p.hashes) + ("," if len(p.hashes) == 1 else "") + ")")
    row = f"    Pin({', '.join(args)}),".replace("'", '"')
    return row + "  # noqa: E501" if len(row) > MAX_LINE else row


def _checked(old: Pin, new_version: str, sha: str, digest: str | None, hashes: tuple[str, ...] | None) -> Pin:
    """The new pin for ``bump``, or a UsageError naming what is missing or malformed."""
    name = old.name
    if new_version in ("latest", "main", "master") or not new_version.strip():
        raise UsageError(f"'{new_version}' is not an exact version")
    if not VERSION_RE.match(new_version) and old.sha:
        raise UsageError(f"'{new_version}' is not an exact version", hint="e.g. v5.0.1")
    if old.sha and not SHA_RE.match(sha):
        raise UsageError(f"{name} is an action: pass the full 40-hex commit SHA of {new_version}", hint="git ls-remote")
    if not old.sha and sha:
        raise UsageError(f"{name} is pinned by version only: do not pass a SHA")
    if name.startswith(IMAGE_PREFIX):
        if digest is None:
            raise UsageError(
                f"{name} is an image: pass the digest of its {new_version} tag, or digest='' for none",
                hint=f"docker buildx imagetools inspect {name.removeprefix(IMAGE_PREFIX)}:{new_version}",
            )
        if digest and not DIGEST_RE.match(digest):
            raise UsageError(f"'{digest}' is not an image digest", hint="sha256:<64 hex>")
    elif digest:
        raise UsageError(f"{name} is not an image: do not pass a digest")
    if name == "uv":
        if not hashes or not all(DIGEST_RE.match(h) for h in hashes):
            raise UsageError(
                f"uv is installed hash-checked: pass the sha256 of every uv {new_version} wheel as sha256:<64 hex>",
                hint="see the module docstring of cicd/adapters/pins.py (pip download ... && sha256sum)",
            )
    elif hashes:
        raise UsageError(f"{name} is not uv: do not pass wheel hashes")
    return Pin(name, new_version, sha, digest or "", tuple(hashes or ()))


def bump(
    name: str,
    new_version: str,
    sha: str = "",
    *,
    digest: str | None = None,
    hashes: tuple[str, ...] | None = None,
    source: Path | None = None,
) -> Pin:
    """Rewrite one row of the pins table in this file (``inv adapters.bump NAME VERSION [SHA]``).

    Actions need a 40-hex commit SHA; images their new digest (or ``digest=""``: explicitly none, and then the image
    must be listed in ``NOT_DIGEST_PINNED``); uv the sha256 of its wheels; every pin an exact version. Returns the
    new pin. Regenerate the adapters afterwards (``inv adapters.generate``): they all read this table.
    """
    old = pin(name)
    new = _checked(old, new_version, sha, digest, hashes)
    path = source or Path(__file__)
    text = path.read_text(encoding="utf-8")
    start = text.index("\n", text.index(_TABLE_START)) + 1
    end = text.index(_TABLE_END)
    rows = text[start:end].split("\n")
    prefix = f'    Pin("{name}", '
    rows = [render_row(new) if row.startswith(prefix) else row for row in rows]
    path.write_text(text[:start] + "\n".join(rows) + text[end:], encoding="utf-8")
    globals()["PINS"] = tuple(new if p.name == name else p for p in PINS)  # this process renders with the new pin
    _BY_NAME[name] = new
    return new


IMAGE_REF_RE: Final = re.compile(
    r"""(?<![A-Za-z])[Ii]mage["']?[ \t]*(?::|=|[ \t](?=['"]))[ \t]*['"]?(?P<ref>[A-Za-z0-9][\w./:@-]*)"""
)
"""An image reference as the adapters write it: ``image: X``, ``"image": "X"``, ``Image: X``, ``image 'X'``
(Jenkins); not ``vmImage`` (a hosted VM label, not a container image)."""
UNVERIFIED_INSTALLS: Final = (
    (re.compile(r"\|\s*(ba|z|da)?sh\b"), "a download piped into a shell"),
    (re.compile(r"\bcurl\b[^\n]*\|"), "curl piped into a command"),
    (re.compile(r"\bwget\b"), "wget"),
    (
        re.compile(r"\b(irm|iwr|Invoke-RestMethod|Invoke-WebRequest)\b[^\n]*\|\s*(iex|Invoke-Expression)\b", re.I),
        "irm | iex",
    ),
    (re.compile(r"astral\.sh/uv|uv-installer|/install\.sh\b"), "the uv installer script"),
)


def image_problems(text: str) -> list[str]:
    """Every image reference in ``text`` that is neither digest-pinned nor a listed not-pinnable image at its exact
    pinned tag (a ``latest``, floating or unknown tag, or an unlisted image without a digest)."""
    problems = []
    for match in IMAGE_REF_RE.finditer(text):
        ref = match["ref"]
        name_tag, _, digest = ref.partition("@")
        name, _, tag = name_tag.rpartition(":") if ":" in name_tag else (name_tag, "", "")
        known = _BY_NAME.get(IMAGE_PREFIX + name)
        if tag in ("", "latest") or known is None or tag != known.version:
            problems.append(f"image {ref}: not the exact pinned tag of a pinned image")
        elif digest and (digest != known.digest or not DIGEST_RE.match(digest)):
            problems.append(f"image {ref}: digest differs from the pins table")
        elif not digest and name not in NOT_DIGEST_PINNED:
            problems.append(f"image {ref}: not digest-pinned and not listed in NOT_DIGEST_PINNED")
    return problems


def install_problems(text: str) -> list[str]:
    """Every way ``text`` installs uv (or fetches and runs code) other than the hash-checked ``uv_install()``:
    ``curl | sh``, ``wget``, ``irm | iex``, the installer script, or a pip install of uv without the pinned hashes."""
    problems = [f"{what}: {m.group(0)!r}" for regex, what in UNVERIFIED_INSTALLS for m in regex.finditer(text)]
    requirement = uv_requirement()
    for line in text.splitlines():
        installs_uv = "uv==" in line or re.search(r"\bpip3?\b[^\n]*\binstall\b[^\n]*\buv\b", line)
        if installs_uv and (requirement not in line or "--require-hashes" not in line):
            problems.append(f"uv installed without the pinned wheel hashes: {line.strip()[:120]!r}")
    return problems
