"""Leasing and submitting work: the Postgres side of the dispatcher and its decisions.

The Redis dispatcher hands out leases; this module records them, decides submits in
Postgres (the truth) and applies each committed transition back to Redis. A submit is
acknowledged only after its transaction commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis

from collab import consensus
from collab.dispatch_keys import DispatchKeys
from collab.dispatcher import Dispatcher, Lease, NeedsRebuild

from .database import Database, DatabaseUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

REBUILD_LOCK_S = 60
_INSERT_LEASES = """
WITH ins AS (
    INSERT INTO leases (id, project_id, item_id, user_id, state, expires_at, position)
    SELECT l, p, i, u, 'active', to_timestamp(e / 1000.0), n
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::int[])
         AS t(p, u, l, i, e, n)
    -- Only items still open: Redis may not know yet that one was decided (see _settle_expired).
    WHERE EXISTS (SELECT 1 FROM items WHERE id = t.i AND status IN ('unlabeled', 'in_progress'))
    ON CONFLICT (item_id, user_id) WHERE state IN ('active', 'submitted', 'skipped') DO NOTHING
    RETURNING id, item_id
), started AS (
    UPDATE items SET status = 'in_progress', updated_at = now()
    WHERE id IN (SELECT item_id FROM ins) AND status = 'unlabeled'
)
SELECT id, item_id FROM ins
"""
# Before a labeler gets an item again: an old lease of theirs on it that is past its expiry
# but still `active` (Redis forgot it, or the expiry was not recorded) is expired now, so it
# neither blocks the new lease nor keeps the item from them.
_EXPIRE_STALE = """
UPDATE leases SET state = 'expired', finished_at = now()
FROM unnest($1::bigint[], $2::bigint[]) AS t(i, u)
WHERE leases.item_id = t.i AND leases.user_id = t.u AND leases.state = 'active'
  AND leases.expires_at <= now()
"""
_EXPIRE = """
UPDATE leases SET state = 'expired', finished_at = now()
WHERE id = ANY($1::text[]) AND state = 'active'
RETURNING id
"""
# Leases Redis let expire that Postgres has as submitted or skipped: the node that recorded
# the submit died (or lost Redis) before it told Redis, so Redis still counted them active.
_FINISHED_UNTOLD = """
SELECT l.id, l.state, i.status, coalesce(i.target, $2) AS target
FROM leases l JOIN items i ON i.id = l.item_id
WHERE l.id = ANY($1::text[]) AND l.state IN ('submitted', 'skipped')
"""
_CLOSED_ITEMS = """
SELECT id FROM items WHERE id = ANY($1::bigint[]) AND status NOT IN ('unlabeled', 'in_progress')
"""
CLOSED = ("labeled", "needs_review")
# The caller's live leases in a project (items still open), oldest first: asking for work
# resumes these before anything new is leased.
_OWN_ACTIVE = """
SELECT l.id, l.item_id FROM leases l JOIN items i ON i.id = l.item_id
WHERE l.project_id = $1 AND l.user_id = $2 AND l.state = 'active' AND l.expires_at > now()
  AND i.status IN ('unlabeled', 'in_progress')
ORDER BY l.created_at, l.position
"""
_RELEASE = """
UPDATE leases SET state = 'released', finished_at = now()
WHERE id = ANY($1::text[]) AND user_id = $2 AND state = 'active' AND expires_at > now()
RETURNING id, project_id
"""
_RELEASE_LATER = """
UPDATE leases SET expires_at = least(expires_at, to_timestamp($3 / 1000.0))
WHERE id = ANY($1::text[]) AND user_id = $2 AND state = 'active' AND expires_at > now()
RETURNING id, project_id, expires_at
"""
# A newer lease of the same labeler on the item, open or finished: a late submit of an old
# one would make two annotations of one labeler (or undo their skip).
_NEWER_LEASE = """
SELECT 1 FROM leases WHERE item_id = $1 AND user_id = $2 AND id <> $3
  AND state IN ('active', 'submitted', 'skipped')
