"""Leases in Postgres: handing a labeler items (their own live leases first, then new ones
from the queue), giving them back, keeping them alive, skipping.

The Redis queue (queue.py) picks the items; this module records the leases in Postgres
(the truth) and tells the queue what Postgres refused or found finished.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import asyncpg
from redis.exceptions import RedisError

from server.accounts.roles import Role
from server.accounts.users import User
from server.database import Database
from server.errors import ApiError
from server.projects import projects
from server.work.errors import WorkError
from server.work.group_commit import GroupCommit, retrying
from server.work.plan import CLOSED, consensus_plan
from server.work.queue import Dispatcher, Lease, Transition
from server.work.queue_state import with_queue

# One statement, so one round trip and its own transaction: the function (migration 0009)
# locks the items the batch starts in item order, expires the labelers' stale leases on them
# and inserts the leases of items still open, returning those it inserted.
_RECORD_LEASES = """
SELECT lease_id, lease_item FROM record_leases($1::bigint[], $2::bigint[], $3::text[],
                                               $4::bigint[], $5::bigint[], $6::int[])
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
# The caller's live leases in a project (items still open), oldest first: asking for work
# resumes these before anything new is leased.
_OWN_ACTIVE = """
SELECT l.id, l.item_id, l.created_at, l.position FROM leases l JOIN items i ON i.id = l.item_id
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
# Asking for work, in one statement: the project with the caller's role (the row of
# projects.SELECT_ONE) and the caller's live leases in it (_OWN_ACTIVE: both read $1 as the
# project and $2 as the caller), as [lease id, item id] pairs in _OWN_ACTIVE's order.
_PROJECT_AND_OWN = f"""
WITH project AS ({projects.SELECT_ONE}), own AS ({_OWN_ACTIVE})
SELECT project.*,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(id, item_id) ORDER BY created_at, position),
                        '[]') FROM own) AS own
