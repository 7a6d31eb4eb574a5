"""What an owner does to a selection of items from the data manager: re-open, send to review,
skip, delete. Each is one Postgres transaction (the truth) over the selection's rows, locked
in id order like every other writer of items; the Redis queue learns the outcome after the
commit, item by item for a small selection, or by being rebuilt from Postgres for a large
one. Items a step does not apply to (by their status) are left as they are and counted.

What each step means (docs/decisions.md, "Data manager"):
  reopen  decided, in-review or skipped items go back to labeling, needing one labeler more
          than they have (as the single re-open always did);
  review  an item waits for a person's decision; its final label (if any) is cleared and
          the leases of labelers still at work on it are released;
  skip    an item leaves labeling without a label: out of the queue, not exported, not
          holding the project open; its live leases are released; re-open brings it back;
  delete  the item and everything recorded on it (annotations, leases, predictions, its
          live documents) leave the project; a refresh that lists its file again
          registers it anew.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from server.data import item_query
from server.database import Database
from server.work import decisions
from server.work.queue import Dispatcher, Transition
from server.work.queue_state import forget_queue

log = logging.getLogger(__name__)

# The statuses each step applies to.
APPLIES = {
    "reopen": ("labeled", "needs_review", "skipped"),
    "review": ("unlabeled", "in_progress", "labeled", "skipped"),
    "skip": ("unlabeled", "in_progress", "needs_review"),
    "delete": ("unlabeled", "in_progress", "labeled", "needs_review", "missing", "skipped"),
}
# Above this many items the queue is rebuilt from Postgres rather than told item by item.
REDIS_ONE_BY_ONE = 1000

_ELIGIBLE = """
SELECT id, key FROM items WHERE id = ANY($1::bigint[]) AND status = ANY($2::text[]) ORDER BY id
"""
_REOPEN = """
WITH done AS (
    SELECT i.id, (SELECT count(*) FROM annotations a WHERE a.item_id = i.id) AS n
    FROM items i WHERE i.id = ANY($1::bigint[])
)
UPDATE items SET status = CASE WHEN done.n > 0 THEN 'in_progress' ELSE 'unlabeled' END,
                 final = NULL, decided_by = NULL, decided_by_user = NULL, decided_at = NULL,
                 agreement = NULL, target = greatest($2::int, done.n + 1), updated_at = now()
FROM done WHERE items.id = done.id
RETURNING items.id, items.target, coalesce(items.cluster_rank, items.shuffle_key) AS priority
"""
_TO_REVIEW = """
UPDATE items SET status = 'needs_review', final = NULL, decided_by = NULL, decided_by_user = NULL,
                 decided_at = NULL, updated_at = now()
WHERE id = ANY($1::bigint[])
"""
_SKIP = """
UPDATE items SET status = 'skipped', final = NULL, decided_by = NULL, decided_by_user = NULL,
                 decided_at = NULL, updated_at = now()
WHERE id = ANY($1::bigint[])
"""
_RELEASE_LIVE = """
UPDATE leases SET state = 'released', finished_at = now()
WHERE item_id = ANY($1::bigint[]) AND state = 'active'
RETURNING id
"""
_DELETE = """
WITH l AS (DELETE FROM leases WHERE item_id = ANY($1::bigint[]) RETURNING id, state),
     a AS (DELETE FROM annotations WHERE item_id = ANY($1::bigint[])),
     p AS (DELETE FROM ml_predictions WHERE item_id = ANY($1::bigint[])),
     i AS (DELETE FROM items WHERE id = ANY($1::bigint[]))
SELECT id FROM l WHERE state = 'active'
"""
# An item's live documents are the rooms "{project}/{item}/..."; with keys compared bytewise
# they are the range ["p/i/", "p/i0") ('0' follows '/'), one index range per item.
_DELETE_DOCUMENTS = """
WITH r AS (SELECT $1::bigint || '/' || i || '/' AS lo, $1::bigint || '/' || i || '0' AS hi
           FROM unnest($2::bigint[]) AS i),
     u AS (DELETE FROM doc_updates d USING r WHERE d.room >= r.lo AND d.room < r.hi)
