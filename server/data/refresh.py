"""Scheduled refresh: projects whose data is re-listed every interval, each refreshed by
exactly one process (under its ingest advisory lock, re-checking that it is still due)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from server.data import binding as dataset_binding
from server.data import ingest
from server.data.datastores.base import DatastoreError
from server.work.queue_state import forget_queue

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger(__name__)

_DUE_WHERE = """
deleted_at IS NULL AND archived_at IS NULL AND dataset IS NOT NULL
  AND status IN ('running', 'paused')
  AND (refresh ->> 'enabled')::boolean
  AND (last_refresh_at IS NULL
       OR last_refresh_at + make_interval(secs => (refresh ->> 'interval_s')::int) <= now())
"""
_DUE = f"SELECT id FROM projects WHERE {_DUE_WHERE} ORDER BY last_refresh_at NULLS FIRST"
_DUE_ONE = f"SELECT id, dataset FROM projects WHERE id = $1 AND {_DUE_WHERE}"
_RECORD_FAILURE = "UPDATE projects SET ingest = $2, last_refresh_at = now() WHERE id = $1"


async def refresh_project(services: Services, project_id: int) -> ingest.IngestResult | None:
    """Refresh one project if it is still due and no other process holds it."""
    settings = services.settings
    async with services.db.bulk() as conn:
        try:
            async with conn.transaction():
                got = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)",
                                          ingest.INGEST_LOCK_NS, project_id)
                row = await conn.fetchrow(_DUE_ONE, project_id) if got else None
                if row is None:
                    return None
                result = await dataset_binding.ingest_files(
                    conn, settings, project_id, row["dataset"], kind="scheduled_refresh",
                    detect_missing=True)
            if result.changed_items:
                await forget_queue(services.redis, settings.redis_prefix, project_id)
            return result
        except DatastoreError as exc:
            failed = ingest.IngestResult(kind="scheduled_refresh", errors=[str(exc)],
                                         finished_at=datetime.now(UTC).isoformat())
            await conn.execute(_RECORD_FAILURE, project_id, failed.to_json())
            log.warning("refresh of project %s failed: %s", project_id, exc)
            return failed


async def refresh_due(services: Services) -> int:
    """Refresh every project whose interval has passed; return how many ran here."""
    ran = 0
    for row in await services.db.fetch(_DUE):
        if await refresh_project(services, row["id"]) is not None:
            ran += 1
    return ran