FROM project
"""
# A labeler holds at most the page on screen and one page leased ahead.
HELD_PAGES = 2
_SKIP = "UPDATE leases SET state = 'skipped', finished_at = now() WHERE id = $1 AND state = 'active'"
# The caller's leases among some ids (any state), each with its project as
# projects.SELECT_ONE reads it (null columns when the project is deleted): one statement for
# the leases and the access checks of a submit. `lease` is the lease's whole row.
_LEASES_WITH_PROJECTS = f"""
SELECT l AS lease, {projects.ACCESS_COLUMNS}
FROM leases l
LEFT JOIN projects p ON p.id = l.project_id AND p.deleted_at IS NULL
LEFT JOIN memberships m ON m.project_id = p.id AND m.user_id = $2
WHERE l.id = ANY($1::text[]) AND l.user_id = $2
"""


class LeaseLog:
    """Records the leases of concurrent callers with one INSERT, so one commit.

    Leasing is the hot path: while one batch is being written the next callers queue up
    and go together in the following statement (group commit, see group_commit.py).
    Batches lock the items they start in item order first, so two in flight at once (here
    or on another node) wait for each other rather than deadlock.
    """

    def __init__(self, db: asyncpg.Pool, writers: int = 2) -> None:
        self.db = db
        self._group: GroupCommit[tuple[int, int, list[Lease]], dict[str, int]] = GroupCommit(
            self._commit, writers)

    async def record(self, project_id: int, user_id: int, leases: list[Lease]) -> dict[str, int]:
        """Insert the leases; return lease id -> item id for those Postgres accepted."""
        return await self._group.run((project_id, user_id, leases))

    async def _commit(self, batch: list[tuple[int, int, list[Lease]]],
                      ) -> list[dict[str, int] | BaseException]:
        rows = [(p, u, x, n) for p, u, leases in batch for n, x in enumerate(leases)]
        items = [x.item_id for _, _, x, _ in rows]

        async def attempt() -> list[asyncpg.Record]:
            written: list[asyncpg.Record] = await self.db.fetch(
                _RECORD_LEASES, [p for p, _, _, _ in rows], [u for _, u, _, _ in rows],
                [x.lease_id for _, _, x, _ in rows], items,
                [x.expires_ms for _, _, x, _ in rows], [n for _, _, _, n in rows])
            return written

        written = await retrying(attempt, (asyncpg.DeadlockDetectedError,))
        recorded = {r["lease_id"]: r["lease_item"] for r in written}
        return [{x.lease_id: recorded[x.lease_id] for x in leases if x.lease_id in recorded}
                for _, _, leases in batch]


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


# A labeler's live lease in a project: (lease id, item id).
Own = tuple[str, int]


async def asking_for_work(db: Database, user: User, project_id: int,
                          ) -> tuple[projects.ProjectAccess, list[Own]]:
    """The project a labeler asks work of (404/403 as `projects.access` with the labeler
    role) and their live leases in it, oldest first: one round trip for both."""
    row = await db.fetchrow(_PROJECT_AND_OWN, project_id, user.id)
    pa = projects.granted(row, user, project_id, Role.LABELER)
    return pa, [(lease_id, item_id) for lease_id, item_id in row["own"]]


async def lease(dispatcher: Dispatcher, db: Database, project: asyncpg.Record, user_id: int,
                count: int, log: LeaseLog | None = None, holding: Sequence[str] = (),
                own: list[Own] | None = None) -> Handed:
    """Hand a labeler up to `count` items: their own live leases first (except those they say
    they are `holding` already), oldest first and extended, then new ones, while they hold
    at most `HELD_PAGES` pages of `count`. `own`: their live leases in the project, when the
    caller has read them already (`asking_for_work`)."""
    pid = project["id"]
    if own is None:
        own = [(r["id"], r["item_id"]) for r in await db.fetch(_OWN_ACTIVE, pid, user_id)]
    held = set(holding)
    granted: list[Granted] = []
    live = len(own)
    vanished = False
    for lease_id, item_id in [x for x in own if x[0] not in held][:count]:
        expires = await extend(dispatcher, db, pid, lease_id)
        if expires is None:
            vanished = True  # expired or released just now: its slot is back in the queue
        else:
            granted.append(Granted(lease_id, item_id, expires, True))
    if vanished:
        # Others may have gone with it (a release from another tab of this labeler): count
        # again, so a stale count does not hold back new work.
        live = len(await db.fetch(_OWN_ACTIVE, pid, user_id))
    wanted = min(count - len(granted), HELD_PAGES * count - live)
    if wanted <= 0:
        return Handed(granted, [])
    batch = await with_queue(dispatcher, db, pid, lambda: dispatcher.lease(pid, user_id, wanted))
    if batch.expired:
        await _settle_expired(dispatcher, db, project, batch.expired)
    refused = 0
    if batch.leases:
        try:
            recorded = await (log or LeaseLog(db)).record(pid, user_id, batch.leases)
        except BaseException:
            # Not recorded (or not known to be): give Redis its slots back rather than let
            # them wait for the TTL. A lease Postgres did record after all is no one's now,
            # and expires there, and its late submit is refused (the slot went back).
            with contextlib.suppress(RedisError, OSError):
                await dispatcher.finish_many(pid, [Transition(x.lease_id, "r") for x in batch.leases])
            raise
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
            await with_queue(dispatcher, db, pid, partial(dispatcher.shorten, pid, lid, expires))
            by_project.setdefault(pid, []).append(lid)
        return by_project
    for row in await db.fetch(_RELEASE, list(lease_ids), user_id):
        await dispatcher.finish(row["project_id"], row["id"], "r")
        by_project.setdefault(row["project_id"], []).append(row["id"])
    return by_project


_SET_EXPIRY = """
UPDATE leases SET expires_at = to_timestamp($2 / 1000.0)
WHERE id = $1 AND state = 'active' AND expires_at > now()
"""
_LIVE_LEASE = """
SELECT id FROM leases WHERE item_id = $1 AND user_id = $2 AND state = 'active' AND expires_at > now()
"""


async def extend(dispatcher: Dispatcher, db: Database, project_id: int, lease_id: str) -> int | None:
    """Push a live lease's expiry out by the TTL in Redis and Postgres; None if not live."""
    expires = await with_queue(dispatcher, db, project_id, lambda: dispatcher.extend(project_id, lease_id))
    if expires is None:
        return None
    status: str = await db.execute(_SET_EXPIRY, lease_id, expires)
    return None if status.endswith(" 0") else expires


async def keep_alive_once(dispatcher: Dispatcher, db: Database, project_id: int, item_id: int,
                          user_id: int) -> None:
    """Extend the user's live lease on the item, if they hold one (see live/lease_keeper.py)."""
    lease_id = await db.fetchval(_LIVE_LEASE, item_id, user_id)
    if lease_id is not None:
        await extend(dispatcher, db, project_id, lease_id)


# A lease of the caller's with their access to its project (labeler role), or why not.
Mine = tuple[asyncpg.Record, projects.ProjectAccess | ApiError]


async def leases_of(db: Database, user: User, lease_ids: Sequence[str]) -> dict[str, Mine]:
    """Those of `lease_ids` that are the caller's (any state), by id, each with the caller's
    access to its project as `projects.access` decides it for the labeler role (the error
    it would raise, if any)."""
    out: dict[str, Mine] = {}
    for row in await db.fetch(_LEASES_WITH_PROJECTS, list(lease_ids), user.id):
        lease = row["lease"]
        try:
            access: projects.ProjectAccess | ApiError = projects.granted(
                row if row["id"] is not None else None, user, lease["project_id"], Role.LABELER)
        except ApiError as exc:
            access = exc
        out[lease["id"]] = (lease, access)
    return out


async def skip(dispatcher: Dispatcher, db: Database, lease: asyncpg.Record) -> None:
    """Give an item back for good: it is not offered to this labeler again."""
    status: str = await db.execute(_SKIP, lease["id"])
    if status.endswith(" 0"):
        raise WorkError("lease_inactive", "only an active lease can be skipped")
    await dispatcher.finish(lease["project_id"], lease["id"], "k")
