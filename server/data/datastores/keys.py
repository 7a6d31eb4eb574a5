"""Datastore keys: validation, extension rules and pattern matching.

A key is a '/'-separated path relative to a datastore's root. Patterns follow the
product's conventions: `dir/**` takes every file below `dir`, `**/*.*` takes everything;
`*` and `?` match inside one path segment and `**` matches any number of segments.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote

from server.data.datastores.base import ACCEPTED_EXTENSIONS, DICOM_EXTENSIONS, UnsafeKey


def check_key(key: str) -> str:
    """Return `key` if it stays inside its root; raise UnsafeKey otherwise.

    Percent-decoded forms are checked too, so `%2e%2e` cannot smuggle a parent step
    through a layer that decodes later.
    """
    for form in {key, unquote(key)}:
        if not form or form.startswith("/") or "\\" in form or "\x00" in form:
            raise UnsafeKey(f"unsafe key {key!r}")
        parts = form.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise UnsafeKey(f"unsafe key {key!r}")
    return key


def extension(key: str) -> str:
    return posixpath.splitext(key)[1].lower()


def accepted(key: str) -> bool:
    """Whether the product takes this file (by extension, case-insensitively)."""
    return extension(key) in ACCEPTED_EXTENSIONS


def media_kind(key: str) -> str:
    return "dicom" if extension(key) in DICOM_EXTENSIONS else "image"


@dataclass(frozen=True)
class Pattern:
    """A compiled pattern: the folder to list and the regex a key must match."""

    source: str
    list_prefix: str
    regex: re.Pattern[str]

    def matches(self, key: str) -> bool:
        return self.regex.fullmatch(key) is not None


def _segment(seg: str) -> str:
    out = []
    for ch in seg:
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def compile_pattern(pattern: str) -> Pattern:
    """Compile a pattern; a bare folder (`dir` or `dir/`) means `dir/**`."""
    source = pattern.strip().strip("/") or "**"
    parts = source.split("/")
    if not any(ch in source for ch in "*?"):
        parts.append("**")
    literal: list[str] = []
    for seg in parts:
        if any(ch in seg for ch in "*?"):
            break
        literal.append(seg)
    regex = ""
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        if seg == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += _segment(seg) + ("" if last else "/")
    prefix = "/".join(literal)
    return Pattern(source, prefix + "/" if prefix else "", re.compile(regex, re.DOTALL))
