"""Asking for work and handing it back: next, submit, skip, extend, release. Each handler
checks who is asking and makes one call into the work service (service.py)."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from pydantic import Field, StringConstraints, model_validator

from server.errors import ApiError, NotFound, field_error
from server.projects import projects
from server.routing import Call, Endpoint
from server.validation import Strict
from server.work import documents
from server.work.leases import asking_for_work, leases_of
from server.work.service import Asked, Submission

# Two grid pages of nine (the one on screen and the one leased ahead), with room to spare.
MAX_PAGE = 64
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


class LeaseSubmission(SubmitBody):
    lease_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class PageSubmitBody(Strict):
    submissions: list[LeaseSubmission] = Field(
        min_length=1, max_length=MAX_PAGE,
        description="one entry per lease (a page of a grid, or any leases of the caller's), each "
                    "with its annotation or its live document's state vector")

    @model_validator(mode="after")
    def _distinct(self) -> PageSubmitBody:
        ids = [s.lease_id for s in self.submissions]
        if len(set(ids)) != len(ids):
            raise ValueError("each lease may appear once")
        return self


async def next_tasks(call: Call) -> dict[str, Any]:
    body: NextBody = call.body
    pa, own = await asking_for_work(call.services.db, call.me, call.path_int("pid"))
    return {"leases": await call.services.work.hand_out(pa, call.me.id, body.count, body.holding, own)}


async def release(call: Call) -> dict[str, Any]:
    body: ReleaseBody = call.body
    return await call.services.work.give_back(call.me.id, body.lease_ids, body.after_s)


async def own_lease(call: Call) -> tuple[asyncpg.Record, projects.ProjectAccess]:
    """The caller's lease named in the path, and their access to its project."""
    lid = call.request.path_params["lid"]
    mine = (await leases_of(call.services.db, call.me, [lid])).get(lid)
    if mine is None:
        raise NotFound("lease not found")
    lease, access = mine
    if isinstance(access, ApiError):
        raise access
    return lease, access


async def extend(call: Call) -> dict[str, Any]:
    lease, _ = await own_lease(call)
    return await call.services.work.extend(lease)


async def skip(call: Call) -> dict[str, Any]:
    lease, _ = await own_lease(call)
    return await call.services.work.skip(lease)


async def submit(call: Call) -> dict[str, Any]:
    body: SubmitBody = call.body
    seen = body.seen()
    lease, pa = await own_lease(call)
    submission = Submission(lease["id"], body.annotation, seen, body.duration_ms)
    answer = (await call.services.work.submit(call.me.id, [Asked(submission, lease, pa)]))[0]
    if isinstance(answer, ApiError):
        raise answer
    return answer


async def submit_page(call: Call) -> dict[str, Any]:
    """Several leases in one request and one commit; each lease's outcome on its own."""
    body: PageSubmitBody = call.body
    wanted = [Submission(s.lease_id, s.annotation, _seen(s, n), s.duration_ms)
              for n, s in enumerate(body.submissions)]
    mine = await leases_of(call.services.db, call.me, [s.lease_id for s in wanted])
    answers: dict[str, dict[str, Any] | ApiError] = {}
    asked: list[Asked] = []
    for s in wanted:
        got = mine.get(s.lease_id)
        if got is None:
            answers[s.lease_id] = NotFound("lease not found")
        elif isinstance(got[1], ApiError):
            answers[s.lease_id] = got[1]
        else:
            asked.append(Asked(s, got[0], got[1]))
    for a, answer in zip(asked, await call.services.work.submit(call.me.id, asked), strict=True):
        answers[a.lease["id"]] = answer
    results = [_result(s.lease_id, answers[s.lease_id]) for s in wanted]
    failed = sum(1 for r in results if not r["ok"])
    return {"results": results, "submitted": len(results) - failed, "failed": failed}


def _seen(submission: LeaseSubmission, n: int) -> dict[int, int] | None:
    try:
        return submission.seen()
    except ApiError:
        raise field_error(f"submissions.{n}.state_vector",
                          "not a base64-encoded Yjs state vector") from None


def _result(lease_id: str, answer: dict[str, Any] | ApiError) -> dict[str, Any]:
    if isinstance(answer, ApiError):
        return {"lease_id": lease_id, "ok": False, "status": answer.status, **answer.body()}
    return {"ok": True, **answer}


ENDPOINTS = [
    Endpoint("POST", "/api/v1/projects/{pid:int}/tasks/next", next_tasks,
             "Lease the next item(s) to label", body=NextBody, tag="work",
             errors=(401, 404, 409, 422, 503)),
    Endpoint("POST", "/api/v1/leases/{lid}/submit", submit,
             "Submit the labeler's annotation (the live document, or the body's plain JSON)",
             body=SubmitBody, tag="work", errors=(401, 404, 409, 422, 503)),
    Endpoint("POST", "/api/v1/leases/submit", submit_page,
             "Submit several leases at once (a page of a grid) in one transaction; each lease's "
             "outcome is reported on its own (ok, or its error's status and code)",
             body=PageSubmitBody, tag="work", errors=(401, 422, 503)),
    Endpoint("POST", "/api/v1/leases/{lid}/skip", skip, "Give the item back; it is not offered again",
             tag="work", errors=(401, 404, 409)),
    Endpoint("POST", "/api/v1/leases/release", release,
             "Give back leases without submitting (leaving the page, a new grid size, signing out); "
             "the items may come back to you", body=ReleaseBody, tag="work", errors=(401, 422)),
    Endpoint("POST", "/api/v1/leases/{lid}/extend", extend, "Keep a lease alive", tag="work",
             errors=(401, 404, 409)),
]
