"""Uploading files (and folders, via relative paths) into a project's own storage."""

from __future__ import annotations

from typing import Any

from server.accounts.roles import Role
from server.data import uploads
from server.data.datastores.factory import upload_root
from server.projects import projects
from server.routing import Call, Endpoint
from server.validation import form_flag
from server.work.queue_state import forget_queue


async def upload(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    settings = call.services.settings
    # Check access before reading a possibly huge body.
    pa = await projects.access(call.services.db, call.me, pid, Role.OWNER)
    uploads.check_uploadable(pa.row["dataset"])
    batch = await uploads.receive(
        call.request, settings.uploads_dir / ".staging", file_field="files",
        max_file=settings.upload_max_file_bytes, max_request=settings.upload_max_request_bytes,
    )
    try:
        keys = uploads.check_names(batch.files)
        overwrite = batch.fields.get("overwrite", call.request.query_params.get("overwrite", ""))
        root = upload_root(settings, pid)
        existing = uploads.check_placement(keys, root.root, overwrite=form_flag(overwrite))
        async with call.services.db.bulk() as conn, conn.transaction():
            await conn.execute(projects.LOCK, pid)
            pa = await projects.access(conn, call.me, pid, Role.OWNER)
            projects.refuse_archived(pa)
            result = await uploads.store(conn, pid, batch.files, root.root,
                                         bound=pa.row["dataset"] is not None, started=pa.started,
                                         max_items=settings.max_items_per_project)
        if result.changed_items:
            await forget_queue(call.services.redis, settings.redis_prefix, pid)
        return {
            "uploaded": len(keys),
            "overwritten": len(existing),
            "bytes": sum(f.size for f in batch.files),
            "ingest": result.to_json(),
        }
    finally:
        batch.discard()


ENDPOINTS = [
    Endpoint("POST", "/api/v1/projects/{pid:int}/uploads", upload,
             "Upload files (multipart field 'files'; the file name carries the relative path; "
             "overwrite=true replaces existing files) (owners)",
             status=201, tag="data", errors=(400, 401, 403, 404, 409, 413, 415, 422),
             form={"type": "object", "required": ["files"], "properties": {
                 "files": {"type": "array", "minItems": 1,
                           "items": {"type": "string", "format": "binary"}},
                 "overwrite": {"type": "string", "enum": ["true", "false"]}}}),
]
