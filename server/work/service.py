"""The work of labeling as its callers see it: every step a labeler, reviewer or owner
takes (ask for work, give it back, keep it, skip, submit, decide, re-open), each one call.

Each step runs the rules of its own module (leases.py, decisions.py, review.py), keeps the
Redis queue in step once Postgres has committed, and tells watchers (events) and the live
documents what changed. The HTTP handlers check who is asking and call one method here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from collab import schema
from collab.manager import RoomManager
from collab.names import document_name, final_document
from server.data.items import ITEM_COLUMNS, item_json
from server.database import Database
from server.errors import Conflict, field_error
from server.ml import prelabels
from server.monitoring import events
from server.projects import label_store
from server.projects.projects import ProjectAccess
from server.work import decisions, documents, leases, review
from server.work.plan import CLOSED, consensus_plan
from server.work.queue import Dispatcher

log = logging.getLogger(__name__)

GRID_SIZES = (1, 4, 6, 9)
CLASSIFICATION = ("multiclass", "multilabel")
_ITEMS = f"SELECT {ITEM_COLUMNS} FROM items WHERE id = ANY($1::bigint[])"
_ANNOTATION_OF_LEASE = "SELECT id FROM annotations WHERE lease_id = $1"
_ITEM_NOW = "SELECT status, coalesce(target, $2) AS target FROM items WHERE id = $1"


@dataclass(frozen=True)
class Submission:
    """What a labeler submits: plain JSON (scripts), or the live document as far as the
    browser's state vector goes (`seen`), or the live document as it is (neither)."""

    annotation: dict[str, Any] | None
    seen: dict[int, int] | None
    duration_ms: int | None


