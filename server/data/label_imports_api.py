"""Importing a labeled dataset (COCO JSON or AutoML JSON Lines): the migration path from
other tools, and the way back in for Colabel's own exports.

The form says how: `format` when the file name does not, `labels_as=final` (the default) or
`prelabel`, `create_labels=true` to add missing labels to the tree, `accept_partial=true` to
import the valid records of a file that has bad ones. label_import.py does the import.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationError

from server.accounts.roles import Role
from server.data import dataset_formats as label_files
from server.data import imported_labels, label_import, uploads
from server.errors import Unprocessable
from server.projects import projects
from server.routing import Call, Endpoint
from server.validation import Strict, form_flag, unprocessable_from
from server.work.queue_state import forget_queue

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
            raw[flag] = form_flag(fields[flag])
    try:
        return LabelImportOptions.model_validate(raw)
    except ValidationError as exc:
        raise unprocessable_from(exc) from None


async def import_labels(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    settings = call.services.settings
    pa = await projects.access(call.services.db, call.me, pid, Role.OWNER)
    projects.refuse_archived(pa)
    task_type = pa.row["task_type"]
    batch = await uploads.receive_one_file(call.request, settings, "COCO or JSON Lines file")
    try:
        opts = _options(batch.fields)
        staged = batch.files[0]
        try:
            kind, parsed = await label_import.read_file(staged.path, staged.key, opts.format,
                                                        task_type)
        except label_files.FileError as exc:
            raise Unprocessable(str(exc), code="bad_file") from None
        async with call.services.db.bulk() as conn, conn.transaction():
            await conn.execute(projects.LOCK, pid)
            await projects.access(conn, call.me, pid, Role.OWNER)
            done = await label_import.apply(
                conn, pid, call.me.id, task_type, parsed, labels_as=opts.labels_as,
                create_labels=opts.create_labels, accept_partial=opts.accept_partial,
                max_pixels=settings.media_max_pixels)
        if done.applied.labeled:
            await forget_queue(call.services.redis, settings.redis_prefix, pid)
        return {
            "format": kind,
            "records": parsed.total,
            "matched": done.matched,
            "labeled": done.applied.labeled,
            "prelabeled": done.applied.prelabeled,
            "kept_human_labels": done.applied.kept_human_labels,
            "skipped_without_labels": done.skipped_without_labels,
            "created_labels": done.created_labels,
            "errors": label_import.reported(done.problems),
        }
    finally:
        batch.discard()


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
