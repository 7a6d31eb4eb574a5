"""Exports: request one (a background job), follow it, download the file (with Range), delete it."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field
from starlette.responses import FileResponse

from server.accounts.roles import Role
from server.errors import Conflict, NotFound
from server.exports import runner
from server.exports.writer import FORMATS, MEDIA_TYPE, SUFFIX
from server.projects import project as projects
from server.routing import Call, Endpoint
from server.validation import Strict

_COLUMNS = """id, project_id, format, filters, image_url_prefix, status, done, total, file_name,
size_bytes, warnings, error, created_by, created_at, started_at, finished_at"""
_INSERT = f"""
INSERT INTO exports (project_id, format, filters, image_url_prefix, created_by)
VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}
"""
_ONE = f"SELECT {_COLUMNS} FROM exports WHERE id = $1"
_LIST = f"SELECT {_COLUMNS} FROM exports WHERE project_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
_DELETE = "DELETE FROM exports WHERE id = $1"

Format = Literal["coco", "jsonl", "csv", "masks", "voc", "yolo"]


class FiltersBody(Strict):
    needs_review: bool = Field(False, description="also export items waiting for review")
    raw_annotations: bool = Field(False, description="every labeler's own annotation beside the final one")


class ExportBody(Strict):
    format: Format
    filters: FiltersBody = Field(default_factory=FiltersBody)
    image_url_prefix: str | None = Field(
        None, max_length=2000,
        description="prepended to item keys in image URLs (JSON Lines); default: the Azure "
                    "container's URL for Azure datasets, nothing (the bare key) otherwise")


def export_json(row: Any) -> dict[str, Any]:
    done = row["status"] == "done"
    return {
        "id": row["id"],
        "project_id": row["project_id"],
        "format": row["format"],
        "filters": row["filters"],
        "image_url_prefix": row["image_url_prefix"],
        "status": row["status"],
        "done": row["done"],
        "total": row["total"],
        "size_bytes": row["size_bytes"],
        "warnings": row["warnings"],
        "error": row["error"],
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "started_at": row["started_at"].isoformat() if row["started_at"] else None,
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "download_url": f"/api/v1/exports/{row['id']}/download" if done else None,
    }


def default_prefix(binding: dict[str, Any] | None) -> str:
    """Image URLs point into the Azure container for Azure datasets; bare keys otherwise."""
    store = (binding or {}).get("datastore", {})
    if store.get("kind") != "azure_blob":
        return ""
    prefix = f"{store['prefix'].strip('/')}/" if store.get("prefix") else ""
    return f"{store['account_url'].rstrip('/')}/{store['container']}/{prefix}"


async def create_export(call: Call) -> dict[str, Any]:
    body: ExportBody = call.body
    pid = call.path_int("pid")
    pa = await projects.access(call.services.db, call.me, pid, Role.REVIEWER)
    task_type = pa.row["task_type"]
    if task_type not in FORMATS[body.format]:
        fits = sorted(f for f, types in FORMATS.items() if task_type in types)
        # The request is well formed; the project's task type is what rules it out.
        raise Conflict(
            f"{body.format} cannot carry {task_type} labels; use one of: {', '.join(fits)}",
            code="format_unsupported", details={"task_type": task_type, "formats": fits})
    prefix = body.image_url_prefix if body.image_url_prefix is not None else default_prefix(pa.row["dataset"])
    row = await call.services.db.fetchrow(_INSERT, pid, body.format, body.filters.model_dump(), prefix,
                                          call.me.id)
    return {"export": export_json(row)}


async def list_exports(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    await projects.access(call.services.db, call.me, pid, Role.REVIEWER)
    limit, offset = call.page(default=50, most=500)
    rows = await call.services.db.fetch(_LIST, pid, limit, offset)
    return {"exports": [export_json(r) for r in rows]}


async def _export(call: Call) -> Any:
    """The export named in the path, if the caller may see its project (404 otherwise)."""
    eid = call.path_int("eid")
    row = await call.services.db.fetchrow(_ONE, eid)
    if row is None:
        raise NotFound("no such export", code="export_not_found")
    await projects.access(call.services.db, call.me, row["project_id"], Role.REVIEWER)
    return row


async def get_export(call: Call) -> dict[str, Any]:
    return {"export": export_json(await _export(call))}


async def download(call: Call) -> FileResponse:
    row = await _export(call)
    if row["status"] != "done":
        raise Conflict(f"the export is {row['status']}; download it once it is done",
                       code="export_not_ready", details={"status": row["status"]})
    path = runner.file_path(call.services.settings, row["project_id"], row["file_name"])
    if not path.is_file():
        raise NotFound("the export's file is gone; request a new export", code="export_file_missing")
    name = await call.services.db.fetchval("SELECT name FROM projects WHERE id = $1", row["project_id"])
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "project"
    # Starlette answers Range requests (206, multipart ranges, 416) for file responses.
    return FileResponse(path, media_type=MEDIA_TYPE[row["format"]],
                        filename=f"{slug}-export-{row['id']}{SUFFIX[row['format']]}")


async def delete_export(call: Call) -> None:
    row = await _export(call)
    await call.services.db.execute(_DELETE, row["id"])
    if row["file_name"]:
        runner.file_path(call.services.settings, row["project_id"], row["file_name"]).unlink(missing_ok=True)


ENDPOINTS = [
    Endpoint("POST", "/api/v1/projects/{pid:int}/exports", create_export,
             "Export the project's labels (COCO, JSON Lines, CSV, masks, VOC, YOLO) in the background",
             body=ExportBody, status=202, tag="exports", errors=(401, 404, 403, 409, 422)),
    Endpoint("GET", "/api/v1/projects/{pid:int}/exports", list_exports, "The project's exports, newest first",
             tag="exports", errors=(401, 403, 404)),
    Endpoint("GET", "/api/v1/exports/{eid:int}", get_export, "One export: status, progress, warnings",
             tag="exports", errors=(401, 403, 404)),
    Endpoint("GET", "/api/v1/exports/{eid:int}/download", download,
             "The export's file (Range requests supported)", tag="exports", errors=(401, 403, 404, 409)),
    Endpoint("DELETE", "/api/v1/exports/{eid:int}", delete_export, "Delete an export and its file",
             status=204, tag="exports", errors=(401, 403, 404)),
]
