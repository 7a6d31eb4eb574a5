"""Tabular import (a table of image keys with optional labels), as the seed's MLTable input.

The table names images in the project's datastore and may carry a category and a
confidence per row. Imported labels become final labels (`labels_as=final`) or
suggestions a labeler must confirm (`labels_as=prelabel`). A file with bad rows changes
nothing unless the caller sends `accept_partial=true`, in which case the good rows are
imported and the bad ones reported. table_import.py does the import.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from server.accounts.roles import Role
from server.data import import_jobs, uploads
from server.data.table_files import TabularError, detect_format
from server.data.table_import import ImportOptions
from server.errors import Conflict, Unprocessable
from server.projects import projects
from server.routing import Call, Endpoint
from server.validation import form_flag, unprocessable_from


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
        raw["accept_partial"] = form_flag(fields["accept_partial"])
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


async def import_table(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    settings = call.services.settings
    pa = await projects.access(call.services.db, call.me, pid, Role.OWNER)
    projects.refuse_archived(pa)
    binding = pa.row["dataset"]
    if binding is None:
        raise Conflict("bind a dataset first: imported rows name files in it", code="no_dataset")
    batch = await uploads.receive_one_file(call.request, settings, "table")
    try:
        opts = _options(batch.fields)
        try:
            detect_format(batch.files[0].key, opts.format)
        except TabularError as exc:
            raise Unprocessable(str(exc), code="bad_table") from None
        async with call.services.db.acquire() as conn, conn.transaction():
            job = await import_jobs.queue(conn, settings, pid, "table_import", batch,
                                          opts.model_dump(), call.me.id)
        return {"job": job}
    finally:
        batch.discard()


ENDPOINTS = [
    Endpoint("POST", "/api/v1/projects/{pid:int}/imports", import_table,
             "Import a CSV, JSON Lines or Parquet table: multipart 'file', 'mapping' "
             "({image, category?, confidence?}), 'labels_as' (final|prelabel), "
             "'accept_partial'; 202 with the job that imports it (owners)",
             status=202, tag="data", errors=(400, 401, 403, 404, 409, 413, 422),
             form={"type": "object", "required": ["file", "mapping"], "properties": {
                 "file": {"type": "string", "format": "binary"},
                 "mapping": {"type": "string", "description": "JSON: {image, category?, confidence?}"},
                 "labels_as": {"type": "string", "enum": ["final", "prelabel"]},
                 "accept_partial": {"type": "string", "enum": ["true", "false"]},
                 "format": {"type": "string", "enum": ["csv", "jsonl", "parquet"]}}}),
]
