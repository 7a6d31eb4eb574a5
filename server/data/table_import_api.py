"""Tabular import (a table of image keys with optional labels), as the seed's MLTable input.

The table names images in the project's datastore and may carry a category and a
confidence per row. Imported labels become final labels (`labels_as=final`) or
suggestions a labeler must confirm (`labels_as=prelabel`). A file with bad rows changes
nothing unless the caller sends `accept_partial=true`, in which case the good rows are
imported and the bad ones reported.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import Field, ValidationError

from server.accounts.roles import Role
from server.data import imported_labels, ingest, uploads
from server.data import table_import as tabular
from server.data.datastores.base import UnsafeKey
from server.data.datastores.factory import open_datastore
from server.data.datastores.keys import accepted, check_key
from server.data.datastores.local import LocalDatastore
from server.data.uploads_api import TRUE
from server.errors import Conflict, Unprocessable
from server.projects import project as projects
from server.projects.label_tree import LabelIndex
from server.routing import Call, Endpoint
from server.validation import Strict, unprocessable_from
from server.work.queue_state import forget_queue

MAX_ROWS = 1_000_000
MAX_REPORTED_ERRORS = 1000
_LABEL_ROWS = "SELECT id, parent_id, name FROM labels WHERE project_id = $1 ORDER BY position"
_ITEM_IDS = "SELECT id, key, decided_by FROM items WHERE project_id = $1 AND key = ANY($2::text[])"


class MappingBody(Strict):
    image: str = Field(min_length=1, max_length=200)
    category: str | None = Field(None, min_length=1, max_length=200)
    confidence: str | None = Field(None, min_length=1, max_length=200)


class ImportOptions(Strict):
    mapping: MappingBody
    labels_as: Literal["final", "prelabel"] = "final"
    accept_partial: bool = False
    format: Literal["csv", "jsonl", "parquet"] | None = None


def _options(fields: dict[str, str]) -> ImportOptions:
    try:
        mapping = json.loads(fields.get("mapping", "null"))
    except json.JSONDecodeError:
        raise Unprocessable("mapping must be a JSON object like {\"image\": \"column\"}",
                            code="validation_error", details=[{"loc": ["mapping"]}]) from None
    raw: dict[str, Any] = {"mapping": mapping}
    if "labels_as" in fields:
        raw["labels_as"] = fields["labels_as"]
    if "accept_partial" in fields:
        raw["accept_partial"] = fields["accept_partial"].lower() in TRUE
    if fields.get("format"):
        raw["format"] = fields["format"]
    unknown = set(fields) - {"mapping", "labels_as", "accept_partial", "format"}
    if unknown:
        raise Unprocessable(f"unknown form field(s): {', '.join(sorted(unknown))}",
                            details=[{"loc": [u]} for u in sorted(unknown)])
    try:
        return ImportOptions.model_validate(raw)
    except ValidationError as exc:
        raise unprocessable_from(exc) from None


def image_resolver(binding: dict[str, Any], local_root: Path | None) -> Any:
    """A function turning a table's image cell into a datastore key, or ValueError."""
    store = binding["datastore"]
    base = None
    if store["kind"] == "azure_blob":
        prefix = f"{store['prefix']}/" if store.get("prefix") else ""
        base = f"{store['account_url']}/{store['container']}/{prefix}"

    def resolve(value: str) -> str:
        value = value.strip()
        if "://" in value:
            if base is None or not value.startswith(base):
                raise ValueError("URLs must point inside this project's Azure Blob container"
                                 if base else "give the file's path in the datastore, not a URL")
            value = unquote(value[len(base):].split("?", 1)[0])
        try:
            key = check_key(value)
        except UnsafeKey:
            raise ValueError(f"unsafe path {value!r}") from None
        if not accepted(key):
            raise ValueError(f"{key}: not an accepted image or DICOM file type")
        if local_root is not None and not os.path.isfile(local_root / key):
            raise ValueError(f"{key}: no such file in the datastore")
        return key

    return resolve


