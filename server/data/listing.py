"""The data manager's reads: a filtered, sorted page of a project's items (keyset-paged both
ways), an item's neighbours in that order, and everything a person looks at on one item."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class _Stretch:
    """What one query over the order found: the matching rows (in travel order, up to the
    limit + 1), and for a file-name search how many items it examined and the last one."""

    rows: list[asyncpg.Record]
    exhausted: bool = False      # a name search stopped at its budget: more may match
    last: tuple[Any, int] | None = None


async def _fetch(db: Db, pid: int, f: q.ItemFilter, low: int, order: q.Order,
                 cursor: q.Cursor | None, limit: int) -> _Stretch:
    sql, params = q.page_sql(pid, f, low, order, cursor, limit)
    rows: list[asyncpg.Record] = await db.fetch(sql, *params)
    if not f.name:
        return _Stretch(rows)
    head = rows[0]
    return _Stretch([r for r in rows if r["id"] is not None], head["scanned"] >= q.NAME_SCAN,
                    (head["last_v"], head["last_id"]) if head["last_id"] is not None else None)


async def page(db: Db, pid: int, f: q.ItemFilter, low: int, order: q.Order,
               cursor: q.Cursor | None, limit: int) -> dict[str, Any]:
    """A page of matching items with cursors to the pages after and before it. A file-name
    search may answer a short page (`partial`) when it stopped at its budget of items
    examined; its next cursor goes on from there."""
    back = cursor is not None and cursor.back
    got = await _fetch(db, pid, f, low, order, cursor, limit + 1)
    shown = got.rows[:limit]
    more = len(got.rows) > limit or got.exhausted
    # Where to go on in the direction of travel: after the last row shown, or after the last
    # item examined when the search stopped short of a full page.
    if len(got.rows) > limit or not got.exhausted or got.last is None:
        go_on = (q.sort_value(shown[-1], order), shown[-1]["id"]) if shown else None
    else:
        go_on = got.last
    if back and not more:
        # Paged back to the start: the page is the first one, whole.
        return await page(db, pid, f, low, order, None, limit)
    if back:
        shown.reverse()
        prev = q.Cursor(order, go_on[0], go_on[1], back=True).encode() if go_on else None
        nxt = (q.Cursor(order, q.sort_value(shown[-1], order), shown[-1]["id"]).encode()
               if shown else None)
    else:
        nxt = q.Cursor(order, go_on[0], go_on[1]).encode() if more and go_on else None
        prev = (q.Cursor(order, q.sort_value(shown[0], order), shown[0]["id"], back=True).encode()
                if cursor is not None and shown else None)
    return {"items": [row_json(r) for r in shown], "next_cursor": nxt, "prev_cursor": prev,
            "partial": got.exhausted and len(got.rows) <= limit}


async def count(db: Db, pid: int, f: q.ItemFilter, low: int) -> dict[str, Any]:
    """How many items match, up to COUNT_CAP."""
    sql, params = q.count_sql(pid, f, low)
    n: int = await db.fetchval(sql, *params)
    return {"matching": min(n, q.COUNT_CAP), "capped": n > q.COUNT_CAP}


async def neighbours(db: Db, pid: int, iid: int, f: q.ItemFilter, low: int,
                     order: q.Order) -> dict[str, Any] | None:
    """The items just before and after `iid` in the filtered order (None if no such item;
    the item itself need not match the filter)."""
    row = await db.fetchrow(_SORT_VALUE, pid, iid)
    if row is None:
        return None
    value = q.sort_value(row, order)
    return {"previous": await _nearest(db, pid, f, low, q.Cursor(order, value, iid, back=True)),
            "next": await _nearest(db, pid, f, low, q.Cursor(order, value, iid))}


async def _nearest(db: Db, pid: int, f: q.ItemFilter, low: int,
                   cursor: q.Cursor) -> dict[str, Any] | None:
    """The first matching item from `cursor` in its direction; a file-name search goes on
    stretch by stretch until it finds one or runs out of items."""
    while True:
        got = await _fetch(db, pid, f, low, cursor.order, cursor, 1)
        if got.rows:
            return row_json(got.rows[0])
        if not got.exhausted or got.last is None:
            return None
        cursor = q.Cursor(cursor.order, got.last[0], got.last[1], back=cursor.back)


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
