"""Binding a project to its datastore, and refreshing it on demand."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from server.accounts.roles import Role
from server.data import binding as dataset_binding
from server.data import dataset_check, ingest_jobs
from server.errors import Conflict
from server.projects import projects
from server.routing import Call, Endpoint


async def put_dataset(call: Call) -> JSONResponse:
    """Store the binding; when it binds other data, queue the job that registers its files
    (202 with the job; 200 when only the refresh settings or a credential changed)."""
    body: dataset_binding.DatasetBody = call.body
    pid = call.path_int("pid")
    settings = call.services.settings
    async with call.services.db.bulk() as conn, conn.transaction():
        await conn.execute(projects.LOCK, pid)
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        projects.refuse_archived(pa)
        old = pa.row["dataset"]
        # Who may bind what is settled before the path or URL is looked at, so a refusal
        # says nothing about which folders exist.
        dataset_binding.check_local_folder(call.me.is_admin, body, old)
        binding = await dataset_binding.validate(settings, body)
        same = dataset_binding.check_rebind(old, binding, pa.started)
        await dataset_binding.check_readable(settings, pid, binding)
        changed = await dataset_binding.save(conn, pid, binding, body.refresh, same=same)
        job = await ingest_jobs.queue_bind(conn, pid, binding, call.me.id) if changed else None
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        return JSONResponse({"project": projects.to_json(pa), "job": job},
                            status_code=202 if job else 200)


async def refresh(call: Call) -> dict[str, Any]:
    """Queue a refresh (202): the job lists the datastore again. A refresh of the project
    that has not started yet answers instead of a second one."""
    pid = call.path_int("pid")
    async with call.services.db.acquire() as conn, conn.transaction():
        await conn.execute(projects.LOCK, pid)
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        projects.refuse_archived(pa)
        binding = pa.row["dataset"]
        if binding is None:
            raise Conflict("bind a dataset before refreshing it", code="no_dataset")
        return {"job": await ingest_jobs.queue_refresh(conn, pid, binding, call.me.id)}


async def check_new(call: Call) -> dict[str, Any]:
    """The dry run for a project not created yet (the wizard's Data step)."""
    body: dataset_binding.DatasetBody = call.body
    settings = call.services.settings
    dataset_binding.check_local_folder(call.me.is_admin, body, None)
    binding = await dataset_binding.validate(settings, body)
    result = await dataset_check.dry_run(settings, binding, None)
    return {"check": result.to_json()}


async def check_for_project(call: Call) -> dict[str, Any]:
    """The dry run of a new binding for an existing project, with the rules of its PUT."""
    body: dataset_binding.DatasetBody = call.body
    pid = call.path_int("pid")
    settings = call.services.settings
    pa = await projects.access(call.services.db, call.me, pid, Role.OWNER)
    old = pa.row["dataset"]
    dataset_binding.check_local_folder(call.me.is_admin, body, old)
    binding = await dataset_binding.validate(settings, body)
    dataset_binding.check_rebind(old, binding, pa.started)
    result = await dataset_check.dry_run(settings, binding, pid)
    return {"check": result.to_json()}


ENDPOINTS = [
    Endpoint("POST", "/api/v1/datasets/check", check_new,
             "Dry run of a dataset binding for a new project: check the datastore and pattern "
             "and count the files it would register, storing nothing (a folder on the "
             "server: instance admins)",
             body=dataset_binding.DatasetBody, tag="data", errors=(401, 403, 422)),
    Endpoint("POST", "/api/v1/projects/{pid:int}/dataset/check", check_for_project,
             "Dry run of PUT .../dataset: the same checks and the files it would register, "
             "storing nothing (owners)",
             body=dataset_binding.DatasetBody, tag="data", errors=(401, 403, 404, 409, 422)),
    Endpoint("PUT", "/api/v1/projects/{pid:int}/dataset", put_dataset,
             "Bind the datastore, file pattern and refresh schedule; when the data changes, "
             "202 with the job that registers its files (owners; a folder on the server: "
             "instance admins)",
             body=dataset_binding.DatasetBody, status=202, tag="data",
             errors=(401, 403, 404, 409, 422)),
    Endpoint("POST", "/api/v1/projects/{pid:int}/refresh", refresh,
             "Queue a refresh job: list the datastore again, register new files, mark "
             "vanished ones missing (owners; a refresh already waiting is answered instead)",
             status=202, tag="data", errors=(401, 403, 404, 409)),
]
