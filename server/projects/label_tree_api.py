"""The label tree: every member reads it; owners edit it, also after the start."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from server.accounts.roles import Role
from server.projects import label_store as labels
from server.projects import projects
from server.projects.label_tree import LabelNode, flatten
from server.routing import Call, Endpoint
from server.validation import Strict


class LabelsPut(Strict):
    """The whole edited tree: nodes with `id` are kept (renamed, moved, reordered), nodes
    without are added, and stored labels left out are deleted (unless already used)."""

    labels: list[LabelNode] = Field(default_factory=list)


async def get_labels(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    await projects.access(call.services.db, call.me, pid, Role.LABELER)
    return {"labels": await labels.read_tree(call.services.db, pid)}


async def patch_labels(call: Call) -> dict[str, Any]:
    body: LabelsPut = call.body
    pid = call.path_int("pid")
    flat = flatten(body.labels)
    async with call.services.db.acquire() as conn, conn.transaction():
        await projects.lock(conn, pid)
        projects.refuse_archived(await projects.access(conn, call.me, pid, Role.OWNER))
        await labels.apply_tree(conn, pid, flat)
        return {"labels": await labels.read_tree(conn, pid)}


_P = "/api/v1/projects/{pid:int}/labels"
ENDPOINTS = [
    Endpoint("GET", _P, get_labels, "The label tree with paths and hotkeys", tag="labels",
             errors=(401, 404)),
    Endpoint("PATCH", _P, patch_labels, "Edit the label tree (owners)", body=LabelsPut,
             tag="labels", errors=(401, 403, 404, 409, 422)),
]
