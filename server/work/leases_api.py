"""Asking for work and handing it back: next, submit, skip, extend, release. Each handler
checks who is asking and makes one call into the work service (service.py)."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from pydantic import Field, StringConstraints, model_validator

from server.accounts.roles import Role
from server.errors import NotFound
from server.projects import projects
from server.routing import Call, Endpoint
from server.validation import Strict
from server.work import documents
from server.work.leases import lease_of
from server.work.service import Submission

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


class FromDocument(Strict):
    """Where a submitted annotation comes from: the live document (browsers, with the state
    vector of their copy) or plain JSON (scripts without a live document), never both."""

    annotation: dict[str, Any] | None = Field(
        None, description="plain JSON annotation, for clients without a live document; it is "
                          "written into the document. Omitted = the live document is taken")
    state_vector: Annotated[str, StringConstraints(min_length=1, max_length=65536)] | None = Field(
        None, description="base64 of the client's Yjs state vector of the live document "
                          "(`Y.encodeStateVector`): the server waits until its copy has every edit "
                          "the client had, then takes the document (409 document_behind after 5 s)")

    @model_validator(mode="after")
    def _one_source(self) -> FromDocument:
        if self.annotation is not None and self.state_vector is not None:
            raise ValueError("send either annotation (plain JSON) or state_vector (live document), "
                             "not both")
        return self

    def seen(self) -> dict[int, int] | None:
        return documents.state_vector(self.state_vector) if self.state_vector is not None else None


class SubmitBody(FromDocument):
    duration_ms: int | None = Field(None, ge=0, le=7 * 24 * 3600 * 1000)


async def next_tasks(call: Call) -> dict[str, Any]:
    body: NextBody = call.body
    pa = await projects.access(call.services.db, call.me, call.path_int("pid"), Role.LABELER)
    return {"leases": await call.services.work.hand_out(pa, call.me.id, body.count, body.holding)}


async def release(call: Call) -> dict[str, Any]:
    body: ReleaseBody = call.body
    return await call.services.work.give_back(call.me.id, body.lease_ids, body.after_s)


async def _own_lease(call: Call) -> tuple[asyncpg.Record, projects.ProjectAccess]:
    """The caller's lease named in the path, and their access to its project."""
    lease = await lease_of(call.services.db, call.me.id, call.request.path_params["lid"])
    if lease is None:
        raise NotFound("lease not found")
    return lease, await projects.access(call.services.db, call.me, lease["project_id"], Role.LABELER)


async def extend(call: Call) -> dict[str, Any]:
    lease, _ = await _own_lease(call)
    return await call.services.work.extend(lease)


async def skip(call: Call) -> dict[str, Any]:
    lease, _ = await _own_lease(call)
    return await call.services.work.skip(lease)


async def submit(call: Call) -> dict[str, Any]:
    body: SubmitBody = call.body
    seen = body.seen()
    lease, pa = await _own_lease(call)
    return await call.services.work.submit(
        pa, lease, Submission(body.annotation, seen, body.duration_ms), call.me.id)


ENDPOINTS = [
    Endpoint("POST", "/api/v1/projects/{pid:int}/tasks/next", next_tasks,
             "Lease the next item(s) to label", body=NextBody, tag="work",
             errors=(401, 404, 409, 422, 503)),
    Endpoint("POST", "/api/v1/leases/{lid}/submit", submit,
             "Submit the labeler's annotation (the live document, or the body's plain JSON)",
             body=SubmitBody, tag="work", errors=(401, 404, 409, 422, 503)),
    Endpoint("POST", "/api/v1/leases/{lid}/skip", skip, "Give the item back; it is not offered again",
             tag="work", errors=(401, 404, 409)),
    Endpoint("POST", "/api/v1/leases/release", release,
             "Give back leases without submitting (leaving the page, a new grid size, signing out); "
             "the items may come back to you", body=ReleaseBody, tag="work", errors=(401, 422)),
    Endpoint("POST", "/api/v1/leases/{lid}/extend", extend, "Keep a lease alive", tag="work",
             errors=(401, 404, 409)),
]
