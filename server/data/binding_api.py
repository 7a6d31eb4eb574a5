"""Binding a project to its datastore, and refreshing it on demand."""

from __future__ import annotations

from typing import Any

from server.accounts.roles import Role
from server.data import binding as dataset_binding
from server.data import dataset_check
from server.data.datastores.base import DatastoreError
from server.data.errors import DatastoreUnavailable
from server.errors import Conflict, field_error
from server.projects import projects
from server.routing import Call, Endpoint
from server.work.queue_state import forget_queue


async def put_dataset(call: Call) -> dict[str, Any]:
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
        try:
            result = await dataset_binding.save(conn, settings, pid, binding, body.refresh,
                                                same=same)
        except DatastoreError as exc:
            raise field_error("datastore", f"cannot read the datastore: {exc}",
                              code="datastore_error") from None
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        return {"project": projects.to_json(pa),
                "ingest": result.to_json() if result else None}


async def refresh(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    settings = call.services.settings
    async with call.services.db.bulk() as conn, conn.transaction():
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        projects.refuse_archived(pa)
        binding = pa.row["dataset"]
        if binding is None:
            raise Conflict("bind a dataset before refreshing it", code="no_dataset")
        try:
            result = await dataset_binding.refresh_now(conn, settings, pid, binding)
        except DatastoreError as exc:
            raise DatastoreUnavailable(f"cannot read the datastore: {exc}") from None
    if result.changed_items:
        await forget_queue(call.services.redis, settings.redis_prefix, pid)
    return {"ingest": result.to_json()}


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
             "Bind the datastore, file pattern and refresh schedule, and register its files "
             "(owners; a folder on the server: instance admins)",
             body=dataset_binding.DatasetBody, tag="data", errors=(401, 403, 404, 409, 422)),
    Endpoint("POST", "/api/v1/projects/{pid:int}/refresh", refresh,
             "List the datastore now: register new files, mark vanished ones missing (owners)",
             tag="data", errors=(401, 403, 404, 409, 502)),
]
