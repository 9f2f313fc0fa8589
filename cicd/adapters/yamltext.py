"""A small, deterministic YAML writer for the adapters: block style, readable quoting, comments where they matter.

``yaml.dump`` cannot write comments (the version after a pinned SHA) and reflows strings; the adapters are meant to
be read, so they are written with this instead and parsed back with PyYAML (:func:`load`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

INDICATORS: Final = set("-?:,[]{}#&*!|>'\"%@`")
# YAML 1.1 words a parser resolves to something else: booleans, null, and the value (=) and merge (<<) keys.
RESERVED: Final = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n", "=", "<<"}
TIMESTAMP: Final = re.compile(r"^\d{4}-\d\d?-\d\d?([Tt ]|$)")
NUMBER: Final = re.compile(r"^[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?$|^0x[0-9a-fA-F]+$|^0o[0-7]+$|^\.inf$|^\.nan$")
FLOW_WIDTH: Final = 100


@dataclass(frozen=True)
class Commented:
    """A scalar written with a trailing ``# comment`` (e.g. the release tag of a pinned action SHA)."""

    value: str
    comment: str


@dataclass(frozen=True)
class Flow:
    """A mapping or list forced onto one line (``{a: 1}``), for short records such as matrix entries."""

    value: Mapping[str, object] | Sequence[object]
    comment: str = ""
    """Written after it, ``  # comment`` (the release tag of a pinned action in a one-line step)."""


@dataclass(frozen=True)
class Block:
    """A list forced into block style even when short."""

    value: Sequence[object]


@dataclass(frozen=True)
class Anchored:
    """``value`` written with a YAML anchor (``&name``), reused later with :class:`Alias`."""

    name: str
    value: object


@dataclass(frozen=True)
class Alias:
    """A reference (``*name``) to an :class:`Anchored` value written earlier in the document."""

    name: str


class Reuse:
    """Hands out :class:`Anchored` on the first use of a name and :class:`Alias` after it (document order)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, name: str, value: object) -> object:
        if name in self.seen:
            return Alias(name)
        self.seen.add(name)
        return Anchored(name, value)


def scalar(value: object, *, flow: bool = False) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if needs_quotes(text, flow=flow):
        return quote(text)
    return text


def quote(text: str) -> str:
    """A YAML double-quoted scalar: printable ASCII as is, everything else escaped (``\\uXXXX``/``\\UXXXXXXXX``)."""
    out = []
    for char in text:
        code = ord(char)
        if char in '\\"':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def needs_quotes(text: str, *, flow: bool = False) -> bool:
    return (
        not text
        or text != text.strip()
        or text[0] in INDICATORS
        or ": " in text
        or " #" in text
        or text.endswith(":")
        or "\n" in text
        or "\t" in text
        or text.lower() in RESERVED
        or bool(NUMBER.match(text))
        or bool(TIMESTAMP.match(text))
        or (flow and any(c in text for c in ",[]{}#:?&*!|>'\"%@`"))
    )


def _flow(value: object) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{scalar(k, flow=True)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, Flow):
        return _flow(value.value)
    if isinstance(value, Commented):  # inside a line: the comment goes after the whole Flow (Flow.comment)
        return scalar(value.value, flow=True)
    return scalar(value, flow=True)


def _is_scalar(value: object) -> bool:
    return not isinstance(value, Mapping | list | tuple | Flow | Block | Commented | Anchored | Alias)


def _inline(value: object) -> str | None:  # noqa: PLR0911 - one return per kind of node
    """The one-line form of ``value`` when it has one, else None (a nested block follows)."""
    if isinstance(value, Alias):
        return f"*{value.name}"
    if isinstance(value, Anchored):
        inner = _inline(value.value)
        return None if inner is None else f"&{value.name} {inner}"
    if isinstance(value, Commented):
        return f"{scalar(value.value)}  # {value.comment}"
    if isinstance(value, Flow):
        return _flow(value.value) + (f"  # {value.comment}" if value.comment else "")
    if isinstance(value, str) and "\n" in value:
        return None
    if _is_scalar(value):
        return scalar(value)
    if isinstance(value, Block):
        return None
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        if all(_is_scalar(v) for v in value):
            text = _flow(value)
            if len(text) <= FLOW_WIDTH:
                return text
        return None
    if isinstance(value, Mapping) and not value:
        return "{}"
    return None


def _literal(text: str, indent: str) -> list[str]:
    body = text[:-1] if text.endswith("\n") else text
    chomp = "" if text.endswith("\n") else "-"
    return [f"|{chomp}"] + [f"{indent}{line}" if line else "" for line in body.split("\n")]


def emit(value: object, indent: int = 0) -> list[str]:  # noqa: PLR0912 - one branch per kind of node
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            head = f"{pad}{scalar(key)}:"
            inline = _inline(item)
            if inline is not None:
                lines.append(f"{head} {inline}")
            elif isinstance(item, str):
                literal = _literal(item, pad + "  ")
                lines.append(f"{head} {literal[0]}")
                lines.extend(literal[1:])
            elif isinstance(item, Anchored):
                lines.append(f"{head} &{item.name}")
                lines.extend(emit(item.value, indent + 2))
            else:
                lines.append(head)
                lines.extend(emit(item, indent + 2))
        return lines
    if isinstance(value, Block):
        value = list(value.value)
    if isinstance(value, list | tuple):
        for item in value:
            inline = _inline(item)
            if inline is not None:
                lines.append(f"{pad}- {inline}")
            elif isinstance(item, str):
                literal = _literal(item, pad + "  ")
                lines.append(f"{pad}- {literal[0]}")
                lines.extend(literal[1:])
            elif isinstance(item, Anchored):
                lines.append(f"{pad}- &{item.name}")
                lines.extend(emit(item.value, indent + 2))
            else:
                nested = emit(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
        return lines
    inline = _inline(value)
    return [f"{pad}{inline}"] if inline is not None else []


def dump(value: Mapping[str, object], *, header: str = "", gap_keys: Sequence[str] = ()) -> str:
    """The document: ``header`` comment lines, then ``value``; a blank line before each top-level key in
    ``gap_keys`` and between the entries of those keys' mappings (jobs read better apart)."""
    out: list[str] = [header.rstrip("\n")] if header else []
    for key, item in value.items():
        if key in gap_keys and out:
            out.append("")
        if key in gap_keys and isinstance(item, Mapping) and item:
            out.append(f"{scalar(key)}:")
            for n, (sub, subitem) in enumerate(item.items()):
                if n:
                    out.append("")
                out.extend(emit({sub: subitem}, 2))
        else:
            out.extend(emit({key: item}))
    return "\n".join(out) + "\n"


_LIBYAML: Final = hasattr(yaml, "CSafeLoader")  # PyYAML built with libyaml
_DUMPER: Final = yaml.CSafeDumper if _LIBYAML else yaml.SafeDumper


def load(text: str) -> Any:
    """``yaml.safe_load`` with libyaml's parser when PyYAML has it: the same documents, about ten times faster (the
    adapters' facts parse every rendered file back, and the tests do so hundreds of times)."""
    if _LIBYAML:
        return yaml.load(text, Loader=yaml.CSafeLoader)
    return yaml.load(text, Loader=yaml.SafeLoader)


def dump_data(value: object) -> str:
    """``yaml.safe_dump`` with libyaml's emitter when PyYAML has it, and no line ever folded (a text substitution on
    the result must find what it looks for whole)."""
    return yaml.dump(value, Dumper=_DUMPER, width=1 << 30)
