"""Keeping the Redis queue in step with Postgres, which has the truth: a project's queue is
rebuilt from Postgres when its epoch key is gone (a flush, a new Redis, a restart) and
forgotten when items change outside the dispatcher (ingest, refresh, uploads, imports)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import redis.asyncio as aioredis

from server.database import Database
from server.work.errors import QueueBusy
from server.work.keys import DispatchKeys
from server.work.plan import consensus_plan
from server.work.queue import Dispatcher, NeedsRebuild

log = logging.getLogger(__name__)
T = TypeVar("T")

REBUILD_LOCK_S = 60
_PROJECT_PLAN = "SELECT consensus FROM projects WHERE id = $1"
_OPEN_PROJECTS = """
SELECT id, consensus FROM projects WHERE deleted_at IS NULL AND status IN ('running', 'paused')
"""


@asynccontextmanager
async def _queue_lock(client: aioredis.Redis, keys: DispatchKeys) -> AsyncIterator[None]:
    """One rebuild (or forget) of a project's queue at a time, across every process."""
    for _ in range(REBUILD_LOCK_S * 10):
        if await client.set(keys.lock, "1", nx=True, ex=REBUILD_LOCK_S):
            try:
                yield
            finally:
                await client.delete(keys.lock)
            return
        await asyncio.sleep(0.1)
    raise QueueBusy()


async def rebuild(dispatcher: Dispatcher, db: Database, project_id: int, default_target: int) -> None:
    """Rebuild one project's Redis state under a lock; others wait for it."""
    keys = dispatcher.keys(project_id)
    async with _queue_lock(dispatcher.client, keys):
        if not await dispatcher.client.exists(keys.epoch):
            async with db.bulk() as conn:  # reads the whole project
                queued = await dispatcher.rebuild(conn, project_id, default_target)
            log.info("rebuilt dispatcher state of project %s (%d queued)", project_id, queued)


async def with_queue(dispatcher: Dispatcher, db: Database, project_id: int,
                     step: Callable[[], Awaitable[T]]) -> T:
    """Run a dispatcher step, rebuilding the project's Redis state from Postgres first
    when it is missing (a flush, a new Redis, or items changed outside the dispatcher)."""
    for _ in range(3):
        try:
            return await step()
        except NeedsRebuild:
            project = await db.fetchrow(_PROJECT_PLAN, project_id)
            low, _, _ = consensus_plan(project)
            await rebuild(dispatcher, db, project_id, low)
    raise QueueBusy()


async def forget_queue(client: aioredis.Redis, prefix: str, project_id: int) -> None:
    """Items were added, went missing, came back or got final labels outside the
    dispatcher (ingest, refresh, uploads, imports): drop the queue's epoch, after the
    change has committed, so the next lease rebuilds it from Postgres. Under the rebuild
    lock, so a rebuild that read Postgres before the change cannot outlive it."""
    keys = DispatchKeys(prefix, project_id)
    try:
        async with _queue_lock(client, keys):
            await client.delete(keys.epoch)
    except QueueBusy:
        # The lock outlived its holder's time; the change has committed, so drop the
        # queue anyway rather than fail a caller whose data is already saved.
        await client.delete(keys.epoch)


async def rebuild_missing(dispatcher: Dispatcher, db: Database) -> int:
    """At start-up: rebuild every open project whose Redis state is gone; return how many."""
    done = 0
    for row in await db.fetch(_OPEN_PROJECTS):
        if not await dispatcher.client.exists(dispatcher.keys(row["id"]).epoch):
            low, _, _ = consensus_plan(row)
            await rebuild(dispatcher, db, row["id"], low)
            done += 1
    return done
