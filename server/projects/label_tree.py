"""The label tree: validation of an edited tree and its JSON form with paths and hotkeys.

A tree is a list of nodes `{id?, name, children}`. Display order is pre-order (a parent
before its children). Any node, leaf or not, is a selectable label; its path joins names
with "/". A node may carry the hotkey its owner chose (one of HOTKEYS, unique in the tree);
the other keys go to the remaining labels, leaves first (the labels people draw and tag
with), then groups, each in display order: 1-9, 0, then the letters no labeling screen uses.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from server.errors import Unprocessable
from server.validation import Strict

MAX_DEPTH = 6
MAX_LABELS = 2000
MAX_NAME = 100
# Digits, then the top, home and bottom letter rows without the letters the labeling
# screens already use (a select-all; b, e, f, h, p, r, v tools and fit). The browser reads
# a key by its position, so these work on any layout; client/src/pages/labeling/hotkeys.ts
# holds the same sequence.
HOTKEYS = "1234567890qwtyuiosdgjklzxcnm"
# Text that a browser would parse as markup; label names are plain text.
_MARKUP = re.compile(r"<\s*[A-Za-z!/?]")


class LabelNode(Strict):
    """One node of an edited tree; `id` keeps an existing label, no `id` creates one."""

    id: int | None = None
    name: str = Field(min_length=1, max_length=MAX_NAME)
    hotkey: str | None = Field(default=None, description="the key that picks this label, one of " + HOTKEYS)
    children: list[LabelNode] = Field(default_factory=list)


@dataclass
class FlatLabel:
    """A node in pre-order with its parent's index in the same list."""

    id: int | None
    name: str
    parent: int | None
    depth: int
    loc: tuple[Any, ...]
    hotkey: str | None = None


def _bad(loc: tuple[Any, ...], msg: str, code: str = "invalid_label") -> Unprocessable:
    where = ".".join(str(p) for p in loc)
    return Unprocessable(f"{where}: {msg}", code=code, details=[{"loc": list(loc), "msg": msg}])


def name_key(name: str) -> str:
    """Case- and width-insensitive key used for sibling uniqueness."""
    return unicodedata.normalize("NFKC", name).casefold()


def check_name(name: str, loc: tuple[Any, ...]) -> None:
    if "/" in name:
        raise _bad(loc, "label names cannot contain '/', which separates levels in paths")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise _bad(loc, "label names cannot contain control characters")
    if _MARKUP.search(name):
        raise _bad(loc, "label names are plain text; HTML tags are not allowed")


def check_hotkey(key: str, loc: tuple[Any, ...], taken: dict[str, str], name: str) -> str:
    """The key in its stored form (lowercase); refused when not allowed or already taken."""
    k = key.strip().lower()
    if len(k) != 1 or k not in HOTKEYS:
        raise _bad(loc, f"hotkey {key!r} is not one of the allowed keys: 1-9, 0 and the letters "
                        f"{' '.join(HOTKEYS[10:])} (the others are tool keys)", code="invalid_hotkey")
    if k in taken:
        raise _bad(loc, f"hotkey {k!r} is given to both '{taken[k]}' and '{name}'", code="duplicate_hotkey")
    taken[k] = name
    return k


