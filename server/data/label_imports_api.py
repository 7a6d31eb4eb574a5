"""Importing a labeled dataset (COCO JSON or AutoML JSON Lines): the migration path from
other tools, and the way back in for Colabel's own exports.

Images map to the project's items by key: the file name or URL as written, or its longest
trailing part that is a key (so `https://…/container/dir/a.jpg`, `azureml://…/paths/dir/a.jpg`
and `dir/a.jpg` all find item `dir/a.jpg`). Categories map onto the label tree by full path
or unambiguous bare name; missing labels are created when `create_labels=true` (never
deeper than the tree allows), otherwise reported. Bad records are reported with their
position and nothing changes unless `accept_partial=true`. Labels become final labels
(`labels_as=final`, the default; a person's decision is never overwritten) or prelabels.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import asyncpg
import numpy as np
from pydantic import ValidationError

from collab.schema import DEFAULT_TILE_SIZE, SchemaError, validate_annotation
from server.accounts.roles import Role
from server.data import dataset_formats as label_files
from server.data import imported_labels, ingest, uploads
from server.data.dataset_formats import Parsed, Problem
from server.data.uploads_api import TRUE
from server.errors import Unprocessable
from server.exports import geometry
from server.projects import label_store as labels
from server.projects import project as projects
from server.projects.label_tree import (
    MAX_DEPTH,
    LabelIndex,
    LabelNode,
    check_name,
    flatten,
    name_key,
)
from server.routing import Call, Endpoint
from server.validation import Strict, unprocessable_from
from server.work.queue_state import forget_queue

MAX_REPORTED = 1000
_LABEL_ROWS = "SELECT id, parent_id, name FROM labels WHERE project_id = $1 ORDER BY position"
_ITEMS = """
SELECT id, key, decided_by, width, height FROM items
WHERE project_id = $1 AND key = ANY($2::text[]) AND status <> 'missing'
"""
_FIELDS = {"format", "labels_as", "create_labels", "accept_partial"}


class LabelImportOptions(Strict):
    format: Literal["coco", "jsonl"] | None = None
    labels_as: imported_labels.LabelsAs = "final"
    create_labels: bool = False
    accept_partial: bool = False


def _options(fields: dict[str, str]) -> LabelImportOptions:
    if unknown := sorted(set(fields) - _FIELDS):
        raise Unprocessable(f"unknown form field(s): {', '.join(unknown)}",
                            details=[{"loc": [u]} for u in unknown])
    raw: dict[str, Any] = {k: v for k, v in fields.items() if k in ("format", "labels_as") and v}
    for flag in ("create_labels", "accept_partial"):
        if flag in fields:
            raw[flag] = fields[flag].lower() in TRUE
    try:
        return LabelImportOptions.model_validate(raw)
    except ValidationError as exc:
        raise unprocessable_from(exc) from None


def key_candidates(image: str) -> list[str]:
    """Keys an image reference may mean, longest first: its path, then shorter tails."""
    text = image.strip()
    if "://" in text:
        text = unquote(urlsplit(text).path)
    parts = [p for p in text.replace("\\", "/").split("/") if p]
    return ["/".join(parts[i:]) for i in range(len(parts))]


async def _match_items(conn: asyncpg.Connection, pid: int, records: list[Parsed],
                       problems: list[Problem]) -> list[tuple[Parsed, asyncpg.Record]]:
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
    return out


def _annotation(r: Parsed, ids: dict[str, int], task_type: str, item: asyncpg.Record,
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


async def import_labels(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    settings = call.services.settings
    pa = await projects.access(call.services.db, call.me, pid, Role.OWNER)
    task_type = pa.row["task_type"]
    batch = await uploads.receive_one_file(call.request, settings, "COCO or JSON Lines file")
    try:
        opts = _options(batch.fields)
        staged = batch.files[0]
        try:
            kind = label_files.detect(staged.key, opts.format)
            data = await asyncio.to_thread(staged.path.read_bytes)
            parsed = await asyncio.to_thread(label_files.parse, data, kind, task_type)
        except label_files.FileError as exc:
            raise Unprocessable(str(exc), code="bad_file") from None
        del data
        return await _apply(call, pid, task_type, opts, kind, parsed)
    finally:
        batch.discard()


async def _apply(call: Call, pid: int, task_type: Any, opts: LabelImportOptions, kind: str,
                 parsed: label_files.ParsedFile) -> dict[str, Any]:
    problems = list(parsed.problems)
    skipped_unlabeled = 0
    async with call.services.db.bulk() as conn, conn.transaction():
        await conn.execute(projects.LOCK, pid)
        await projects.access(conn, call.me, pid, Role.OWNER)
        await ingest.lock_project(conn, pid, wait=True)
        matched = await _match_items(conn, pid, parsed.records, problems)
        index = LabelIndex.from_rows(await conn.fetch(_LABEL_ROWS, pid))
        used = sorted({p for r, _ in matched for p in r.label_paths()})
        missing = [p for p in used if index.resolve(p) is None]
        ambiguous = {p for p in missing if "/" not in p and len(index.by_name.get(name_key(p), ())) > 1}
        created: list[str] = []
        for p in sorted(ambiguous):
            problems.append(Problem(parsed.label_positions.get(p, "file"), index.problem(p)))
        creatable = [p for p in missing if p not in ambiguous]
        if creatable and opts.create_labels:
            created = await _create_labels(conn, pid, creatable, parsed.label_positions, problems)
            index = LabelIndex.from_rows(await conn.fetch(_LABEL_ROWS, pid))
        elif creatable:
            problems.extend(Problem(parsed.label_positions.get(p, "file"),
                                    f"{index.problem(p)}; send create_labels=true to create it")
                            for p in creatable)
        ids = {p: i for p in used if (i := index.resolve(p)) is not None}
        label_ids = set(index.paths)
        rows: list[imported_labels.Labeled] = []
        for r, item in matched:
            if not r.label_paths() and not (r.empty and task_type in ("bbox", "polygon")):
                skipped_unlabeled += 1  # nothing to import for this image
                continue
            if any(p not in ids for p in r.label_paths()):
                continue  # its label is reported above
            try:
                annotation = await asyncio.to_thread(_annotation, r, ids, task_type, item,
                                                     call.services.settings.media_max_pixels)
                validate_annotation(annotation, task_type, label_ids=label_ids, strict_submit=True)
            except (ValueError, KeyError) as exc:
                reason = f"{exc.field}: {exc.reason}" if isinstance(exc, SchemaError) else str(exc)
                problems.append(Problem(r.position, reason))
                continue
            rows.append(imported_labels.Labeled(item, annotation))
        errors = [{"position": p.position, "message": p.message} for p in problems[:MAX_REPORTED]]
        if problems and not opts.accept_partial:
            raise Unprocessable(
                f"{len(problems)} problem(s) in the file; nothing was imported "
                "(send accept_partial=true to import the valid records)",
                code="records_invalid", details={"errors": errors, "total": parsed.total})
        applied = await imported_labels.apply(conn, call.me.id, opts.labels_as, rows)
    if applied.labeled:
        await forget_queue(call.services.redis, call.services.settings.redis_prefix, pid)
    return {
        "format": kind,
        "records": parsed.total,
        "matched": len(matched),
        "labeled": applied.labeled,
        "prelabeled": applied.prelabeled,
        "kept_human_labels": applied.kept_human_labels,
        "skipped_without_labels": skipped_unlabeled,
        "created_labels": created,
        "errors": errors,
    }


ENDPOINTS = [
    Endpoint("POST", "/api/v1/projects/{pid:int}/label-imports", import_labels,
             "Import a labeled dataset: multipart 'file' (COCO .json or AutoML .jsonl), 'format', "
             "'labels_as' (final|prelabel), 'create_labels', 'accept_partial' (owners)",
             tag="data", errors=(400, 401, 403, 404, 409, 413, 422),
             form={"type": "object", "required": ["file"], "properties": {
                 "file": {"type": "string", "format": "binary"},
                 "format": {"type": "string", "enum": ["coco", "jsonl"]},
                 "labels_as": {"type": "string", "enum": ["final", "prelabel"]},
                 "create_labels": {"type": "string", "enum": ["true", "false"]},
                 "accept_partial": {"type": "string", "enum": ["true", "false"]}}}),
]
