"""Background work each server process runs: probing image sizes and scheduled refreshes.

Every process runs both loops; Postgres decides who does what. The prober claims items
with `FOR UPDATE SKIP LOCKED`, and a project's refresh runs under its ingest advisory
lock and re-checks that it is still due, so exactly one process refreshes a project.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from . import ingest, media, work
from .datastores.base import Datastore, DatastoreError
from .datastores.factory import open_datastore
from .datastores.keys import extension
from .datastores.local import LocalDatastore
from .errors import ApiError
from .services import Services

log = logging.getLogger(__name__)

PROBE_BATCH = 64
_CLAIM = """
SELECT i.id, i.project_id, i.key, p.dataset FROM items i JOIN projects p ON p.id = i.project_id
WHERE i.width IS NULL AND i.probe_error IS NULL AND i.status <> 'missing' AND p.dataset IS NOT NULL
ORDER BY i.id LIMIT $1
FOR UPDATE OF i SKIP LOCKED
"""
_SET_SIZE = "UPDATE items SET width = $2, height = $3, frames = $4 WHERE id = $1"
_SET_ERROR = "UPDATE items SET probe_error = $2 WHERE id = $1"
_DUE_WHERE = """
deleted_at IS NULL AND dataset IS NOT NULL AND status IN ('running', 'paused')
  AND (refresh ->> 'enabled')::boolean
  AND (last_refresh_at IS NULL
       OR last_refresh_at + make_interval(secs => (refresh ->> 'interval_s')::int) <= now())
"""
_DUE = f"SELECT id FROM projects WHERE {_DUE_WHERE} ORDER BY last_refresh_at NULLS FIRST"
_DUE_ONE = f"SELECT id, dataset FROM projects WHERE id = $1 AND {_DUE_WHERE}"
_RECORD_FAILURE = "UPDATE projects SET ingest = $2, last_refresh_at = now() WHERE id = $1"


async def _probe_one(store: Datastore, key: str, max_bytes: int, max_pixels: int) -> media.Probe:
    ext = extension(key)
    if isinstance(store, LocalDatastore):
        # Headers only: Pillow and pydicom read just what they need from the open file.
        def from_file() -> media.Probe:
            with open(store.path_of(key), "rb") as fp:
                return media.probe(fp, ext, max_pixels)

        return await asyncio.to_thread(from_file)
    data = await store.read(key, max_bytes)
    return await asyncio.to_thread(media.probe, io.BytesIO(data), ext, max_pixels)


async def probe_batch(services: Services) -> int:
    """Fill in size and frames for up to PROBE_BATCH unprobed items; return how many."""
    settings = services.settings
    async with services.db.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_CLAIM, PROBE_BATCH)
        stores: dict[int, Datastore] = {}
        try:
            for row in rows:
                pid = row["project_id"]
                if pid not in stores:
                    stores[pid] = open_datastore(settings, pid, row["dataset"])
                try:
                    p = await _probe_one(stores[pid], row["key"], settings.media_max_bytes,
                                         settings.media_max_pixels)
                    await conn.execute(_SET_SIZE, row["id"], p.width, p.height, p.frames)
                except (ApiError, DatastoreError, OSError) as exc:
                    message = exc.message if isinstance(exc, ApiError) else str(exc)
                    await conn.execute(_SET_ERROR, row["id"], message[:500])
        finally:
            for store in stores.values():
                await store.close()
    return len(rows)


async def refresh_project(services: Services, project_id: int) -> ingest.IngestResult | None:
    """Refresh one project if it is still due and no other process holds it."""
    settings = services.settings
    async with services.db.acquire() as conn:
        try:
            async with conn.transaction():
                got = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)",
                                          ingest.INGEST_LOCK_NS, project_id)
                row = await conn.fetchrow(_DUE_ONE, project_id) if got else None
                if row is None:
                    return None
                store = open_datastore(settings, project_id, row["dataset"])
                try:
                    result = await ingest.ingest_binding(
                        conn, project_id, settings.max_items_per_project, store,
                        row["dataset"]["pattern"], kind="scheduled_refresh", detect_missing=True)
                finally:
                    await store.close()
            if result.changed_items:
                await work.forget_queue(services.redis, settings.redis_prefix, project_id)
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


class BackgroundJobs:
    """Owns the background loops of one process; `stop` cancels and awaits them."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        s = self.services.settings
        self._tasks = [
            asyncio.create_task(self._loop("probe", probe_batch, s.probe_poll_s)),
            asyncio.create_task(self._loop("refresh", refresh_due, s.refresh_poll_s)),
        ]

    async def _loop(self, name: str, step: Callable[[Services], Awaitable[int]],
                    idle_s: float) -> None:
        while True:
            try:
                done = await step(self.services)
            except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
                # Postgres restarting or a network blip: try again on the next tick.
                log.warning("background %s failed: %s", name, exc)
                done = 0
            except Exception:  # noqa: BLE001 - a bug must not kill the loop for good
                log.exception("background %s crashed", name)
                done = 0
            if not done or name == "refresh":
                await asyncio.sleep(idle_s)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []



