"""The jobs that register a datastore's files: `bind` (a new binding's first listing) and
`refresh` (listing it again: new files in, vanished ones missing). Each runs in one
transaction under the project's ingest lock, so a failed listing changes nothing and a
refresh never interleaves with the scheduled one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from server.data import binding as dataset_binding
from server.data import ingest
from server.data.datastores.base import DatastoreError
from server.data.errors import DatastoreUnavailable
from server.errors import Conflict
from server.jobs import store as jobs
from server.jobs.runner import JobRun
from server.work.queue_state import forget_queue

_PROJECT = """
SELECT dataset FROM projects WHERE id = $1 AND deleted_at IS NULL
"""
_RECORD_FAILURE = "UPDATE projects SET ingest = $2 WHERE id = $1"


async def queue_bind(conn: asyncpg.Connection, pid: int, binding: dict[str, Any],
                     user_id: int) -> dict[str, Any]:
    """Queue the registration of a new binding's files (in the caller's transaction: it
    runs once that commits); the job's JSON."""
    return await jobs.queue(conn, pid, "bind", {"binding": dataset_binding.identity(binding)},
                            user_id)


async def queue_refresh(conn: asyncpg.Connection, pid: int, binding: dict[str, Any],
                        user_id: int) -> dict[str, Any]:
    """Queue a refresh, unless one of the project's refreshes has not started yet: that one
    will see the files as they are now, and is answered instead."""
    waiting = await jobs.waiting(conn, pid, ["refresh"])
    if waiting is not None:
        return waiting
    return await jobs.queue(conn, pid, "refresh", {"binding": dataset_binding.identity(binding)},
                            user_id)


async def run_bind(run: JobRun) -> dict[str, Any]:
    return await _register(run, detect_missing=False)


async def run_refresh(run: JobRun) -> dict[str, Any]:
    return await _register(run, detect_missing=True)


async def _register(run: JobRun, *, detect_missing: bool) -> dict[str, Any]:
    services, pid, kind = run.services, run.project_id, run.row["kind"]
    settings = services.settings
    try:
        async with services.db.bulk() as conn, conn.transaction():
            # Waits for a scheduled refresh (or another job) of the project to end.
            await ingest.lock_project(conn, pid, wait=True)
            project = await conn.fetchrow(_PROJECT, pid)
            if project is None or project["dataset"] is None:
                raise Conflict("the project or its dataset is gone", code="no_dataset")
            binding = project["dataset"]
            if dataset_binding.identity(binding) != run.params.get("binding"):
                # Bound to other data since this job was queued; that binding's job lists it.
                return {"superseded": True}
            # Progress counts the files taken so far: a listing's length is not known.
            result = await dataset_binding.ingest_files(conn, settings, pid, binding, kind=kind,
                                                        detect_missing=detect_missing,
                                                        progress=run.progress)
            await run.mark(conn)
        await run.progress(result.listed, result.listed, force=True)
    except DatastoreError as exc:
        failed = ingest.IngestResult(kind=kind, errors=[str(exc)],
                                     finished_at=datetime.now(UTC).isoformat())
        await services.db.execute(_RECORD_FAILURE, pid, failed.to_json())
        raise DatastoreUnavailable(f"cannot read the datastore: {exc}") from None
    if result.changed_items:
        await forget_queue(services.redis, settings.redis_prefix, pid)
    return result.to_json()
