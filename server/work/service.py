"""The work of labeling as its callers see it: every step a labeler, reviewer or owner
takes (ask for work, give it back, keep it, skip, submit, decide, re-open), each one call.

Each step runs the rules of its own module (leases.py, decisions.py, review.py), keeps the
Redis queue in step once Postgres has committed, and tells watchers (events) and the live
documents what changed. The HTTP handlers check who is asking and call one method here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from collab.manager import RoomManager
from collab.names import document_name, final_document
from server.data.items import ITEM_COLUMNS, item_json, labelers
from server.database import Database
from server.errors import ApiError, Conflict, field_error
from server.ml import prelabels
from server.monitoring import events
from server.projects import label_store
from server.projects.projects import ProjectAccess
from server.work import decisions, documents, leases, review
from server.work.plan import CLOSED, consensus_plan
from server.work.queue import Dispatcher, Transition
from server.work.submits import Entry, SubmitLog

log = logging.getLogger(__name__)

GRID_SIZES = (1, 4, 6, 9)
CLASSIFICATION = ("multiclass", "multilabel")
_ITEMS = f"SELECT {ITEM_COLUMNS} FROM items WHERE id = ANY($1::bigint[])"
_ANNOTATIONS_OF_LEASES = "SELECT lease_id, id FROM annotations WHERE lease_id = ANY($1::text[])"
_ITEM_NOW = "SELECT status, coalesce(target, $2) AS target FROM items WHERE id = $1"


@dataclass(frozen=True)
class Submission:
    """What a labeler submits for one lease: plain JSON (scripts), or the live document as
    far as the browser's state vector goes (`seen`), or the live document as it is (neither)."""

    lease_id: str
    annotation: dict[str, Any] | None
    seen: dict[int, int] | None
    duration_ms: int | None


@dataclass(frozen=True)
class Asked:
    """A submission with the caller's lease (any state) and their access to its project."""

    submission: Submission
    lease: asyncpg.Record
    access: ProjectAccess


