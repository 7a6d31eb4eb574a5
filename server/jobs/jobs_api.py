"""Jobs: follow one (status, progress, outcome), list a project's, cancel one."""

from __future__ import annotations

import shutil
from typing import Any

import asyncpg

from server.accounts.roles import Role
from server.errors import Conflict, Unprocessable
from server.jobs import store
from server.jobs.runner import files_dir
from server.projects import projects
from server.routing import Call, Endpoint

_STATUSES = ("queued", "running", "done", "failed", "cancelled")


async def _job(call: Call) -> asyncpg.Record:
    """The job named in the path, if the caller owns its project (404 otherwise)."""
    row = await store.get(call.services.db, call.path_int("jid"))
    await projects.access(call.services.db, call.me, row["project_id"], Role.OWNER)
    return row


async def get_job(call: Call) -> dict[str, Any]:
    return {"job": store.job_json(await _job(call))}


async def list_jobs(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    await projects.access(call.services.db, call.me, pid, Role.OWNER)
    status = call.request.query_params.get("status") or None
    if status is not None and status not in _STATUSES:
        raise Unprocessable(f"status must be one of {', '.join(_STATUSES)}",
                            details=[{"loc": ["query", "status"]}])
    limit, offset = call.page(default=50, most=500)
    return {"jobs": await store.page(call.services.db, pid, status, limit, offset)}


async def cancel_job(call: Call) -> dict[str, Any]:
    """Cancel a queued job at once, or ask a running one to stop (what it did so far is
    rolled back); a finished job is left as it is (409)."""
    row = await _job(call)
    cancelled = await store.cancel(call.services.db, row["id"])
    if cancelled is None:
        raise Conflict(f"the job is already {row['status']}", code="job_finished",
                       details={"status": row["status"]})
    if cancelled["status"] == "cancelled":
        shutil.rmtree(files_dir(call.services.settings, row["id"]), ignore_errors=True)
        call.services.work.events.emit(row["project_id"], "job", job_id=row["id"], job_kind=row["kind"],
                                       status="cancelled", done=row["done"], total=row["total"])
    return {"job": store.job_json(cancelled)}


ENDPOINTS = [
    Endpoint("GET", "/api/v1/jobs/{jid:int}", get_job,
             "One job (a binding's registration, a refresh, an import): status, progress, "
             "result or error (owners)", tag="jobs", errors=(401, 403, 404)),
    Endpoint("GET", "/api/v1/projects/{pid:int}/jobs", list_jobs,
             "The project's jobs, newest first; `status` filters (owners)",
             tag="jobs", errors=(401, 403, 404, 422)),
    Endpoint("POST", "/api/v1/jobs/{jid:int}/cancel", cancel_job,
             "Cancel a queued job, or stop a running one with nothing it did kept (owners)",
             tag="jobs", errors=(401, 403, 404, 409)),
]
