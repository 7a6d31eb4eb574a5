"""Exports: request one (a background job), follow it, download the file (with Range), delete it."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import Field
from starlette.responses import FileResponse

from server.accounts.roles import Role
from server.exports import jobs
from server.exports.writer import MEDIA_TYPE, Format
from server.projects import projects
from server.routing import Call, Endpoint
from server.validation import Strict


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


async def create_export(call: Call) -> dict[str, Any]:
    body: ExportBody = call.body
    pid = call.path_int("pid")
    pa = await projects.access(call.services.db, call.me, pid, Role.REVIEWER)
    export = await jobs.queue(call.services.db, pa.row, body.format, body.filters.model_dump(),
                              body.image_url_prefix, call.me.id)
    return {"export": export}


async def list_exports(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    await projects.access(call.services.db, call.me, pid, Role.REVIEWER)
    limit, offset = call.page(default=50, most=500)
    return {"exports": await jobs.page(call.services.db, pid, limit, offset)}


async def _export(call: Call) -> asyncpg.Record:
    """The export named in the path, if the caller may see its project (404 otherwise)."""
    row = await jobs.get(call.services.db, call.path_int("eid"))
    await projects.access(call.services.db, call.me, row["project_id"], Role.REVIEWER)
    return row


async def get_export(call: Call) -> dict[str, Any]:
    return {"export": jobs.export_json(await _export(call))}


async def download(call: Call) -> FileResponse:
    row = await _export(call)
    path = jobs.finished_file(call.services.settings, row)
    name = await jobs.download_name(call.services.db, row)
    # Starlette answers Range requests (206, multipart ranges, 416) for file responses.
    return FileResponse(path, media_type=MEDIA_TYPE[row["format"]], filename=name)


async def delete_export(call: Call) -> None:
    await jobs.delete(call.services.db, call.services.settings, await _export(call))


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