class WorkService:
    def __init__(self, db: Database, redis: aioredis.Redis, prefix: str, dispatcher: Dispatcher,
                 rooms: RoomManager) -> None:
        self.db = db
        self.redis = redis
        self.prefix = prefix
        self.dispatcher = dispatcher
        self.rooms = rooms
        self.lease_log = leases.LeaseLog(db)
        self.submit_log = SubmitLog(db, rooms)
        self.label_ids = label_store.LabelIds()
        self.events = events.Outbox(redis, prefix)

    # -- labelers ---------------------------------------------------------------------

    async def hand_out(self, pa: ProjectAccess, user_id: int, count: int, holding: list[str],
                       own: list[leases.Own] | None = None) -> list[dict[str, Any]]:
        """Up to `count` items for a labeler (their live leases first, `own` when the caller
        has read them: `leases.asking_for_work`), with prelabels."""
        project, pid = pa.row, pa.row["id"]
        allowed = GRID_SIZES if project["task_type"] in CLASSIFICATION else (1,)
        if count not in allowed:
            raise field_error("count", f"must be one of {', '.join(map(str, allowed))} for "
                                       f"{project['task_type']} projects")
        if project["status"] != "running":
            raise Conflict(f"the project is {project['status']}; nothing is handed out",
                           code="project_not_running", details={"status": project["status"]})
        handed = await leases.lease(self.dispatcher, self.db, project, user_id, count,
                                    self.lease_log, holding, own)
        granted = handed.granted
        new = [g for g in granted if not g.resumed]
        if new:
            self.events.emit(pid, "leased", user_id=user_id, items=sorted(g.item_id for g in new))
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
                self.events.emit(pid, "released", user_id=user_id, leases=len(ids))
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

    async def submit(self, user_id: int, asked: list[Asked]) -> list[dict[str, Any] | ApiError]:
        """Record labelers' annotations (one lease, or a page of them, in one group-committed
        transaction), decide the items that can be, and tell the queue and the watchers.
        Each lease gets its own answer, or the error that refused it; idempotent per lease."""
        answers: list[dict[str, Any] | ApiError | None] = [None] * len(asked)
        # A submit again of a stored one (a retry after a lost answer) is answered as the
        # first was; only leases already marked submitted can be one.
        again = [a.lease["id"] for a in asked if a.lease["state"] == "submitted"]
        existing = {r["lease_id"]: r["id"] for r in await self.db.fetch(
            _ANNOTATIONS_OF_LEASES, again)} if again else {}
        labels = {a.access.row["id"]: await self.label_ids.of(self.db, a.access.row) for a in asked}

        async def entry(a: Asked) -> Entry:
            project, iid = a.access.row, a.lease["item_id"]
            room = document_name(project["id"], iid, user_id)
            given = a.submission.annotation
            if given is not None:
                documents.validate(given, project["task_type"], labels[project["id"]])
                annotation, document = given, room
            else:
                annotation = await documents.snapshot(
                    self.rooms, room, project["task_type"], labels[project["id"]],
                    given=None, seen=a.submission.seen, origin="api", author=str(user_id))
                document = None
            return Entry(decisions.Submit(project, a.lease["id"], annotation, a.submission.duration_ms),
                         document, str(user_id))

        pending: list[int] = []
        for n, a in enumerate(asked):
            if a.lease["id"] in existing:
                answers[n] = await self._repeated(a.access.row, a.lease, existing[a.lease["id"]])
            else:
                pending.append(n)
        read = await asyncio.gather(*(entry(asked[n]) for n in pending), return_exceptions=True)
        entries: list[tuple[int, Entry]] = []
        for n, got in zip(pending, read, strict=True):
            if isinstance(got, ApiError):
                answers[n] = got
            elif isinstance(got, BaseException):
                raise got
            else:
                entries.append((n, got))
        outcomes = await self.submit_log.record([e for _, e in entries])
        recorded = [(asked[n], o) for (n, _), o in zip(entries, outcomes, strict=True)
                    if isinstance(o, decisions.Recorded)]
        completed = await self._after_submits(user_id, recorded)
        for (n, _), outcome in zip(entries, outcomes, strict=True):
            if isinstance(outcome, ApiError):
                answers[n] = outcome
                continue
            d = outcome.decision
            answers[n] = {"lease_id": outcome.lease["id"], "annotation_id": d.annotation_id,
                          "item_status": d.item_status, "decided": d.decided, "target": d.target,
                          "agreement": d.agreement, "detail": d.detail,
                          "project_completed": completed.get(outcome.lease["project_id"], False),
                          "repeated": False}
        return [a for a in answers if a is not None]

    async def _after_submits(self, user_id: int,
                             recorded: list[tuple[Asked, decisions.Recorded]]) -> dict[int, bool]:
        """Once submits have committed: tell the queue first (whatever fails after it, Redis
        must not keep counting leases Postgres has as submitted), then complete projects with
        nothing left (after the commit: a check inside the transaction cannot see other
        submits deciding the last items at the same moment, and each would leave the project
        running), then tell the watchers. Returns project -> whether it was completed now."""
        by_project: dict[int, list[decisions.Recorded]] = {}
        for _, r in recorded:
            by_project.setdefault(r.lease["project_id"], []).append(r)
        for pid, done in by_project.items():
            await self.dispatcher.finish_many(pid, [
                Transition(r.lease["id"], "s", r.decision.target, r.decision.item_status in CLOSED)
                for r in done])
        completed = {pid: await decisions.complete_if_done(self.db, pid)
                     for pid, done in by_project.items() if any(r.decision.decided for r in done)}
        self.events.emit_many([
            (r.lease["project_id"], "submitted",
             {"user_id": user_id, "item_id": r.lease["item_id"], "key": r.lease["item_key"],
              "item_status": r.decision.item_status,
              "decided": r.decision.decided, "agreement": r.decision.agreement,
              "target": r.decision.target}) for _, r in recorded])
        return completed

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

    # -- reviewers and owners ---------------------------------------------------------

    async def review_page(self, pa: ProjectAccess, after: int, limit: int) -> dict[str, Any]:
        pid = pa.row["id"]
        rows, by_item = await review.waiting(self.db, pid, after, limit)
        items = [self._in_review(pa, r, by_item[r["id"]]) for r in rows]
        return {"items": items, "next_after": items[-1]["id"] if len(items) == limit else None}

    async def review_item(self, pa: ProjectAccess, iid: int) -> dict[str, Any]:
        """One item (in review or not) as review shows it."""
        row, annotations = await review.one(self.db, pa.row["id"], iid)
        # Why, for one item only: a mask's reason decodes every tile of every labeler (a quarter
        # of a second for a 2048-pixel image), so it runs off the event loop, and the queue's
        # pages (up to 500 items, refreshed while reviewers work) leave it out.
        reason = await asyncio.to_thread(review.why, pa.row, annotations)
        # Whose live documents a reviewer can watch: labelers at work as well as those done.
        return {**self._in_review(pa, row, annotations), "reason": reason,
                "labelers": await labelers(self.db, iid)}

    @staticmethod
    def _in_review(pa: ProjectAccess, row: asyncpg.Record, annotations: list[dict[str, Any]],
                   ) -> dict[str, Any]:
        return {**item_json(row), "agreement": row["agreement"], "annotations": annotations,
                "final_document": final_document(pa.row["id"], row["id"])}

    async def decide(self, pa: ProjectAccess, iid: int, annotation: dict[str, Any] | None,
                     seen: dict[int, int] | None, user_id: int) -> dict[str, Any]:
        """A person's final label: the body's, or the final document (once it holds what the
        reviewer's copy had, `seen`)."""
        pid = pa.row["id"]
        key = await review.require_item(self.db, pid, iid)
        final = await documents.snapshot(
            self.rooms, final_document(pid, iid), pa.row["task_type"],
            await self.label_ids.of(self.db, pa.row), given=annotation, seen=seen,
            origin="human", author=str(user_id))
        await review.record_decision(self.db, pid, iid, final, user_id)
        completed = await decisions.complete_if_done(self.db, pid)  # after the commit
        await self.dispatcher.close(pid, iid)
        self.events.emit(pid, "decided", item_id=iid, key=key, by=user_id, how="owner")
        return {"item_id": iid, "status": "labeled", "final": final, "decided_by": "owner",
                "project_completed": completed}

    async def reopen(self, pa: ProjectAccess, iid: int, user_id: int) -> dict[str, Any]:
        """Send a decided item back to labeling."""
        pid = pa.row["id"]
        low, high, _ = consensus_plan(pa.row)
        done = await review.reopen(self.db, pid, iid, low)
        await self.dispatcher.reopen(pid, iid, done.priority, done.target)
        self.events.emit(pid, "reopened", item_id=iid, key=done.key, by=user_id)
        return {"item_id": iid, "status": done.status, "target": done.target, "max": high}
