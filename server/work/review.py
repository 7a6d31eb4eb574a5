"""Review in Postgres: the items that need a person's decision, recording that decision,
and sending a decided item back to labeling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from server.data.items import ITEM_COLUMNS
from server.database import Database
from server.errors import Conflict, NotFound
from server.work import consensus
from server.work.plan import CLOSED, consensus_plan

_REVIEW = f"""
SELECT {ITEM_COLUMNS}, agreement FROM items
WHERE project_id = $1 AND status = 'needs_review' AND id > $2 ORDER BY id LIMIT $3
"""
_ANNOTATIONS = """
SELECT a.item_id, a.user_id, u.name, a.data, a.created_at FROM annotations a
JOIN users u ON u.id = a.user_id WHERE a.item_id = ANY($1::bigint[]) ORDER BY a.id
"""
_ONE = f"SELECT {ITEM_COLUMNS}, agreement FROM items WHERE project_id = $1 AND id = $2"
_EXISTS = "SELECT key FROM items WHERE project_id = $1 AND id = $2"
_ITEM = "SELECT id, key, status, shuffle_key, final FROM items WHERE project_id = $1 AND id = $2 FOR UPDATE"
_DECIDE = """
UPDATE items SET status = 'labeled', final = $2, decided_by = 'owner', decided_by_user = $3,
                 decided_at = now(), updated_at = now()
WHERE id = $1
"""
_COUNT_ANNOTATIONS = "SELECT count(*) FROM annotations WHERE item_id = $1"
_REOPEN = """
UPDATE items SET status = $2, final = NULL, decided_by = NULL, decided_by_user = NULL,
                 decided_at = NULL, agreement = NULL, target = $3, updated_at = now()
WHERE id = $1
"""
_RUN_AGAIN = """
UPDATE projects SET status = 'running', updated_at = now() WHERE id = $1 AND status = 'completed'
"""


async def waiting(db: Database, project_id: int, after: int, limit: int,
                  ) -> tuple[list[asyncpg.Record], dict[int, list[dict[str, Any]]]]:
    """A page of items that need review, with every labeler's annotation of each."""
    return await _with_annotations(db, await db.fetch(_REVIEW, project_id, after, limit))


async def _with_annotations(db: Database, rows: list[asyncpg.Record],
                            ) -> tuple[list[asyncpg.Record], dict[int, list[dict[str, Any]]]]:
    by_item: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
    for a in await db.fetch(_ANNOTATIONS, list(by_item)):
        by_item[a["item_id"]].append({"user": {"id": a["user_id"], "name": a["name"]},
                                      "annotation": a["data"],
                                      "submitted_at": a["created_at"].isoformat()})
    return rows, by_item


async def one(db: Database, project_id: int, item_id: int,
              ) -> tuple[asyncpg.Record, list[dict[str, Any]]]:
    """One item of any status, with every labeler's submitted annotation of it."""
    row = await db.fetchrow(_ONE, project_id, item_id)
    if row is None:
        raise NotFound(f"item {item_id} not found in project {project_id}")
    _, by_item = await _with_annotations(db, [row])
    return row, by_item[item_id]


def why(project: asyncpg.Record | dict[str, Any], annotations: list[dict[str, Any]],
        ) -> dict[str, Any] | None:
    """Why the item's annotations do (not) agree, unit by unit, from the same consensus rules
    that sent it to review (consensus.py, "Reason"), with labelers named by user id. None
    when there is nothing to compare (no annotation yet) or no consensus rule applies (several
    polygon labelers, an annotation the schema refuses)."""
    if not annotations:
        return None
    _, _, threshold = consensus_plan(project)
    try:
        outcome = consensus.decide(project["task_type"], [a["annotation"] for a in annotations],
                                   consensus.ConsensusParams(threshold=threshold))
    except ValueError:
        return None
    if outcome.reason is None:
        return None
    users = [a["user"]["id"] for a in annotations]
    return {"agreed": outcome.agreed, "detail": outcome.detail, **_named(outcome.reason, users)}


def _named(reason: dict[str, Any], users: list[int]) -> dict[str, Any]:
    """The reason with every labeler position replaced by that labeler's user id."""
    out = dict(reason)
    for unit in ("votes", "labels"):
        if unit in out:
            out[unit] = [{**v, "labelers": [users[i] for i in v["labelers"]]} for v in out[unit]]
    if "places" in out:
        out["places"] = [{**p, "boxes": [{**b, "labeler": users[b["labeler"]]} for b in p["boxes"]]}
                         for p in out["places"]]
    return out


async def require_item(db: Database, project_id: int, item_id: int) -> str:
    """The item's file name; 404 when the project has no such item."""
    key: str | None = await db.fetchval(_EXISTS, project_id, item_id)
    if key is None:
        raise NotFound(f"item {item_id} not found in project {project_id}")
    return key


async def record_decision(db: Database, project_id: int, item_id: int, final: dict[str, Any],
                          user_id: int) -> None:
    """A reviewer's (or owner's) final label: the item is labeled, by a person."""
    async with db.acquire() as conn, conn.transaction():
        item = await conn.fetchrow(_ITEM, project_id, item_id)
        if item["status"] == "missing":
            raise Conflict("the item's file is missing", code="item_missing")
        await conn.execute(_DECIDE, item_id, final, user_id)


@dataclass(frozen=True)
class Reopened:
    status: str
    target: int
    priority: float
    key: str


async def reopen(db: Database, project_id: int, item_id: int, low: int) -> Reopened:
    """Send a decided item back to labeling with one more labeler than it already had (so
    it really goes back to work), and a completed project back to running."""
    async with db.acquire() as conn, conn.transaction():
        item = await conn.fetchrow(_ITEM, project_id, item_id)
        if item is None:
            raise NotFound(f"item {item_id} not found in project {project_id}")
        if item["status"] not in CLOSED:
            raise Conflict(f"only decided items can be re-opened (this one is {item['status']})",
                           code="not_decided")
        done = await conn.fetchval(_COUNT_ANNOTATIONS, item_id)
        target = max(low, done + 1)
        status = "in_progress" if done else "unlabeled"
        await conn.execute(_REOPEN, item_id, status, target)
        await conn.execute(_RUN_AGAIN, project_id)
    return Reopened(status, target, item["shuffle_key"], item["key"])