DELETE FROM doc_snapshots d USING r WHERE d.room >= r.lo AND d.room < r.hi
"""
_RUN_AGAIN = """
UPDATE projects SET status = 'running', updated_at = now() WHERE id = $1 AND status = 'completed'
"""


@dataclass
class Outcome:
    """What a step did: the items it changed (id -> file name) and how many it left alone."""

    action: str
    changed: dict[int, str] = field(default_factory=dict)
    unchanged: int = 0
    project_completed: bool = False

    def json(self) -> dict[str, Any]:
        return {"action": self.action, "changed": len(self.changed), "unchanged": self.unchanged,
                "project_completed": self.project_completed}


@dataclass
class _Queue:
    """What the Redis queue must learn once Postgres has committed."""

    released: list[str] = field(default_factory=list)
    reopened: list[asyncpg.Record] = field(default_factory=list)


async def select(conn: asyncpg.Connection, pid: int, f: item_query.ItemFilter, low: int) -> list[int]:
    """Lock the selection's items (in id order) and return their ids."""
    sql, params = item_query.ids_sql(pid, f, low, lock=True)
    return [r["id"] for r in await conn.fetch(sql, *params)]


async def apply(db: Database, dispatcher: Dispatcher, pid: int, action: str,
                f: item_query.ItemFilter, low: int) -> Outcome:
    """Apply `action` to the project's items that `f` selects; see the module docstring."""
    out = Outcome(action)
    queue = _Queue()
    async with db.acquire() as conn, conn.transaction():
        chosen = await select(conn, pid, f, low)
        rows = await conn.fetch(_ELIGIBLE, chosen, list(APPLIES[action])) if chosen else []
        out.changed = {r["id"]: r["key"] for r in rows}
        out.unchanged = len(chosen) - len(rows)
        ids = list(out.changed)
        if ids:
            if action == "reopen":
                queue.reopened = list(await conn.fetch(_REOPEN, ids, low))
                await conn.execute(_RUN_AGAIN, pid)
            elif action in ("review", "skip"):
                await conn.execute(_TO_REVIEW if action == "review" else _SKIP, ids)
                queue.released = [r["id"] for r in await conn.fetch(_RELEASE_LIVE, ids)]
                if action == "review":
                    await conn.execute(_RUN_AGAIN, pid)
            else:
                queue.released = [r["id"] for r in await conn.fetch(_DELETE, ids)]
                await delete_documents(conn, pid, ids)
    if ids:
        await _tell_queue(db, dispatcher, pid, action, ids, queue)
        if action in ("skip", "delete"):
            out.project_completed = await decisions.complete_if_done(db, pid)  # after the commit
    return out


async def delete_documents(db: Database | asyncpg.Connection, pid: int, ids: list[int]) -> None:
    """Every stored document (each labeler's and the final one) of the items `ids`."""
    await db.execute(_DELETE_DOCUMENTS, pid, ids)


async def _tell_queue(db: Database, dispatcher: Dispatcher, pid: int, action: str,
                      ids: list[int], queue: _Queue) -> None:
    """Bring the Redis queue in step with what has committed. A small selection is told item
    by item (as the single re-open and a decision do); a large one, or any failure, drops
    the queue so that the next lease rebuilds it from Postgres."""
    try:
        if len(ids) > REDIS_ONE_BY_ONE:
            await forget_queue(dispatcher.client, dispatcher.prefix, pid)
            return
        if action == "reopen":
            for r in queue.reopened:
                await dispatcher.reopen(pid, r["id"], r["priority"], r["target"])
            return
        if queue.released:
            # Their slots return and their labelers may get the item again if it re-opens.
            await dispatcher.finish_many(pid, [Transition(lid, "r", closed=True)
                                               for lid in queue.released])
        for iid in ids:
            await dispatcher.close(pid, iid)
    except RedisError as exc:
        log.warning("queue of project %s not told of %s on %d items (%s); it will be rebuilt",
                    pid, action, len(ids), exc)
        try:
            await forget_queue(dispatcher.client, dispatcher.prefix, pid)
        except RedisError:
            # Redis is down: its state goes with it, and it is rebuilt from Postgres on return.
            pass
