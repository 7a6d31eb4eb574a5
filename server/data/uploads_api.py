"""Uploading files (and folders, via relative paths) into a project's own storage."""

from __future__ import annotations

import asyncio
from typing import Any

from server.accounts.roles import Role
from server.data import ingest, uploads
from server.data.datastores.factory import upload_root
from server.errors import Conflict, Unprocessable
from server.projects import project as projects
from server.routing import Call, Endpoint
from server.work.queue_state import forget_queue

_BIND_UPLOAD = """
UPDATE projects SET dataset = '{"datastore": {"kind": "upload"}, "pattern": "**/*.*"}'::jsonb,
                    updated_at = now()
WHERE id = $1
"""
TRUE = ("1", "true", "yes", "on")


async def upload(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    settings = call.services.settings
    # Check access before reading a possibly huge body.
    pa = await projects.access(call.services.db, call.me, pid, Role.OWNER)
    binding = pa.row["dataset"]
    if binding is not None and binding["datastore"]["kind"] != "upload":
        raise Conflict("this project reads its files from a "
                       f"{binding['datastore']['kind']} datastore; uploads need an upload one",
                       code="not_an_upload_project")
    batch = await uploads.receive(
        call.request, settings.uploads_dir / ".staging", file_field="files",
        max_file=settings.upload_max_file_bytes, max_request=settings.upload_max_request_bytes,
    )
    try:
        if not batch.files:
            raise Unprocessable("no files: send them in the multipart field 'files'",
                                code="no_files")
        overwrite = batch.fields.get("overwrite", call.request.query_params.get("overwrite", ""))
        overwrite_ok = overwrite.lower() in TRUE
        keys = [f.key for f in batch.files]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise Unprocessable("the same file name appears twice: " + ", ".join(dupes[:20]),
                                code="duplicate_files", details={"keys": dupes})
        root = upload_root(settings, pid)
        uploads.check_paths(keys, root.root)
        existing = [k for k in keys if (root.root / k).exists()]
        if existing and not overwrite_ok:
            raise Conflict(
                f"{len(existing)} file(s) already exist; send overwrite=true to replace them",
                code="files_exist", details={"keys": existing[:100]},
            )
        async with call.services.db.bulk() as conn, conn.transaction():
            await conn.execute(projects.LOCK, pid)
            pa = await projects.access(conn, call.me, pid, Role.OWNER)
            if pa.row["dataset"] is None:
                if pa.started:
                    raise Conflict("bind a dataset first", code="no_dataset")
                await conn.execute(_BIND_UPLOAD, pid)
            await ingest.lock_project(conn, pid, wait=True)
            result = await ingest.register_keys(conn, pid, settings.max_items_per_project, keys,
                                                kind="upload")
            await asyncio.to_thread(uploads.place_all, batch.files, root.root)
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