async def import_table(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    settings = call.services.settings
    pa = await projects.access(call.services.db, call.me, pid, Role.OWNER)
    binding = pa.row["dataset"]
    if binding is None:
        raise Conflict("bind a dataset first: imported rows name files in it", code="no_dataset")
    batch = await uploads.receive_one_file(call.request, settings, "table")
    try:
        opts = _options(batch.fields)
        staged = batch.files[0]
        store = open_datastore(settings, pid, binding)
        local_root = store.root if isinstance(store, LocalDatastore) else None
        await store.close()
        label_rows = await call.services.db.fetch(_LABEL_ROWS, pid)
        mapping = tabular.ColumnMapping(opts.mapping.image, opts.mapping.category,
                                        opts.mapping.confidence)

        def plan() -> tabular.ImportPlan:
            fmt = tabular.detect_format(staged.key, opts.format)
            return tabular.plan_file(staged.path, fmt, mapping, pa.row["task_type"],
                                     LabelIndex.from_rows(label_rows),
                                     image_resolver(binding, local_root), MAX_ROWS)

        try:
            result = await asyncio.to_thread(plan)
        except tabular.TabularError as exc:
            raise Unprocessable(str(exc), code="bad_table") from None
        errors = [{"row": e.row, "column": e.column, "message": e.message}
                  for e in result.errors[:MAX_REPORTED_ERRORS]]
        if result.errors and not opts.accept_partial:
            raise Unprocessable(
                f"{len(result.errors)} of {result.total} rows have errors; nothing was imported "
                "(send accept_partial=true to import the valid rows)",
                code="rows_invalid", details={"errors": errors, "total": result.total},
            )
        return await _apply(call, pid, opts, result, errors)
    finally:
        batch.discard()


async def _apply(call: Call, pid: int, opts: ImportOptions, plan: tabular.ImportPlan,
                 errors: list[dict[str, Any]]) -> dict[str, Any]:
    settings = call.services.settings
    keys = [r.key for r in plan.rows]
    async with call.services.db.bulk() as conn, conn.transaction():
        await conn.execute(projects.LOCK, pid)
        await projects.access(conn, call.me, pid, Role.OWNER)
        await ingest.lock_project(conn, pid, wait=True)
        result = await ingest.register_keys(conn, pid, settings.max_items_per_project, keys,
                                            kind="import")
        items = {r["key"]: r for r in await conn.fetch(_ITEM_IDS, pid, keys)}
        applied = await imported_labels.apply(conn, call.me.id, opts.labels_as, (
            imported_labels.Labeled(items[row.key], row.annotation, row.confidence)
            for row in plan.rows if row.key in items and row.annotation is not None))
    if result.changed_items or applied.labeled:
        await forget_queue(call.services.redis, settings.redis_prefix, pid)
    return {
        "rows": plan.total,
        "imported": len(items),
        "labeled": applied.labeled,
        "prelabeled": applied.prelabeled,
        "kept_human_labels": applied.kept_human_labels,
        "errors": errors,
        "ingest": result.to_json(),
    }


ENDPOINTS = [
    Endpoint("POST", "/api/v1/projects/{pid:int}/imports", import_table,
             "Import a CSV, JSON Lines or Parquet table: multipart 'file', 'mapping' "
             "({image, category?, confidence?}), 'labels_as' (final|prelabel), "
             "'accept_partial' (owners)",
             tag="data", errors=(400, 401, 403, 404, 409, 413, 422),
             form={"type": "object", "required": ["file", "mapping"], "properties": {
                 "file": {"type": "string", "format": "binary"},
                 "mapping": {"type": "string", "description": "JSON: {image, category?, confidence?}"},
                 "labels_as": {"type": "string", "enum": ["final", "prelabel"]},
                 "accept_partial": {"type": "string", "enum": ["true", "false"]},
                 "format": {"type": "string", "enum": ["csv", "jsonl", "parquet"]}}}),
]