def flatten(tree: list[LabelNode], root_loc: tuple[Any, ...] = ("labels",)) -> list[FlatLabel]:
    """Validate depth, names, sibling uniqueness, ids and hotkeys; return nodes in pre-order."""
    out: list[FlatLabel] = []
    seen_ids: set[int] = set()
    keys: dict[str, str] = {}

    def walk(nodes: list[LabelNode], parent: int | None, depth: int, loc: tuple[Any, ...]) -> None:
        siblings: dict[str, str] = {}
        for i, node in enumerate(nodes):
            here = (*loc, i)
            if depth > MAX_DEPTH:
                raise _bad(
                    here,
                    f"label trees are at most {MAX_DEPTH} levels deep; "
                    f"'{node.name}' would be level {depth}",
                    code="label_tree_too_deep",
                )
            check_name(node.name, (*here, "name"))
            key = name_key(node.name)
            if key in siblings:
                raise _bad(
                    (*here, "name"),
                    f"'{node.name}' appears twice under the same parent (as '{siblings[key]}')",
                    code="duplicate_label",
                )
            siblings[key] = node.name
            if node.id is not None:
                if node.id in seen_ids:
                    raise _bad((*here, "id"), f"label id {node.id} appears twice")
                seen_ids.add(node.id)
            hotkey = check_hotkey(node.hotkey, (*here, "hotkey"), keys, node.name) if node.hotkey else None
            out.append(FlatLabel(node.id, node.name, parent, depth, here, hotkey))
            if len(out) > MAX_LABELS:
                raise _bad(root_loc, f"a project has at most {MAX_LABELS} labels")
            walk(node.children, len(out) - 1, depth + 1, (*here, "children"))

    walk(tree, None, 1, root_loc)
    return out


def tree_json(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Nested JSON from label rows (id, parent_id, name, depth, used_at, hotkey) in display
    order. `hotkey` is the key that picks the label, `assigned_hotkey` the owner's choice."""
    nodes: dict[int, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for row in rows:
        parent = nodes.get(row["parent_id"]) if row["parent_id"] is not None else None
        path = f"{parent['path']}/{row['name']}" if parent else row["name"]
        node = {
            "id": row["id"],
            "name": row["name"],
            "path": path,
            "depth": row["depth"],
            "hotkey": row.get("hotkey"),
            "assigned_hotkey": row.get("hotkey"),
            "used": row["used_at"] is not None,
            "children": [],
        }
        nodes[row["id"]] = node
        (parent["children"] if parent else roots).append(node)
    ordered = [n for n in nodes.values() if n["hotkey"] is None]
    leaves_first = [n for n in ordered if not n["children"]] + [n for n in ordered if n["children"]]
    taken = {n["hotkey"] for n in nodes.values()}
    for node, key in zip(leaves_first, (k for k in HOTKEYS if k not in taken), strict=False):
        node["hotkey"] = key
    return roots


def _key(text: str) -> str:
    return "/".join(name_key(part) for part in text.strip().split("/"))


@dataclass(frozen=True)
class LabelIndex:
    """Label lookup by full path or unambiguous bare name, insensitive to case and width."""

    by_path: Mapping[str, int]
    by_name: Mapping[str, tuple[int, ...]]
    paths: Mapping[int, str]

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> LabelIndex:
        """Build from label rows (id, parent_id, name) in display order, parents before children."""
        paths: dict[int, str] = {}
        by_name: dict[str, tuple[int, ...]] = {}
        for row in rows:
            parent = row["parent_id"]
            if parent is not None and parent not in paths:
                raise ValueError(f"label {row['id']} comes before its parent {parent}")
            paths[row["id"]] = f"{paths[parent]}/{row['name']}" if parent is not None else row["name"]
            bare = name_key(row["name"])
            by_name[bare] = (*by_name.get(bare, ()), row["id"])
        return cls({_key(p): i for i, p in paths.items()}, by_name, paths)

    def resolve(self, text: str) -> int | None:
        """The id for a full path or an unambiguous bare name; None when unknown or ambiguous."""
        found = self.by_path.get(_key(text))
        if found is not None or "/" in text:
            return found
        ids = self.by_name.get(name_key(text.strip()), ())
        return ids[0] if len(ids) == 1 else None

    def problem(self, text: str) -> str:
        """Why `text` does not resolve, for an error message."""
        ids = self.by_name.get(name_key(text.strip()), ()) if "/" not in text else ()
        if len(ids) > 1:
            options = ", ".join(repr(self.paths[i]) for i in ids[:5])
            return f"label {text!r} is ambiguous; use its full path ({options})"
        return f"unknown label {text!r}"
