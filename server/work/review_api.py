"""Review: items that need a person's decision, deciding them, and re-opening items. Each
handler checks who is asking and makes one call into the work service (service.py)."""

from __future__ import annotations

from typing import Any

from server.accounts.roles import Role
from server.projects import projects
from server.routing import Call, Endpoint
from server.work.leases_api import FromDocument


# The final label: plain JSON, or the final document (as far as `state_vector` goes, or as
# it is now when neither is sent).
class DecideBody(FromDocument):
    pass


async def review_queue(call: Call) -> dict[str, Any]:
    pa = await projects.access(call.services.db, call.me, call.path_int("pid"), Role.REVIEWER)
    after = call.after()
    limit, _ = call.page(default=50, most=500)
    return await call.services.work.review_page(pa, after, limit)


async def review_item(call: Call) -> dict[str, Any]:
    pa = await projects.access(call.services.db, call.me, call.path_int("pid"), Role.REVIEWER)
    return {"item": await call.services.work.review_item(pa, call.path_int("iid"))}


async def decide(call: Call) -> dict[str, Any]:
    body: DecideBody = call.body
    pa = await projects.access(call.services.db, call.me, call.path_int("pid"), Role.REVIEWER)
    projects.refuse_archived(pa)
    seen = body.seen()
    return await call.services.work.decide(pa, call.path_int("iid"), body.annotation, seen, call.me.id)


async def reopen(call: Call) -> dict[str, Any]:
    pa = await projects.access(call.services.db, call.me, call.path_int("pid"), Role.OWNER)
    projects.refuse_archived(pa)
    return await call.services.work.reopen(pa, call.path_int("iid"), call.me.id)


_P = "/api/v1/projects/{pid:int}"
ENDPOINTS = [
    Endpoint("GET", _P + "/review", review_queue,
             "Items that need review, with every labeler's annotation (reviewers, owners)",
             tag="review", errors=(401, 403, 404, 422)),
    Endpoint("GET", _P + "/review/{iid:int}", review_item,
             "One item as review shows it: every labeler's submitted annotation and why they do or "
             "do not agree (reviewers, owners)", tag="review", errors=(401, 403, 404)),
    Endpoint("POST", _P + "/items/{iid:int}/decide", decide,
             "Decide an item's final label (reviewers, owners)", body=DecideBody, tag="review",
             errors=(401, 403, 404, 409, 422)),
    Endpoint("POST", _P + "/items/{iid:int}/reopen", reopen,
             "Send a decided item back to labeling (owners)", tag="review",
             errors=(401, 403, 404, 409)),
]
