"""Importing a labeled dataset (COCO JSON or AutoML JSON Lines): the migration path from
other tools, and the way back in for Colabel's own exports.

The form says how: `format` when the file name does not, `labels_as=final` (the default) or
`prelabel`, `create_labels=true` to add missing labels to the tree, `accept_partial=true` to
import the valid records of a file that has bad ones. label_import.py does the import.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from server.accounts.roles import Role
from server.data import import_jobs, label_import, uploads
from server.data.label_import import LabelImportOptions
from server.errors import Unprocessable
from server.projects import projects
from server.routing import Call, Endpoint
from server.validation import form_flag, unprocessable_from

_FIELDS = {"format", "labels_as", "create_labels", "accept_partial"}


def _options(fields: dict[str, str]) -> LabelImportOptions:
    if unknown := sorted(set(fields) - _FIELDS):
        raise Unprocessable(f"unknown form field(s): {', '.join(unknown)}",
                            details=[{"loc": [u]} for u in unknown])
    raw: dict[str, Any] = {k: v for k, v in fields.items() if k in ("format", "labels_as") and v}
    for flag in ("create_labels", "accept_partial"):
        if flag in fields:
            raw[flag] = form_flag(fields[flag])
    try:
        return LabelImportOptions.model_validate(raw)
    except ValidationError as exc:
        raise unprocessable_from(exc) from None


async def import_labels(call: Call) -> dict[str, Any]:
    """Check the form and the file's type, keep the file for the job that imports it, and
    answer 202 with that job (its result is what this request answered when it waited)."""
    pid = call.path_int("pid")
    settings = call.services.settings
    pa = await projects.access(call.services.db, call.me, pid, Role.OWNER)
    projects.refuse_archived(pa)
    batch = await uploads.receive_one_file(call.request, settings, "COCO or JSON Lines file")
    try:
        opts = _options(batch.fields)
        label_import.check_kind(batch.files[0].key, opts.format, pa.row["task_type"])
        async with call.services.db.acquire() as conn, conn.transaction():
            job = await import_jobs.queue(conn, settings, pid, "label_import", batch,
                                          opts.model_dump(), call.me.id)
        return {"job": job}
    finally:
        batch.discard()


ENDPOINTS = [
    Endpoint("POST", "/api/v1/projects/{pid:int}/label-imports", import_labels,
             "Import a labeled dataset: multipart 'file' (COCO .json or AutoML .jsonl), 'format', "
             "'labels_as' (final|prelabel), 'create_labels', 'accept_partial'; 202 with the "
             "job that imports it (owners)",
             status=202, tag="data", errors=(400, 401, 403, 404, 409, 413, 422),
             form={"type": "object", "required": ["file"], "properties": {
                 "file": {"type": "string", "format": "binary"},
                 "format": {"type": "string", "enum": ["coco", "jsonl"]},
                 "labels_as": {"type": "string", "enum": ["final", "prelabel"]},
                 "create_labels": {"type": "string", "enum": ["true", "false"]},
                 "accept_partial": {"type": "string", "enum": ["true", "false"]}}}),
]
