"""ML assistance of a project: its phase, model version, metrics and threshold; train now."""

from __future__ import annotations

from typing import Any, Literal

from server.accounts.roles import Role
from server.ml import assist
from server.projects import projects
from server.routing import Call, Endpoint
from server.validation import Strict


class MlAction(Strict):
    action: Literal["train"]


def _service(call: Call) -> Any:
    return call.services.models


async def get_ml(call: Call) -> dict[str, Any]:
    pa = await projects.access(call.services.db, call.me, call.path_int("pid"), Role.REVIEWER)
    return {"ml": await assist.status_json(call.services, _service(call), pa.row)}


async def post_ml(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    pa = await projects.access(call.services.db, call.me, pid, Role.OWNER)
    version = await assist.train_now(call.services.db, pa.row)
    return {"queued": version, "ml": await assist.status_json(call.services, _service(call), pa.row)}


ENDPOINTS = [
    Endpoint("GET", "/api/v1/projects/{pid:int}/ml", get_ml,
             "ML assistance: phase, model version, metrics, threshold, prelabel acceptance, service status",
             tag="ml", errors=(401, 403, 404)),
    Endpoint("POST", "/api/v1/projects/{pid:int}/ml", post_ml,
             "Start training a new model version now (owners)", body=MlAction, status=202, tag="ml",
             errors=(401, 403, 404, 409, 422)),
]
