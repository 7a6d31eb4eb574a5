"""Binding a project to its datastore, pattern and refresh schedule."""

from __future__ import annotations

from typing import Any

from .. import dataset_binding, projects
from ..errors import Conflict
from ..roles import Role
from ..routing import Call, Endpoint

_UPDATE = """
UPDATE projects SET dataset = $2, refresh = $3, updated_at = now() WHERE id = $1
"""


async def put_dataset(call: Call) -> dict[str, Any]:
    body: dataset_binding.DatasetBody = call.body
    pid = call.path_int("pid")
    binding = await dataset_binding.validate(call.services.settings, body)
    async with call.services.db.acquire() as conn, conn.transaction():
        await conn.execute(projects.LOCK, pid)
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        old = pa.row["dataset"]
        if pa.started and (
            old is None or dataset_binding.identity(old) != dataset_binding.identity(binding)
        ):
            raise Conflict(
                "the dataset binding cannot change once the project has started; "
                "only refresh settings and credentials can",
                code="immutable_field",
                details={"field": "dataset"},
            )
        await conn.execute(_UPDATE, pid, binding, body.refresh.model_dump())
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        return {"project": projects.to_json(pa)}


ENDPOINTS = [
    Endpoint("PUT", "/api/v1/projects/{pid:int}/dataset", put_dataset,
             "Bind the datastore, file pattern and refresh schedule (owners)",
             body=dataset_binding.DatasetBody, tag="data", errors=(401, 403, 404, 409, 422)),
]