"""
_PROJECT_PLAN = "SELECT consensus FROM projects WHERE id = $1"
# A labeler holds at most the page on screen and one page leased ahead.
HELD_PAGES = 2
# A submit's first statement locks the lease and its item. It must come before the read of
# the item's annotations: under READ COMMITTED a statement that waits for a row lock reads
# its sub-queries from the snapshot it took before the wait, so a submit queued behind
# another on the same item would not see that one's annotation and never decide the item.
_LEASE_FOR_UPDATE = """
SELECT l.id, l.project_id, l.item_id, l.user_id, l.state, l.expires_at, l.prelabel_version
FROM leases l JOIN items i ON i.id = l.item_id WHERE l.id = $1
FOR UPDATE OF l, i
"""
# The item (already locked) with what the decision needs: earlier annotations and other
# live leases.
_ITEM_STATE = """
SELECT i.id, i.status, coalesce(i.target, $2) AS target,
       (SELECT coalesce(jsonb_agg(a.data ORDER BY a.id), '[]'::jsonb)
        FROM annotations a WHERE a.item_id = i.id) AS annotations,
       (SELECT count(*) FROM leases o WHERE o.item_id = i.id AND o.id <> $3
        AND o.state = 'active' AND o.expires_at > now()) AS others
FROM items i WHERE i.id = $1
FOR UPDATE OF i
"""
# Everything a submit writes, in one statement ($8 says whether the item changes).
_RECORD_SUBMIT = """
WITH ins AS (
    INSERT INTO annotations (project_id, item_id, user_id, lease_id, data, duration_ms)
    VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
), lease AS (
    UPDATE leases SET state = 'submitted', finished_at = now() WHERE id = $4
), used AS (
    UPDATE labels SET used_at = now() WHERE id = ANY($7::bigint[]) AND used_at IS NULL
), item AS (
    UPDATE items SET status = $9, final = $10, decided_by = $11, agreement = $12, target = $13,
                     decided_at = CASE WHEN $9 = 'labeled' THEN now() END, updated_at = now()
    WHERE id = $2 AND $8
)
SELECT id FROM ins
"""
_UNDECIDED = """
SELECT 1 FROM items WHERE project_id = $1 AND status IN ('unlabeled', 'in_progress', 'needs_review')
LIMIT 1
"""
_COMPLETE = """
UPDATE projects SET status = 'completed', updated_at = now() WHERE id = $1 AND status = 'running'
"""


class WorkError(Exception):
    """A lease operation that cannot be done; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Decision:
    annotation_id: int
    item_status: str
    decided: bool
    target: int
    agreement: float | None
    detail: str


def consensus_plan(project: asyncpg.Record) -> tuple[int, int, float]:
    """(min, max, threshold) labelers for a project; 1/1 without consensus."""
    c: dict[str, Any] = project["consensus"]
    if not c.get("enabled"):
        return 1, 1, 0.5
    return int(c["min"]), int(c["max"]), float(c.get("threshold", 0.5))


@asynccontextmanager
async def _queue_lock(client: aioredis.Redis, prefix: str, project_id: int) -> AsyncIterator[None]:
    """One rebuild (or forget) of a project's queue at a time, across every process."""
    lock = f"{prefix}dlock:{project_id}"
    for _ in range(REBUILD_LOCK_S * 10):
        if await client.set(lock, "1", nx=True, ex=REBUILD_LOCK_S):
            try:
                yield
            finally:
                await client.delete(lock)
            return
        await asyncio.sleep(0.1)
    raise WorkError("dispatcher_busy", "the work queue is being rebuilt; try again")


async def rebuild(dispatcher: Dispatcher, db: Database, project_id: int, default_target: int) -> None:
    """Rebuild one project's Redis state under a lock; others wait for it."""
    async with _queue_lock(dispatcher.client, dispatcher.prefix, project_id):
        if not await dispatcher.client.exists(dispatcher.keys(project_id).epoch):
            async with db.bulk() as conn:  # reads the whole project
                queued = await dispatcher.rebuild(conn, project_id, default_target)
            log.info("rebuilt dispatcher state of project %s (%d queued)", project_id, queued)


