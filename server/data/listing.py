"""The data manager's reads: a filtered, sorted page of a project's items (keyset-paged both
ways), an item's neighbours in that order, and everything a person looks at on one item."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from server.data import item_query as q
from server.data.items import item_json
from server.database import Database

_SORT_VALUE = "SELECT i.id, i.key, i.updated_at, i.status FROM items i WHERE i.project_id = $1 AND i.id = $2"
_ANNOTATIONS = """
SELECT a.user_id, u.name, a.data, a.created_at, a.duration_ms, a.started_from_prelabel
FROM annotations a JOIN users u ON u.id = a.user_id WHERE a.item_id = $1 ORDER BY a.id
"""
_LEASES = """
SELECT l.user_id, u.name, l.state FROM leases l JOIN users u ON u.id = l.user_id
WHERE l.item_id = $1 AND l.state = 'active' AND l.expires_at > now() ORDER BY l.created_at
"""
_DECIDER = "SELECT id, name FROM users WHERE id = $1"

Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection | Database"


def row_json(row: asyncpg.Record) -> dict[str, Any]:
    """A listed item: its JSON form, how far its labelers agree, and its final label's shapes
    and classes (masks left out: thumbnails draw outlines, not pixels)."""
    return {**item_json(row), "agreement": row["agreement"], "target": row["target"],
            "final": row["final"], "has_prelabel": row["has_prelabel"]}


async def _fetch(db: Db, pid: int, f: q.ItemFilter, low: int, order: q.Order,
                 cursor: q.Cursor | None, limit: int) -> list[asyncpg.Record]:
    sql, params = q.page_sql(pid, f, low, order, cursor, limit)
    rows: list[asyncpg.Record] = await db.fetch(sql, *params)
    return rows


async def page(db: Db, pid: int, f: q.ItemFilter, low: int, order: q.Order,
               cursor: q.Cursor | None, limit: int) -> dict[str, Any]:
    """A page of matching items with cursors to the pages after and before it; the first page
    also says how many match (up to COUNT_CAP)."""
    rows = await _fetch(db, pid, f, low, order, cursor, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    if cursor is not None and cursor.back:
        rows.reverse()
        if not more:
            # Paged back to the start: the page is the first one, whole.
            cursor = None
            rows = (await _fetch(db, pid, f, low, order, None, limit + 1))
            more = len(rows) > limit
            rows = rows[:limit]
        else:
            more = True  # the page a back cursor came from follows this one
    first = cursor is None
    out: dict[str, Any] = {"items": [row_json(r) for r in rows]}
    last, head = (rows[-1], rows[0]) if rows else (None, None)
    out["next_cursor"] = (q.Cursor(order, q.sort_value(last, order), last["id"]).encode()
                          if more and last is not None else None)
    out["prev_cursor"] = (q.Cursor(order, q.sort_value(head, order), head["id"], back=True).encode()
                          if not first and head is not None else None)
    if first:
        sql, params = q.count_sql(pid, f, low)
        n: int = await db.fetchval(sql, *params)
        out["matching"] = min(n, q.COUNT_CAP)
        out["matching_capped"] = n > q.COUNT_CAP
    return out


async def neighbours(db: Db, pid: int, iid: int, f: q.ItemFilter, low: int,
                     order: q.Order) -> dict[str, Any] | None:
    """The items just before and after `iid` in the filtered order (None if no such item;
    the item itself need not match the filter)."""
    row = await db.fetchrow(_SORT_VALUE, pid, iid)
    if row is None:
        return None
    value = q.sort_value(row, order)
    after = await _fetch(db, pid, f, low, order, q.Cursor(order, value, iid), 1)
    before = await _fetch(db, pid, f, low, order, q.Cursor(order, value, iid, back=True), 1)
    return {"previous": row_json(before[0]) if before else None,
            "next": row_json(after[0]) if after else None}


async def detail(db: Db, iid: int, decided_by_user: int | None) -> dict[str, Any]:
    """What a reviewer or owner sees of one item beside its JSON form: each labeler's submitted
    annotation, who is labeling it now, and who decided it."""
    annotations = [{"user": {"id": a["user_id"], "name": a["name"]}, "annotation": a["data"],
                    "submitted_at": a["created_at"].isoformat(), "duration_ms": a["duration_ms"],
                    "started_from_prelabel": a["started_from_prelabel"]}
                   for a in await db.fetch(_ANNOTATIONS, iid)]
    working = [{"user": {"id": r["user_id"], "name": r["name"]}} for r in await db.fetch(_LEASES, iid)]
    decider = await db.fetchrow(_DECIDER, decided_by_user) if decided_by_user else None
    return {"annotations": annotations, "working": working,
            "decided_by_user": {"id": decider["id"], "name": decider["name"]} if decider else None}
