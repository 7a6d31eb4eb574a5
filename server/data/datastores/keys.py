"""Datastore keys: validation, extension rules and pattern matching.

A key is a '/'-separated path relative to a datastore's root. Patterns follow the
product's conventions: `dir/**` takes every file below `dir`, `**/*.*` takes everything;
`*` and `?` match inside one path segment and `**` matches any number of segments.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
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


# A listing is filtered a batch at a time by one regex per key, called from C
# (`filter(regex.fullmatch, batch)`): no Python code runs per key.

# The characters other than ASCII letters that `str.lower()` turns into one: the extension
# rules compare lower-cased, so these spell an accepted extension too.
LOWERS_TO_ASCII = {"\u212a": "k"}


def _nocase(text: str) -> str:
    """A regex matching `text` wherever `text.lower()` would."""
    out = []
    for ch in text:
        if ch.isalpha():
            folds = "".join(k for k, v in LOWERS_TO_ASCII.items() if v == ch)
            out.append(f"[{ch}{ch.upper()}{folds}]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _endings(extensions: frozenset[str]) -> str:
    """The extensions without their dot, as alternatives (the dot stays a literal before
    them, which lets the regex engine jump from dot to dot)."""
    return "(?:" + "|".join(_nocase(ext[1:]) for ext in sorted(extensions)) + ")"


# A key whose `extension()` is accepted: its base name has something other than dots
# before its last dot (as in `posixpath.splitext`), and what follows that dot is listed.
_ACCEPTED = r"(?:.*/)?\.*[^./][^/]*\." + _endings(ACCEPTED_EXTENSIONS)
_ACCEPTS = re.compile(_ACCEPTED, re.DOTALL)
# How an accepted key of DICOM kind ends (the rest of splitext's rules were checked when it
# was accepted).
DICOM_ENDING = r"\." + _endings(DICOM_EXTENSIONS)


def select(keys: Iterable[str], pattern: Pattern | None = None) -> list[str]:
    """The keys that `pattern` (when given) matches and the product accepts, in order."""
    return list(filter((pattern.keeps if pattern else _ACCEPTS).fullmatch, keys))


@dataclass(frozen=True)
class Pattern:
    """A compiled pattern: the folder to list and the regex a key must match; `keeps`
    fully matches the keys it matches that the product also accepts."""

    source: str
    list_prefix: str
    regex: re.Pattern[str]
    keeps: re.Pattern[str]

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
    return Pattern(source, prefix + "/" if prefix else "", re.compile(regex, re.DOTALL),
                   re.compile(f"(?={regex}\\Z){_ACCEPTED}", re.DOTALL))