async def _with_state(dispatcher: Dispatcher, db: Database, project_id: int,
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
    raise WorkError("dispatcher_busy", "the work queue is being rebuilt; try again")


async def forget_queue(client: aioredis.Redis, prefix: str, project_id: int) -> None:
    """Items were added, went missing, came back or got final labels outside the
    dispatcher (ingest, refresh, uploads, imports): drop the queue's epoch, after the
    change has committed, so the next lease rebuilds it from Postgres. Under the rebuild
    lock, so a rebuild that read Postgres before the change cannot outlive it."""
    epoch = DispatchKeys(prefix, project_id).epoch
    try:
        async with _queue_lock(client, prefix, project_id):
            await client.delete(epoch)
    except WorkError:
        # The lock outlived its holder's time; the change has committed, so drop the
        # queue anyway rather than fail a caller whose data is already saved.
        await client.delete(epoch)


class LeaseLog:
    """Records the leases of concurrent callers with one INSERT, so one commit.

    Leasing is the hot path: while one batch is being written the next callers queue up
    and go together in the following statement (group commit).
    """

    def __init__(self, db: asyncpg.Pool) -> None:
        self.db = db
        self._queue: list[tuple[int, int, list[Lease], asyncio.Future[dict[str, int]]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, project_id: int, user_id: int, leases: list[Lease]) -> dict[str, int]:
        """Insert the leases; return lease id -> item id for those Postgres accepted."""
        future: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        self._queue.append((project_id, user_id, leases, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            rows = [(p, u, x, n) for p, u, leases, _ in batch for n, x in enumerate(leases)]
            try:
                async with self.db.acquire() as conn, conn.transaction():
                    await conn.execute(_EXPIRE_STALE, [x.item_id for _, _, x, _ in rows],
                                       [u for _, u, _, _ in rows])
                    written = await conn.fetch(
                        _INSERT_LEASES, [p for p, _, _, _ in rows], [u for _, u, _, _ in rows],
                        [x.lease_id for _, _, x, _ in rows], [x.item_id for _, _, x, _ in rows],
                        [x.expires_ms for _, _, x, _ in rows], [n for _, _, _, n in rows])
            except Exception as exc:  # noqa: BLE001 - every caller in the batch gets the error
                for _, _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            recorded = {r["id"]: r["item_id"] for r in written}
            for _, _, leases, future in batch:
                if not future.done():
                    future.set_result({x.lease_id: recorded[x.lease_id]
                                       for x in leases if x.lease_id in recorded})


@dataclass(frozen=True)
class Granted:
    """A lease handed to a labeler: new, or one of theirs resumed."""

    lease_id: str
    item_id: int
    expires_ms: int
    resumed: bool


@dataclass(frozen=True)
class Handed:
    """What one request for work got, and the leases Redis found expired on the way."""

    granted: list[Granted]
    expired: list[str]
    # Leases Redis gave that Postgres refused (it already had the labeler on the item).
    refused: int = 0


async def lease(dispatcher: Dispatcher, db: Database, project: asyncpg.Record, user_id: int,
                count: int, log: LeaseLog | None = None, holding: Sequence[str] = ()) -> Handed:
    """Hand a labeler up to `count` items: their own live leases first (except those they say
    they are `holding` already), oldest first and extended, then new ones, while they hold
    at most `HELD_PAGES` pages of `count`."""
    pid = project["id"]
    own = await db.fetch(_OWN_ACTIVE, pid, user_id)
    held = set(holding)
    granted: list[Granted] = []
    live = len(own)
    vanished = False
    for row in [r for r in own if r["id"] not in held][:count]:
        expires = await extend(dispatcher, db, pid, row["id"])
        if expires is None:
            vanished = True  # expired or released just now: its slot is back in the queue
        else:
            granted.append(Granted(row["id"], row["item_id"], expires, True))
    if vanished:
        # Others may have gone with it (a release from another tab of this labeler): count
        # again, so a stale count does not hold back new work.
        live = len(await db.fetch(_OWN_ACTIVE, pid, user_id))
    wanted = min(count - len(granted), HELD_PAGES * count - live)
    if wanted <= 0:
        return Handed(granted, [])
    batch = await _with_state(dispatcher, db, pid, lambda: dispatcher.lease(pid, user_id, wanted))
    if batch.expired:
        await _settle_expired(dispatcher, db, project, batch.expired)
    refused = 0
    if batch.leases:
        recorded = await (log or LeaseLog(db)).record(pid, user_id, batch.leases)
        unrecorded = [x for x in batch.leases if x.lease_id not in recorded]
        closed = {r["id"] for r in await db.fetch(_CLOSED_ITEMS, [x.item_id for x in unrecorded])
                  } if unrecorded else set()
        for x in batch.leases:
            if x.lease_id in recorded:
                granted.append(Granted(x.lease_id, recorded[x.lease_id], x.expires_ms, False))
            elif x.item_id in closed:
                # Decided in Postgres, still open in Redis: give the slot back, close it there.
                refused += 1
                await dispatcher.finish(pid, x.lease_id, "r", closed=True)
            else:
                # Postgres already has this labeler on this item (state lost in Redis): undo.
                refused += 1
                await dispatcher.finish(pid, x.lease_id, "k")
    return Handed(granted, batch.expired, refused)


async def _settle_expired(dispatcher: Dispatcher, db: Database, project: asyncpg.Record,
                          lease_ids: list[str]) -> None:
    """Record the leases Redis found expired. Those Postgres has as submitted or skipped were
    finished on a node that died (or lost Redis) before it told Redis: Redis learns the
    outcome now, so the item counts the submission and, if decided, closes."""
    expired = {r["id"] for r in await db.fetch(_EXPIRE, lease_ids)}
    untold = [lid for lid in lease_ids if lid not in expired]
    if not untold:
        return
    low, _, _ = consensus_plan(project)
    for row in await db.fetch(_FINISHED_UNTOLD, untold, low):
        await dispatcher.finish(project["id"], row["id"], "s" if row["state"] == "submitted" else "k",
                                target=row["target"], closed=row["status"] in CLOSED)


async def release(dispatcher: Dispatcher, db: Database, user_id: int,
                  lease_ids: Sequence[str], after_s: int = 0) -> dict[int, list[str]]:
    """Give back the caller's live leases among `lease_ids` without a submission: their
    items return to the queue and may come back to this labeler. With `after_s`, not at
    once but when that time has passed, unless the labeler asks for work first and resumes
    them (a closing tab cannot be told from a reload). Returns project -> ids."""
    by_project: dict[int, list[str]] = {}
    if after_s > 0:
        at_ms = int(time.time() * 1000) + after_s * 1000
        for row in await db.fetch(_RELEASE_LATER, list(lease_ids), user_id, at_ms):
            expires = int(row["expires_at"].timestamp() * 1000)
            pid, lid = row["project_id"], row["id"]
            await _with_state(dispatcher, db, pid, partial(dispatcher.shorten, pid, lid, expires))
            by_project.setdefault(pid, []).append(lid)
        return by_project
    for row in await db.fetch(_RELEASE, list(lease_ids), user_id):
        await dispatcher.finish(row["project_id"], row["id"], "r")
        by_project.setdefault(row["project_id"], []).append(row["id"])
    return by_project


def _labels_in(annotation: dict[str, Any]) -> list[int]:
    ids = set(annotation.get("classes", []))
    ids.update(s["label"] for s in annotation.get("shapes", []))
    return sorted(int(i) for i in ids)


async def submit(
    conn: asyncpg.Connection, project: asyncpg.Record, lease_row: asyncpg.Record,
    annotation: dict[str, Any], duration_ms: int | None,
) -> tuple[Decision, dict[str, Any] | None]:
    """Record a submit inside the caller's transaction and decide the item if it can be.

    The caller has run LEASE_FOR_UPDATE first (it locks the lease and the item). Then two
    statements: one reads the item with its annotations and live leases, one writes the
    annotation, the lease, the labels and the item together. Returns the decision and,
    when the item was decided by agreement, its final annotation.
    """
    low, high, threshold = consensus_plan(project)
    if lease_row["state"] == "skipped":
        raise WorkError("lease_skipped", "this item was skipped")
    item = await conn.fetchrow(_ITEM_STATE, lease_row["item_id"], low, lease_row["id"])
    if item["status"] in ("labeled", "needs_review"):
        raise WorkError("item_closed", "this item has already been decided")
    earlier: list[dict[str, Any]] = item["annotations"]
    target = int(item["target"])
    expired = lease_row["state"] in ("expired", "released") or (
        lease_row["state"] == "active" and lease_row["expires_at"] <= datetime.now(UTC))
    if expired and await conn.fetchval(_NEWER_LEASE, item["id"], lease_row["user_id"], lease_row["id"]):
        raise WorkError("lease_superseded",
                        "this item was leased to you again since; that lease is the one to submit")
    if expired and item["others"] + len(earlier) >= target:
        raise WorkError("slot_taken", "the lease expired and its slot went to someone else")
    all_annotations = [*earlier, annotation]
    decision, final, change = _decide(project, all_annotations, target, low, high, threshold)
    status, final_value, how, agreement, new_target = change or (None, None, None, None, target)
    ann_id = await conn.fetchval(
        _RECORD_SUBMIT, project["id"], item["id"], lease_row["user_id"], lease_row["id"],
        annotation, duration_ms, _labels_in(annotation), change is not None, status,
        final_value, how, agreement, new_target)
    return Decision(ann_id, *decision), final


Change = tuple[str, dict[str, Any] | None, str | None, float | None, int]


def _decide(project: asyncpg.Record, annotations: list[dict[str, Any]], target: int, low: int,
            high: int, threshold: float,
            ) -> tuple[tuple[str, bool, int, float | None, str], dict[str, Any] | None, Change | None]:
    """What the submitted annotations mean for the item: (decision fields, final, change)."""
    if len(annotations) < target:
        return ("in_progress", False, target, None, "waiting for more labelers"), None, None
    if low == 1 and high == 1:
        final = annotations[-1]
        return (("labeled", True, target, 1.0, "single labeler"), final,
                ("labeled", final, "single", 1.0, target))
    outcome = consensus.decide(project["task_type"], annotations,
                               consensus.ConsensusParams(threshold=threshold))
    if outcome.agreed:
        return (("labeled", True, target, outcome.agreement, outcome.detail), outcome.final,
                ("labeled", outcome.final, "consensus", outcome.agreement, target))
    if target < high:
        return (("in_progress", False, target + 1, outcome.agreement, outcome.detail), None,
                ("in_progress", None, None, outcome.agreement, target + 1))
    return (("needs_review", False, target, outcome.agreement, outcome.detail), None,
            ("needs_review", None, None, outcome.agreement, target))


_SET_EXPIRY = """
UPDATE leases SET expires_at = to_timestamp($2 / 1000.0)
WHERE id = $1 AND state = 'active' AND expires_at > now()
"""
_LIVE_LEASE = """
SELECT id FROM leases WHERE item_id = $1 AND user_id = $2 AND state = 'active' AND expires_at > now()
"""


async def extend(dispatcher: Dispatcher, db: Database, project_id: int, lease_id: str) -> int | None:
    """Push a live lease's expiry out by the TTL in Redis and Postgres; None if not live."""
    expires = await _with_state(dispatcher, db, project_id, lambda: dispatcher.extend(project_id, lease_id))
    if expires is None:
        return None
    status: str = await db.execute(_SET_EXPIRY, lease_id, expires)
    return None if status.endswith(" 0") else expires


async def keep_alive(dispatcher: Dispatcher, db: Database, project_id: int, item_id: int,
                     user_id: int, period_s: float) -> None:
    """While a labeler has their document open, keep their lease on the item alive."""
    while True:
        try:
            lease_id = await db.fetchval(_LIVE_LEASE, item_id, user_id)
            if lease_id is not None:
                await extend(dispatcher, db, project_id, lease_id)
        except DatabaseUnavailable as exc:  # the lease outlasts a few missed periods
            log.warning("lease of user %s on item %s not extended: %s", user_id, item_id, exc)
        await asyncio.sleep(period_s)


_OPEN_PROJECTS = """
SELECT id, consensus FROM projects WHERE deleted_at IS NULL AND status IN ('running', 'paused')
"""


async def rebuild_missing(dispatcher: Dispatcher, db: Database) -> int:
    """At start-up: rebuild every open project whose Redis state is gone; return how many."""
    done = 0
    for row in await db.fetch(_OPEN_PROJECTS):
        if not await dispatcher.client.exists(dispatcher.keys(row["id"]).epoch):
            low, _, _ = consensus_plan(row)
            await rebuild(dispatcher, db, row["id"], low)
            done += 1
    return done


async def complete_if_done(db: asyncpg.Pool | asyncpg.Connection, project_id: int) -> bool:
    """Mark a running project completed once no item is left undecided. Call it after the
    decision has committed: inside the deciding transaction, two submits deciding the last
    two items at once would each still see the other's item open."""
    if await db.fetchval(_UNDECIDED, project_id) is None:
        status: str = await db.execute(_COMPLETE, project_id)
        return status.endswith(" 1")
    return False


LEASE_FOR_UPDATE = _LEASE_FOR_UPDATE
