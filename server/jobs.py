"""Background work each server process runs: probing image sizes, scheduled refreshes and exports.

Every process runs both loops; Postgres decides who does what. The prober claims items
with `FOR UPDATE SKIP LOCKED`, and a project's refresh runs under its ingest advisory
lock and re-checks that it is still due, so exactly one process refreshes a project;
an export is claimed by one process with `SKIP LOCKED` and taken over if it stops beating.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from . import ingest, work
from .datastores.base import DatastoreError
from .datastores.factory import open_datastore
from .exports import runner as exports
from .probing import probe_batch
from .services import Services

log = logging.getLogger(__name__)

_DUE_WHERE = """
deleted_at IS NULL AND dataset IS NOT NULL AND status IN ('running', 'paused')
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

    def __init__(self, services: Services,
                 extra: list[tuple[str, Callable[[], Awaitable[int]], float]] | None = None) -> None:
        self.services = services
        self.extra = extra or []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        s = self.services.settings
        self._tasks = [
            asyncio.create_task(self._loop("probe", probe_batch, s.probe_poll_s)),
            asyncio.create_task(self._loop("refresh", refresh_due, s.refresh_poll_s)),
            asyncio.create_task(self._loop("export", exports.run_next, s.export_poll_s)),
            *(asyncio.create_task(self._loop(name, _ignoring_services(step), idle))
              for name, step, idle in self.extra),
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


def _ignoring_services(step: Callable[[], Awaitable[int]]) -> Callable[[Services], Awaitable[int]]:
    """Adapt a step that carries its own state to the loop's (services) signature."""
    async def run(_: Services) -> int:
        return await step()

    return run
