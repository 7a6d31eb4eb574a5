"""The data manager's actions on a selection of items: given ids, or every item matching a
listing's filter. The handler checks who is asking and makes one call (item_actions.py, or
the export queue for an export of the selection)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import Field

from server.accounts.roles import Role
from server.data import item_query
from server.exports import jobs
from server.exports.writer import Format
from server.live.access_watch import announce
from server.projects import projects
from server.routing import Call, Endpoint
from server.validation import INT64_MAX, Strict
from server.work import item_actions
from server.work.plan import consensus_plan

ItemId = Annotated[int, Field(ge=1, le=INT64_MAX)]
Status = Literal["unlabeled", "in_progress", "labeled", "needs_review", "missing", "skipped"]
Agreement = Literal["consensus", "single", "reviewed", "imported", "disagreement", "raised"]


class SelectionFilter(Strict):
    """The same filter as the item listing's query string."""

    status: list[Status] = Field(default_factory=list, max_length=6)
    labeler: int | None = Field(None, ge=1, le=INT64_MAX)
    agreement: Agreement | None = None
    needs_review: bool | None = None
    has_prelabel: bool | None = None
    name: str | None = Field(None, max_length=item_query.MAX_NAME)

    def item_filter(self) -> item_query.ItemFilter:
        return item_query.ItemFilter(
            statuses=tuple(dict.fromkeys(self.status)), labeler=self.labeler,
            agreement=self.agreement, needs_review=self.needs_review,
            has_prelabel=self.has_prelabel, name=self.name or None)


class ExportOptions(Strict):
    format: Format
    needs_review: bool = Field(False, description="also export selected items waiting for review")
    raw_annotations: bool = Field(False, description="every labeler's own annotation beside the final one")


class ActionBody(Strict):
    action: Literal["reopen", "review", "skip", "delete", "export"]
    # The selection is every item matching `filter` ({} matches every item: acting on a whole
    # project is said explicitly), narrowed to `ids` when they are given.
    filter: SelectionFilter = Field(description="the items matching this filter ({}: all items)")
    ids: list[ItemId] | None = Field(None, min_length=1, max_length=item_query.MAX_IDS,
                                  description="only these of them (the items ticked)")
    export: ExportOptions = Field(default_factory=lambda: ExportOptions(format="coco"),
                                  description="the export's format and options (the export action "
                                              "only; COCO by default)")


async def act(call: Call) -> dict[str, Any]:
    body: ActionBody = call.body
    pid = call.path_int("pid")
    # Exporting is a reviewer's right (as on the export page); changing items an owner's.
    pa = await projects.access(call.services.db, call.me, pid,
                               Role.REVIEWER if body.action == "export" else Role.OWNER)
    low = consensus_plan(pa.row)[0]
    f = body.filter.item_filter()
    if body.ids is not None:
        f = replace(f, ids=tuple(sorted(set(body.ids))))
    if body.action == "export":
        selection = {"statuses": list(f.statuses), "labeler": f.labeler, "agreement": f.agreement,
                     "needs_review": f.needs_review, "has_prelabel": f.has_prelabel,
                     "name": f.name, "ids": list(f.ids), "min": low}
        filters = {"needs_review": body.export.needs_review,
                   "raw_annotations": body.export.raw_annotations, "selection": selection}
        export = await jobs.queue(call.services.db, pa.row, body.export.format, filters, None,
                                  call.me.id)
        return {"action": "export", "export": export}
    work = call.services.work
    outcome = await item_actions.apply(call.services.db, work.dispatcher, pid, body.action, f, low)
    if outcome.changed and body.action != "reopen":
        # Documents open on these items: closed (deleted) or read-only to their labelers
        # (out of labeling) on every node before this answers.
        await announce(call.request, project=pid)
    if outcome.changed and body.action == "delete":
        # Edits accepted just before the delete reach Postgres within a flush interval of
        # their room, after the delete's transaction: once the sockets are held, wait for
        # those writes and delete again, so nothing of a deleted item stays stored.
        await asyncio.sleep(2 * call.services.rooms.limits.flush_interval_s)
        await item_actions.delete_documents(call.services.db, pid, list(outcome.changed))
    if outcome.changed:
        shown = list(outcome.changed.items())[:20]
        work.events.emit(pid, "items_changed", action=body.action, by=call.me.id,
                         count=len(outcome.changed),
                         items=[{"id": iid, "key": key} for iid, key in shown])
    return outcome.json()


ENDPOINTS = [
    Endpoint("POST", "/api/v1/projects/{pid:int}/items/actions", act,
             "Act on the items matching a filter (narrowed to ids): reopen, review, skip, delete "
             "(owners), export (reviewers, owners)", body=ActionBody, tag="items",
             errors=(401, 403, 404, 409, 422)),
]
