"""Importing a labeled dataset's records (read by dataset_formats.py) onto a project's items.

Images map to the project's items by key: the file name or URL as written, or its longest
trailing part that is a key (so `https://…/container/dir/a.jpg`, `azureml://…/paths/dir/a.jpg`
and `dir/a.jpg` all find item `dir/a.jpg`). Categories map onto the label tree by full path
or unambiguous bare name; missing labels are created when asked (never deeper than the
tree allows), otherwise reported. Bad records are reported with their position and nothing
changes unless a partial import is accepted. Labels become final labels (a person's
decision is never overwritten) or prelabels; imported_labels.py writes them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import numpy as np

from collab.schema import DEFAULT_TILE_SIZE, SchemaError, TaskType, validate_annotation
from server.data import dataset_formats as label_files
from server.data import imported_labels, ingest
from server.data.dataset_formats import Parsed, ParsedFile, Problem
from server.errors import Unprocessable
from server.exports import geometry
from server.projects import label_store as labels
from server.projects.label_tree import (
    MAX_DEPTH,
    LabelIndex,
    LabelNode,
    check_name,
    flatten,
    name_key,
)

MAX_REPORTED = 1000
_LABEL_ROWS = "SELECT id, parent_id, name FROM labels WHERE project_id = $1 ORDER BY position"
_ITEMS = """
SELECT id, key, decided_by, width, height FROM items
WHERE project_id = $1 AND key = ANY($2::text[]) AND status <> 'missing'
"""

Matched = tuple[Parsed, asyncpg.Record]


@dataclass
class LabelImport:
    """What an import did, and the problems it skipped (when a partial import was accepted)."""

    matched: int
    created_labels: list[str]
    skipped_without_labels: int
    applied: imported_labels.Applied
    problems: list[Problem]


async def read_file(path: Path, filename: str, declared: str | None,
                    task_type: str) -> tuple[label_files.Kind, ParsedFile]:
    """The file's format and its records, read off the event loop; FileError when the file
    as a whole cannot be read."""
    kind = label_files.detect(filename, declared)
    data = await asyncio.to_thread(path.read_bytes)
    return kind, await asyncio.to_thread(label_files.parse, data, kind, task_type)


def reported(problems: list[Problem]) -> list[dict[str, str]]:
    """The problems as the API lists them, at most MAX_REPORTED."""
    return [{"position": p.position, "message": p.message} for p in problems[:MAX_REPORTED]]


async def apply(conn: asyncpg.Connection, pid: int, user_id: int, task_type: TaskType,
                parsed: ParsedFile, *, labels_as: imported_labels.LabelsAs, create_labels: bool,
                accept_partial: bool, max_pixels: int) -> LabelImport:
    """Import the records inside the caller's transaction, the project row locked; 422 listing
    the problems, with nothing changed, unless `accept_partial`."""
    problems = list(parsed.problems)
    await ingest.lock_project(conn, pid, wait=True)
    matched = await _match_items(conn, pid, parsed.records, problems)
    used = sorted({p for r, _ in matched for p in r.label_paths()})
    index, created = await _resolve_labels(conn, pid, used, parsed.label_positions,
                                           create_labels, problems)
    ids = {p: i for p in used if (i := index.resolve(p)) is not None}
    rows, skipped = await _annotations(matched, ids, set(index.paths), task_type, max_pixels,
                                       problems)
    if problems and not accept_partial:
        raise Unprocessable(
            f"{len(problems)} problem(s) in the file; nothing was imported "
            "(send accept_partial=true to import the valid records)",
            code="records_invalid", details={"errors": reported(problems), "total": parsed.total})
    applied = await imported_labels.apply(conn, user_id, labels_as, rows)
    return LabelImport(len(matched), created, skipped, applied, problems)


def key_candidates(image: str) -> list[str]:
    """Keys an image reference may mean, longest first: its path, then shorter tails."""
    text = image.strip()
    if "://" in text:
        text = unquote(urlsplit(text).path)
    parts = [p for p in text.replace("\\", "/").split("/") if p]
    return ["/".join(parts[i:]) for i in range(len(parts))]


async def _match_items(conn: asyncpg.Connection, pid: int, records: list[Parsed],
                       problems: list[Problem]) -> list[Matched]:
    wanted = {c for r in records for c in key_candidates(r.image)}
    items = {row["key"]: row for row in await conn.fetch(_ITEMS, pid, list(wanted))}
    taken: dict[int, str] = {}
    out = []
    for r in records:
        item = next((items[c] for c in key_candidates(r.image) if c in items), None)
        if item is None:
            problems.append(Problem(r.position, f"no item of this project has the image {r.image!r}"))
        elif item["id"] in taken:
            problems.append(Problem(r.position, f"the image {item['key']!r} is labeled twice "
                                                f"(first at {taken[item['id']]})"))
        else:
            taken[item["id"]] = r.position
            out.append((r, item))
    return out


async def _resolve_labels(conn: asyncpg.Connection, pid: int, used: list[str],
                          positions: dict[str, str], create: bool,
                          problems: list[Problem]) -> tuple[LabelIndex, list[str]]:
    """The project's labels, after creating the missing ones when `create`, and the paths
    created. An ambiguous bare name is never created: it would make a third label of that
    name."""
    index = LabelIndex.from_rows(await conn.fetch(_LABEL_ROWS, pid))
    missing = [p for p in used if index.resolve(p) is None]
    ambiguous = {p for p in missing if "/" not in p and len(index.by_name.get(name_key(p), ())) > 1}
    for p in sorted(ambiguous):
        problems.append(Problem(positions.get(p, "file"), index.problem(p)))
    creatable = [p for p in missing if p not in ambiguous]
    if creatable and create:
        created = await _create_labels(conn, pid, creatable, positions, problems)
        return LabelIndex.from_rows(await conn.fetch(_LABEL_ROWS, pid)), created
    problems.extend(Problem(positions.get(p, "file"),
                            f"{index.problem(p)}; send create_labels=true to create it")
                    for p in creatable)
    return index, []


async def _create_labels(conn: asyncpg.Connection, pid: int, paths: list[str],
                         positions: dict[str, str], problems: list[Problem]) -> list[str]:
    """Add the missing label paths to the tree (parents too); return the paths created."""
    tree = await labels.read_tree(conn, pid)
    created: list[str] = []
    for path in paths:
        parts = path.split("/")
        where = positions.get(path, "file")
        if len(parts) > MAX_DEPTH:
            problems.append(Problem(where, f"label {path!r} would be {len(parts)} levels deep; "
                                           f"label trees are at most {MAX_DEPTH}"))
            continue
        try:
            for part in parts:
                check_name(part, ("label",))
        except Unprocessable as exc:
            problems.append(Problem(where, f"label {path!r}: {exc.message}"))
            continue
        level = tree
        for part in parts:
            node = next((n for n in level if name_key(n["name"]) == name_key(part)), None)
            if node is None:
                node = {"name": part, "children": []}
                level.append(node)
            level = node["children"]
        created.append(path)
    if created:
        nodes = [LabelNode.model_validate(_node(n)) for n in tree]
        await labels.apply_tree(conn, pid, flatten(nodes))
    return created


def _node(n: dict[str, Any]) -> dict[str, Any]:
    out = {"name": n["name"], "children": [_node(c) for c in n["children"]]}
    if n.get("id") is not None:
        out["id"] = n["id"]
    if n.get("assigned_hotkey"):
        out["hotkey"] = n["assigned_hotkey"]  # an owner's key stays when labels are added
    return out


async def _annotations(matched: list[Matched], ids: dict[str, int], label_ids: set[int],
                       task_type: TaskType, max_pixels: int,
                       problems: list[Problem]) -> tuple[list[imported_labels.Labeled], int]:
    """The valid records as labels to write, and how many records had no labels at all."""
    rows: list[imported_labels.Labeled] = []
    skipped_unlabeled = 0
    for r, item in matched:
        if not r.label_paths() and not (r.empty and task_type in ("bbox", "polygon")):
            skipped_unlabeled += 1  # nothing to import for this image
            continue
        if any(p not in ids for p in r.label_paths()):
            continue  # its label is reported already
        try:
            annotation = await asyncio.to_thread(build_annotation, r, ids, task_type, item,
                                                 max_pixels)
            validate_annotation(annotation, task_type, label_ids=label_ids, strict_submit=True)
        except (ValueError, KeyError) as exc:
            reason = f"{exc.field}: {exc.reason}" if isinstance(exc, SchemaError) else str(exc)
            problems.append(Problem(r.position, reason))
            continue
        rows.append(imported_labels.Labeled(item, annotation))
    return rows, skipped_unlabeled


def build_annotation(r: Parsed, ids: dict[str, int], task_type: str, item: asyncpg.Record,
                     max_pixels: int) -> dict[str, Any]:
    """The record in plain JSON form with label ids; ValueError/SchemaError when it cannot be."""
    if task_type in ("multiclass", "multilabel"):
        return {"classes": [ids[p] for p in r.classes]}
    if task_type in ("bbox", "polygon"):
        return {"shapes": [{**s, "id": f"i{n}", "label": ids[s["label"]], "source": "human"}
                           for n, s in enumerate(r.shapes, start=1)]}
    w, h = r.width, r.height
    if item["width"] and item["height"] and (item["width"], item["height"]) != (w, h):
        raise ValueError(f"the file says the image is {w}x{h}; it is {item['width']}x{item['height']}")
    assert w and h  # parsing refused masks without a size
    if w * h > max_pixels:
        raise ValueError(f"a {w}x{h} mask is larger than the {max_pixels}-pixel limit")
    values = np.zeros((h, w), dtype=np.uint32)
    for path, seg in r.masks:
        values[geometry.decode_segmentation(seg, w, h) != 0] = ids[path]
    tiles = geometry.tiles_from_mask(values, DEFAULT_TILE_SIZE)
    return {"mask": {"tile_size": DEFAULT_TILE_SIZE, "tiles": tiles}}
