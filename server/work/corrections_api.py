"""A labeler going back: their submissions of this session, and correcting one of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from collab.names import document_name
from server.accounts.roles import Role
from server.errors import Conflict
from server.projects import projects
from server.routing import Call, Endpoint
from server.work import corrections, documents
from server.work.leases_api import SubmitBody, own_lease

# API tokens have no sign-in session: their history is the last day's submissions.
TOKEN_HISTORY = timedelta(days=1)


async def my_history(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    await projects.access(call.services.db, call.me, pid, Role.LABELER)
    limit, _ = call.page(default=50, most=200)
    since = await corrections.session_start(call.services.db, call.identity.session_hash)
    if since is None:
        since = datetime.now(UTC) - TOKEN_HISTORY
    entries = await corrections.history(call.services.db, pid, call.me.id, since, limit)
    for e in entries:
        e["document"] = document_name(pid, e["item"]["id"], call.me.id)
    return {"items": entries, "since": since.isoformat()}


async def correct(call: Call) -> dict[str, Any]:
    body: SubmitBody = call.body
    seen = body.seen()
    lease, access = await own_lease(call)
    if lease["state"] != "submitted":
        raise Conflict("only a submitted item can be corrected; submit it first",
                       code="not_submitted", details={"state": lease["state"]})
    services = call.services
    project = access.row
    room = document_name(project["id"], lease["item_id"], call.me.id)
    annotation = await documents.snapshot(
        services.rooms, room, project["task_type"], await services.work.label_ids.of(services.db, project),
        given=body.annotation, seen=seen, origin="api" if body.annotation is not None else "human",
        author=str(call.me.id))
    done = await corrections.record(services.db, lease["id"], annotation, body.duration_ms)
    services.work.events.emit(project["id"], "corrected", user_id=call.me.id, item_id=done.item_id)
    return {"lease_id": lease["id"], "annotation_id": done.annotation_id, "item_id": done.item_id,
            "item_status": done.item_status, "annotation": annotation}


ENDPOINTS = [
    Endpoint("GET", "/api/v1/projects/{pid:int}/tasks/history", my_history,
             "The caller's submissions in this project during their sign-in session (API tokens: "
             "the last day), newest first, each saying whether it may still be corrected",
             tag="work", errors=(401, 404, 422)),
    Endpoint("POST", "/api/v1/leases/{lid}/correct", correct,
             "Replace what was submitted under this lease with the live document (or the body's "
             "plain JSON), while the item is not yet decided (409 item_closed after)",
             body=SubmitBody, tag="work", errors=(401, 404, 409, 422, 503)),
]