class WorkService:
    def __init__(self, db: Database, redis: aioredis.Redis, prefix: str, dispatcher: Dispatcher,
                 rooms: RoomManager) -> None:
        self.db = db
        self.redis = redis
        self.prefix = prefix
        self.dispatcher = dispatcher
        self.rooms = rooms
        self.lease_log = leases.LeaseLog(db)

    async def _event(self, project_id: int, kind: str, **data: Any) -> None:
        await events.publish(self.redis, self.prefix, project_id, kind, **data)

    # -- labelers ---------------------------------------------------------------------

    async def hand_out(self, pa: ProjectAccess, user_id: int, count: int,
                       holding: list[str]) -> list[dict[str, Any]]:
        """Up to `count` items for a labeler (their live leases first), with prelabels."""
        project, pid = pa.row, pa.row["id"]
        allowed = GRID_SIZES if project["task_type"] in CLASSIFICATION else (1,)
        if count not in allowed:
            raise field_error("count", f"must be one of {', '.join(map(str, allowed))} for "
                                       f"{project['task_type']} projects")
        if project["status"] != "running":
            raise Conflict(f"the project is {project['status']}; nothing is handed out",
                           code="project_not_running", details={"status": project["status"]})
        handed = await leases.lease(self.dispatcher, self.db, project, user_id, count,
                                    self.lease_log, holding)
        granted = handed.granted
        new = [g for g in granted if not g.resumed]
        if new:
            await self._event(pid, "leased", user_id=user_id, items=sorted(g.item_id for g in new))
        rows = {r["id"]: r for r in await self.db.fetch(_ITEMS, [g.item_id for g in granted])}
        suggested: dict[int, Any] = {}
        if pa.setting("ml_assist").get("enabled") and new:
            try:
                suggested = await prelabels.prelabel_leases(
                    self.db, self.rooms, pid, project["task_type"],
                    [(g.lease_id, g.item_id, document_name(pid, g.item_id, user_id)) for g in new
                     if rows[g.item_id]["media_kind"] == "image"])
            except (asyncpg.PostgresError, OSError) as exc:
                # Prelabels help; they must never stop work from being handed out.
                log.warning("prelabels for project %s not written: %s", pid, exc)
        return [{"lease_id": g.lease_id, "item": item_json(rows[g.item_id]),
                 "expires_at": g.expires_ms / 1000.0,
                 "document": document_name(pid, g.item_id, user_id),
                 "prelabel": suggested.get(g.item_id), "resumed": g.resumed} for g in granted]

    async def give_back(self, user_id: int, lease_ids: list[str], after_s: int) -> dict[str, Any]:
        """Release leases without a submit (now, or after `after_s` unless resumed first)."""
        released = await leases.release(self.dispatcher, self.db, user_id, lease_ids, after_s)
        if not after_s:
            for pid, ids in released.items():
                await self._event(pid, "released", user_id=user_id, leases=len(ids))
        done = {lid for ids in released.values() for lid in ids}
        return {"released": [lid for lid in lease_ids if lid in done],
                "inactive": [lid for lid in lease_ids if lid not in done]}

    async def extend(self, lease: asyncpg.Record) -> dict[str, Any]:
        expires = await leases.extend(self.dispatcher, self.db, lease["project_id"], lease["id"])
        if expires is None:
            raise Conflict("the lease is no longer active", code="lease_inactive")
        return {"lease_id": lease["id"], "expires_at": expires / 1000.0}

    async def skip(self, lease: asyncpg.Record) -> dict[str, Any]:
        await leases.skip(self.dispatcher, self.db, lease)
        return {"lease_id": lease["id"], "state": "skipped"}

    async def submit(self, pa: ProjectAccess, lease: asyncpg.Record, given: Submission,
                     user_id: int) -> dict[str, Any]:
        """Record a labeler's annotation, decide the item if it can be, and tell the queue,
        the watchers and the item's final document. Idempotent per lease."""
        project, pid, iid = pa.row, lease["project_id"], lease["item_id"]
        existing = await self.db.fetchval(_ANNOTATION_OF_LEASE, lease["id"])
        if existing is not None:
            return await self._repeated(project, lease, existing)
        annotation = await documents.snapshot(
            self.rooms, document_name(pid, iid, user_id), project["task_type"],
            await label_store.label_ids(self.db, pid), given=given.annotation, seen=given.seen,
            origin="api", author=str(user_id))
        async with self.db.acquire() as conn, conn.transaction():
            recorded = await decisions.record_submit(conn, project, lease["id"], annotation,
                                                     given.duration_ms)
            await prelabels.record_outcome(conn, pid, iid, recorded.lease["prelabel_version"],
                                           annotation)
        decision = recorded.decision
        # After the commit: a check inside the transaction cannot see other submits deciding the
        # last items at the same moment, and each would leave the project running.
        completed = decision.decided and await decisions.complete_if_done(self.db, pid)
        await self.dispatcher.finish(pid, lease["id"], "s", target=decision.target,
                                     closed=decision.item_status in CLOSED)
        await self._event(pid, "submitted", user_id=user_id, item_id=iid,
                          item_status=decision.item_status, decided=decision.decided,
                          agreement=decision.agreement, target=decision.target)
        if recorded.final is not None:
            await self._write_final(pid, iid, recorded.final, project["task_type"])
        return {"lease_id": lease["id"], "annotation_id": decision.annotation_id,
                "item_status": decision.item_status, "decided": decision.decided,
                "target": decision.target, "agreement": decision.agreement,
                "detail": decision.detail, "project_completed": completed, "repeated": False}

    async def _repeated(self, project: asyncpg.Record, lease: asyncpg.Record,
                        annotation_id: int) -> dict[str, Any]:
        """A retry, maybe because the answer was lost with the node that committed it, which
        may have died before it told Redis: tell it again (a submit's transition is
        idempotent per lease there). The answer does not depend on it: Redis being down is
        no reason to refuse a submit that is stored."""
        low, _, _ = consensus_plan(project)
        item = await self.db.fetchrow(_ITEM_NOW, lease["item_id"], low)
        try:
            await self.dispatcher.finish(lease["project_id"], lease["id"], "s", target=item["target"],
                                         closed=item["status"] in CLOSED)
        except RedisError as exc:
            log.warning("repeated submit of %s: queue not updated (%s)", lease["id"], exc)
        return {"lease_id": lease["id"], "annotation_id": annotation_id,
                "item_status": item["status"], "repeated": True}

    async def _write_final(self, pid: int, iid: int, final: dict[str, Any], task_type: str) -> None:
        await self.rooms.edit(final_document(pid, iid),
                              lambda doc: schema.write_annotation(doc, final, task_type,  # type: ignore[arg-type]
                                                                  origin="consensus", author="colabel"),
                              "consensus")

    # -- reviewers and owners ---------------------------------------------------------

    async def review_page(self, pid: int, after: int, limit: int) -> dict[str, Any]:
        rows, by_item = await review.waiting(self.db, pid, after, limit)
        items = [{**item_json(r), "agreement": r["agreement"], "annotations": by_item[r["id"]],
                  "final_document": final_document(pid, r["id"])} for r in rows]
        return {"items": items, "next_after": items[-1]["id"] if len(items) == limit else None}

    async def decide(self, pa: ProjectAccess, iid: int, annotation: dict[str, Any] | None,
                     seen: dict[int, int] | None, user_id: int) -> dict[str, Any]:
        """A person's final label: the body's, or the final document (once it holds what the
        reviewer's copy had, `seen`)."""
        pid = pa.row["id"]
        await review.require_item(self.db, pid, iid)
        final = await documents.snapshot(
            self.rooms, final_document(pid, iid), pa.row["task_type"],
            await label_store.label_ids(self.db, pid), given=annotation, seen=seen,
            origin="human", author=str(user_id))
        await review.record_decision(self.db, pid, iid, final, user_id)
        completed = await decisions.complete_if_done(self.db, pid)  # after the commit
        await self.dispatcher.close(pid, iid)
        await self._event(pid, "decided", item_id=iid, by=user_id, how="owner")
        return {"item_id": iid, "status": "labeled", "final": final, "decided_by": "owner",
                "project_completed": completed}

    async def reopen(self, pa: ProjectAccess, iid: int, user_id: int) -> dict[str, Any]:
        """Send a decided item back to labeling."""
        pid = pa.row["id"]
        low, high, _ = consensus_plan(pa.row)
        done = await review.reopen(self.db, pid, iid, low)
        await self.dispatcher.reopen(pid, iid, done.priority, done.target)
        await self._event(pid, "reopened", item_id=iid, by=user_id)
        return {"item_id": iid, "status": done.status, "target": done.target, "max": high}
