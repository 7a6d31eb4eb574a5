"""Binding a project to its datastore, and refreshing it on demand."""

from __future__ import annotations

from typing import Any

from server.accounts.roles import Role
from server.accounts.users import User
from server.data import binding as dataset_binding
from server.data import ingest
from server.data.datastores.base import DatastoreError
from server.data.datastores.factory import open_datastore
from server.errors import ApiError, Conflict, Forbidden, field_error
from server.projects import project as projects
from server.routing import Call, Endpoint
from server.settings import Settings
from server.work.queue_state import forget_queue

_UPDATE = """
UPDATE projects SET dataset = $2, refresh = $3, updated_at = now() WHERE id = $1
"""
_CLEAR_ITEMS = "DELETE FROM items WHERE project_id = $1"


class DatastoreUnavailable(ApiError):
    status = 502
    code = "datastore_error"


async def _ingest(conn: Any, settings: Settings, pid: int, binding: dict[str, Any], *,
                  kind: str, detect_missing: bool) -> ingest.IngestResult:
    store = open_datastore(settings, pid, binding)
    try:
        return await ingest.ingest_binding(
            conn, pid, settings.max_items_per_project, store, binding["pattern"], kind=kind,
            detect_missing=detect_missing,
        )
    finally:
        await store.close()


def _check_local_folder(me: User, body: dataset_binding.DatasetBody,
                        old: dict[str, Any] | None) -> None:
    """Only instance admins bind folders on the server: a folder under the allowed roots may
    hold any team's images. An owner may still send the binding an admin made, unchanged,
    to edit its refresh settings."""
    store = body.datastore
    if me.is_admin or not isinstance(store, dataset_binding.LocalStore):
        return
    if old is not None and old["datastore"] == {"kind": "local", "path": store.path} \
            and old["pattern"] == body.pattern:
        return
    raise Forbidden(
        "only an instance admin can bind a folder on the server; upload the images or use "
        "an Azure Blob container, or ask an admin to bind the folder",
        code="local_folder_admin_only", details={"field": "datastore"},
    )


async def put_dataset(call: Call) -> dict[str, Any]:
    body: dataset_binding.DatasetBody = call.body
    pid = call.path_int("pid")
    settings = call.services.settings
    async with call.services.db.bulk() as conn, conn.transaction():
        await conn.execute(projects.LOCK, pid)
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        old = pa.row["dataset"]
        # Who may bind what is settled before the path or URL is looked at, so a refusal
        # says nothing about which folders exist.
        _check_local_folder(call.me, body, old)
        binding = await dataset_binding.validate(settings, body)
        same = old is not None and dataset_binding.identity(old) == dataset_binding.identity(binding)
        if pa.started and not same:
            raise Conflict(
                "the dataset binding cannot change once the project has started; "
                "only refresh settings and credentials can",
                code="immutable_field",
                details={"field": "dataset"},
            )
        await ingest.lock_project(conn, pid, wait=False)
        await conn.execute(_UPDATE, pid, binding, body.refresh.model_dump())
        result = None
        if not same:
            # A new binding before the start replaces whatever the old one brought in.
            await conn.execute(_CLEAR_ITEMS, pid)
            try:
                result = await _ingest(conn, settings, pid, binding, kind="bind",
                                       detect_missing=False)
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
        binding = pa.row["dataset"]
        if binding is None:
            raise Conflict("bind a dataset before refreshing it", code="no_dataset")
        await ingest.lock_project(conn, pid, wait=False)
        try:
            result = await _ingest(conn, settings, pid, binding, kind="refresh",
                                   detect_missing=True)
        except DatastoreError as exc:
            raise DatastoreUnavailable(f"cannot read the datastore: {exc}") from None
    if result.changed_items:
        await forget_queue(call.services.redis, settings.redis_prefix, pid)
    return {"ingest": result.to_json()}


ENDPOINTS = [
    Endpoint("PUT", "/api/v1/projects/{pid:int}/dataset", put_dataset,
             "Bind the datastore, file pattern and refresh schedule, and register its files "
             "(owners; a folder on the server: instance admins)",
             body=dataset_binding.DatasetBody, tag="data", errors=(401, 403, 404, 409, 422)),
    Endpoint("POST", "/api/v1/projects/{pid:int}/refresh", refresh,
             "List the datastore now: register new files, mark vanished ones missing (owners)",
             tag="data", errors=(401, 403, 404, 409, 502)),
]
