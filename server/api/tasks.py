"""Asking for work and handing it back: next, submit, skip, extend."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import asyncpg
from pydantic import Field, StringConstraints
from redis.exceptions import RedisError

from collab import schema
from collab.dispatcher import Dispatcher
from collab.manager import RoomManager

from .. import documents, events, labels, ml, projects, work
from ..errors import ApiError, Conflict, NotFound, ServiceUnavailable, field_error
from ..roles import Role
from ..routing import Call, Endpoint
from ..validation import Strict
from .items import ITEM_COLUMNS, item_json

log = logging.getLogger(__name__)

GRID_SIZES = (1, 4, 6, 9)
CLASSIFICATION = ("multiclass", "multilabel")
_ITEMS = f"SELECT {ITEM_COLUMNS} FROM items WHERE id = ANY($1::bigint[])"
_MY_LEASE = "SELECT id, project_id, item_id, user_id, state, expires_at FROM leases WHERE id = $1"
_ANNOTATION_OF_LEASE = "SELECT id FROM annotations WHERE lease_id = $1"
_ITEM_NOW = "SELECT status, coalesce(target, $2) AS target FROM items WHERE id = $1"
_SKIP = "UPDATE leases SET state = 'skipped', finished_at = now() WHERE id = $1 AND state = 'active'"


class WorkConflict(ApiError):
    status = 409
    code = "conflict"


def _work_error(exc: work.WorkError) -> ApiError:
    """409 for what the caller asked; 503 while the queue is being rebuilt (try again)."""
    if exc.code == "dispatcher_busy":
        return ServiceUnavailable(exc.message, code=exc.code)
    return WorkConflict(exc.message, code=exc.code)


LeaseIds = list[Annotated[str, StringConstraints(min_length=1, max_length=64)]]


class NextBody(Strict):
    count: int = Field(1, description="1 for drawing tasks; 1, 4, 6 or 9 for classification")
    holding: LeaseIds = Field(
        default_factory=list, max_length=64,
        description="leases this client already has (on screen or leased ahead): not returned again")


class ReleaseBody(Strict):
    lease_ids: LeaseIds = Field(min_length=1, max_length=64)
    after_s: int = Field(
        0, ge=0, le=3600,
        description="give them back after this many seconds unless resumed first (a closing tab "
                    "cannot be told from a reload); 0 = now")


class SubmitBody(Strict):
    annotation: dict[str, Any] | None = Field(
        None, description="plain JSON annotation; omitted = snapshot the live document")
    duration_ms: int | None = Field(None, ge=0, le=7 * 24 * 3600 * 1000)


def _dispatcher(call: Call) -> Dispatcher:
    d: Dispatcher = call.request.app.state.dispatcher
    return d


def _rooms(call: Call) -> RoomManager:
    r: RoomManager = call.request.app.state.collab
    return r


async def next_tasks(call: Call) -> dict[str, Any]:
    body: NextBody = call.body
    pid = call.path_int("pid")
    pa = await projects.access(call.services.db, call.me, pid, Role.LABELER)
    allowed = GRID_SIZES if pa.row["task_type"] in CLASSIFICATION else (1,)
    if body.count not in allowed:
        raise field_error("count", f"must be one of {', '.join(map(str, allowed))} for "
                                   f"{pa.row['task_type']} projects")
    if pa.row["status"] != "running":
        raise Conflict(f"the project is {pa.row['status']}; nothing is handed out",
                       code="project_not_running", details={"status": pa.row["status"]})
    try:
        handed = await work.lease(_dispatcher(call), call.services.db, pa.row, call.me.id,
                                  body.count, call.request.app.state.lease_log, body.holding)
    except work.WorkError as exc:
        raise _work_error(exc) from None
    granted = handed.granted
    new = [g for g in granted if not g.resumed]
    if new:
        await events.publish(call.services.redis, call.services.settings.redis_prefix, pid,
                             "leased", user_id=call.me.id, items=sorted(g.item_id for g in new))
    rows = {r["id"]: r for r in await call.services.db.fetch(_ITEMS, [g.item_id for g in granted])}
    prelabels: dict[int, Any] = {}
    if pa.setting("ml_assist").get("enabled") and new:
        try:
            prelabels = await ml.prelabel_leases(
                call.services.db, _rooms(call), pid, pa.row["task_type"],
                [(g.lease_id, g.item_id, f"{pid}/{g.item_id}/{call.me.id}") for g in new
                 if rows[g.item_id]["media_kind"] == "image"])
        except (asyncpg.PostgresError, OSError) as exc:
            # Prelabels help; they must never stop work from being handed out.
            log.warning("prelabels for project %s not written: %s", pid, exc)
    out = [{"lease_id": g.lease_id, "item": item_json(rows[g.item_id]),
            "expires_at": g.expires_ms / 1000.0, "document": f"{pid}/{g.item_id}/{call.me.id}",
            "prelabel": prelabels.get(g.item_id), "resumed": g.resumed} for g in granted]
    return {"leases": out}


async def release(call: Call) -> dict[str, Any]:
    body: ReleaseBody = call.body
    try:
        released = await work.release(_dispatcher(call), call.services.db, call.me.id, body.lease_ids,
                                      body.after_s)
    except work.WorkError as exc:
        raise _work_error(exc) from None
    if not body.after_s:
        for pid, ids in released.items():
            await events.publish(call.services.redis, call.services.settings.redis_prefix, pid,
                                 "released", user_id=call.me.id, leases=len(ids))
    done = {lid for ids in released.values() for lid in ids}
    return {"released": [lid for lid in body.lease_ids if lid in done],
            "inactive": [lid for lid in body.lease_ids if lid not in done]}


async def _own_lease(call: Call) -> Any:
    row = await call.services.db.fetchrow(_MY_LEASE, call.request.path_params["lid"])
    if row is None or row["user_id"] != call.me.id:
        raise NotFound("lease not found")
    await projects.access(call.services.db, call.me, row["project_id"], Role.LABELER)
    return row


async def extend(call: Call) -> dict[str, Any]:
    row = await _own_lease(call)
    expires = await work.extend(_dispatcher(call), call.services.db, row["project_id"], row["id"])
    if expires is None:
        raise Conflict("the lease is no longer active", code="lease_inactive")
    return {"lease_id": row["id"], "expires_at": expires / 1000.0}


async def skip(call: Call) -> dict[str, Any]:
    row = await _own_lease(call)
    status = await call.services.db.execute(_SKIP, row["id"])
    if status.endswith(" 0"):
        raise Conflict("only an active lease can be skipped", code="lease_inactive")
    await _dispatcher(call).finish(row["project_id"], row["id"], "k")
    return {"lease_id": row["id"], "state": "skipped"}


async def submit(call: Call) -> dict[str, Any]:
    body: SubmitBody = call.body
    row = await _own_lease(call)
    db = call.services.db
    existing = await db.fetchval(_ANNOTATION_OF_LEASE, row["id"])
    pa = await projects.access(db, call.me, row["project_id"], Role.LABELER)
    task_type = pa.row["task_type"]
    room = f"{row['project_id']}/{row['item_id']}/{call.me.id}"
    if existing is not None:
        low, _, _ = work.consensus_plan(pa.row)
        item = await db.fetchrow(_ITEM_NOW, row["item_id"], low)
        # A retry, maybe because the answer was lost with the node that committed it, which
        # may have died before it told Redis: tell it again (a submit's transition is
        # idempotent per lease there). The answer does not depend on it: Redis being down
        # is no reason to refuse a submit that is stored.
        try:
            await _dispatcher(call).finish(row["project_id"], row["id"], "s",
                                           target=item["target"],
                                           closed=item["status"] in work.CLOSED)
        except RedisError as exc:
            log.warning("repeated submit of %s: queue not updated (%s)", row["id"], exc)
        return {"lease_id": row["id"], "annotation_id": existing, "item_status": item["status"],
                "repeated": True}
    label_ids = await labels.label_ids(db, row["project_id"])
    rooms = _rooms(call)
    annotation = await documents.snapshot(rooms, room, task_type, label_ids, given=body.annotation,
                                          origin="api", author=str(call.me.id))
    try:
        async with db.acquire() as conn, conn.transaction():
            lease_row = await conn.fetchrow(work.LEASE_FOR_UPDATE, row["id"])
            if lease_row["state"] == "submitted":
                raise WorkConflict("already submitted", code="already_submitted")
            decision, final = await work.submit(conn, pa.row, lease_row, annotation, body.duration_ms)
            await ml.record_outcome(conn, row["project_id"], row["item_id"], lease_row["prelabel_version"],
                                    annotation)
    except work.WorkError as exc:
        raise _work_error(exc) from None
    # After the commit: a check inside the transaction cannot see other submits deciding the
    # last items at the same moment, and each would leave the project running.
    completed = decision.decided and await work.complete_if_done(db, row["project_id"])
    await _dispatcher(call).finish(row["project_id"], row["id"], "s", target=decision.target,
                                   closed=decision.item_status in ("labeled", "needs_review"))
    await events.publish(call.services.redis, call.services.settings.redis_prefix,
                         row["project_id"], "submitted", user_id=call.me.id,
                         item_id=row["item_id"], item_status=decision.item_status,
                         decided=decision.decided, agreement=decision.agreement,
                         target=decision.target)
    if final is not None:
        await rooms.edit(f"{row['project_id']}/{row['item_id']}/final",
                         lambda doc: schema.write_annotation(doc, final, task_type,
                                                             origin="consensus", author="colabel"),
                         "consensus")
    return {"lease_id": row["id"], "annotation_id": decision.annotation_id,
            "item_status": decision.item_status, "decided": decision.decided,
            "target": decision.target, "agreement": decision.agreement,
            "detail": decision.detail, "project_completed": completed, "repeated": False}


ENDPOINTS = [
    Endpoint("POST", "/api/v1/projects/{pid:int}/tasks/next", next_tasks,
             "Lease the next item(s) to label", body=NextBody, tag="work",
             errors=(401, 404, 409, 422, 503)),
    Endpoint("POST", "/api/v1/leases/{lid}/submit", submit,
             "Submit the labeler's annotation (live document, or the body's plain JSON)",
             body=SubmitBody, tag="work", errors=(401, 404, 409, 422, 503)),
    Endpoint("POST", "/api/v1/leases/{lid}/skip", skip, "Give the item back; it is not offered again",
             tag="work", errors=(401, 404, 409)),
    Endpoint("POST", "/api/v1/leases/release", release,
             "Give back leases without submitting (leaving the page, a new grid size, signing out); "
             "the items may come back to you", body=ReleaseBody, tag="work", errors=(401, 422)),
    Endpoint("POST", "/api/v1/leases/{lid}/extend", extend, "Keep a lease alive", tag="work",
             errors=(401, 404, 409)),
]
