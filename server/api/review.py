"""Review: items that need a person's decision, deciding them, and re-opening items."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from collab.dispatcher import Dispatcher
from collab.manager import RoomManager

from .. import documents, events, labels, projects, work
from ..errors import Conflict, NotFound
from ..roles import Role
from ..routing import Call, Endpoint
from ..validation import Strict
from .items import ITEM_COLUMNS, item_json

_REVIEW = f"""
SELECT {ITEM_COLUMNS}, agreement FROM items
WHERE project_id = $1 AND status = 'needs_review' AND id > $2 ORDER BY id LIMIT $3
"""
_ANNOTATIONS = """
SELECT a.item_id, a.user_id, u.name, a.data, a.created_at FROM annotations a
JOIN users u ON u.id = a.user_id WHERE a.item_id = ANY($1::bigint[]) ORDER BY a.id
"""
_ITEM = "SELECT id, status, shuffle_key, final FROM items WHERE project_id = $1 AND id = $2 FOR UPDATE"
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


class DecideBody(Strict):
    annotation: dict[str, Any] | None = Field(
        None, description="the final label; omitted = take the final document as it is now")


async def review_queue(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    db = call.services.db
    await projects.access(db, call.me, pid, Role.REVIEWER)
    after = call.after()
    limit, _ = call.page(default=50, most=500)
    rows = await db.fetch(_REVIEW, pid, after, limit)
    by_item: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
    for a in await db.fetch(_ANNOTATIONS, list(by_item)):
        by_item[a["item_id"]].append({"user": {"id": a["user_id"], "name": a["name"]},
                                      "annotation": a["data"],
                                      "submitted_at": a["created_at"].isoformat()})
    items = [{**item_json(r), "agreement": r["agreement"], "annotations": by_item[r["id"]],
              "final_document": f"{pid}/{r['id']}/final"} for r in rows]
    return {"items": items, "next_after": items[-1]["id"] if len(items) == limit else None}


async def decide(call: Call) -> dict[str, Any]:
    body: DecideBody = call.body
    pid, iid = call.path_int("pid"), call.path_int("iid")
    db = call.services.db
    pa = await projects.access(db, call.me, pid, Role.REVIEWER)
    task_type = pa.row["task_type"]
    label_ids = await labels.label_ids(db, pid)
    rooms: RoomManager = call.request.app.state.collab
    room = f"{pid}/{iid}/final"
    if await db.fetchval("SELECT 1 FROM items WHERE project_id = $1 AND id = $2", pid, iid) is None:
        raise NotFound(f"item {iid} not found in project {pid}")
    final = await documents.snapshot(rooms, room, task_type, label_ids, given=body.annotation,
                                     origin="human", author=str(call.me.id))
    async with db.acquire() as conn, conn.transaction():
        item = await conn.fetchrow(_ITEM, pid, iid)
        if item["status"] == "missing":
            raise Conflict("the item's file is missing", code="item_missing")
        await conn.execute(_DECIDE, iid, final, call.me.id)
    completed = await work.complete_if_done(db, pid)  # after the commit (see work.complete_if_done)
    dispatcher: Dispatcher = call.request.app.state.dispatcher
    await dispatcher.close(pid, iid)
    await events.publish(call.services.redis, call.services.settings.redis_prefix, pid, "decided",
                         item_id=iid, by=call.me.id, how="owner")
    return {"item_id": iid, "status": "labeled", "final": final, "decided_by": "owner",
            "project_completed": completed}


async def reopen(call: Call) -> dict[str, Any]:
    pid, iid = call.path_int("pid"), call.path_int("iid")
    db = call.services.db
    pa = await projects.access(db, call.me, pid, Role.OWNER)
    low, high, _ = work.consensus_plan(pa.row)
    async with db.acquire() as conn, conn.transaction():
        item = await conn.fetchrow(_ITEM, pid, iid)
        if item is None:
            raise NotFound(f"item {iid} not found in project {pid}")
        if item["status"] not in ("labeled", "needs_review"):
            raise Conflict(f"only decided items can be re-opened (this one is {item['status']})",
                           code="not_decided")
        done = await conn.fetchval(_COUNT_ANNOTATIONS, iid)
        # One more labeler than it already had, so the item really goes back to work.
        target = max(low, done + 1)
        status = "in_progress" if done else "unlabeled"
        await conn.execute(_REOPEN, iid, status, target)
        await conn.execute(_RUN_AGAIN, pid)
    dispatcher: Dispatcher = call.request.app.state.dispatcher
    await dispatcher.reopen(pid, iid, item["shuffle_key"], target)
    await events.publish(call.services.redis, call.services.settings.redis_prefix, pid, "reopened",
                         item_id=iid, by=call.me.id)
    return {"item_id": iid, "status": status, "target": target, "max": high}


_P = "/api/v1/projects/{pid:int}"
ENDPOINTS = [
    Endpoint("GET", _P + "/review", review_queue,
             "Items that need review, with every labeler's annotation (reviewers, owners)",
             tag="review", errors=(401, 403, 404, 422)),
    Endpoint("POST", _P + "/items/{iid:int}/decide", decide,
             "Decide an item's final label (reviewers, owners)", body=DecideBody, tag="review",
             errors=(401, 403, 404, 409, 422)),
    Endpoint("POST", _P + "/items/{iid:int}/reopen", reopen,
             "Send a decided item back to labeling (owners)", tag="review",
             errors=(401, 403, 404, 409)),
]
