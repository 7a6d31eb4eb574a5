"""Projects: create with every setting, read, edit within the rules, delete, run state."""

from __future__ import annotations

from typing import Any

import asyncpg

from server.accounts.roles import Role
from server.errors import Conflict
from server.live.access_watch import announce
from server.projects import label_store as labels
from server.projects import project as projects
from server.projects.instructions import render
from server.projects.label_tree import flatten
from server.projects.project_settings import (
    Consensus,
    Instructions,
    MlAssist,
    ProjectCreate,
    ProjectPatch,
    check_compatible,
    merge,
    project_name_key,
)
from server.routing import Call, Endpoint

# initializing -> running <-> paused -> completed; `completed` is reached when every
# item is decided, never by a request.
TRANSITIONS = {
    "start": ({"initializing"}, "running"),
    "pause": ({"running"}, "paused"),
    "resume": ({"paused"}, "running"),
}


async def _reserve_name(conn: asyncpg.Connection, name: str, project_id: int) -> None:
    try:
        await conn.execute(projects.RESERVE_NAME, project_name_key(name), project_id)
    except asyncpg.UniqueViolationError:
        raise Conflict(
            f"the project name '{name}' is taken (names stay taken even after deletion)",
            code="name_taken",
            details={"field": "name"},
        ) from None


async def _reply(conn: asyncpg.Connection | asyncpg.Pool, call: Call, pid: int) -> dict[str, Any]:
    pa = await projects.access(conn, call.me, pid, Role.LABELER)
    counts = {r["status"]: r["n"] for r in await conn.fetch(projects.ITEM_COUNTS, pid)}
    return {
        "project": {**projects.to_json(pa), "items": {"total": sum(counts.values()), **counts}},
        "labels": await labels.read_tree(conn, pid),
    }


async def insert_project(conn: asyncpg.Connection, owner_id: int, body: ProjectCreate) -> int:
    """Create a project, its labels and its first owner; call inside a transaction."""
    check_compatible(body.task_type, body.consensus, body.ml_assist)
    flat = flatten(body.labels)
    url = str(body.instructions.url) if body.instructions.url else None
    pid: int = await conn.fetchval(
        projects.INSERT, body.name, body.media_type, body.task_type,
        body.instructions.text, render(body.instructions.text), url,
        body.consensus.model_dump(), body.ml_assist.model_dump(), owner_id,
    )
    await _reserve_name(conn, body.name, pid)
    await conn.execute(projects.ADD_MEMBER, pid, owner_id, "owner")
    await labels.apply_tree(conn, pid, flat)
    return pid


async def create(call: Call) -> dict[str, Any]:
    async with call.services.db.acquire() as conn, conn.transaction():
        pid = await insert_project(conn, call.me.id, call.body)
        return await _reply(conn, call, pid)


async def list_projects(call: Call) -> dict[str, Any]:
    limit, offset = call.page()
    rows = await call.services.db.fetch(
        projects.SELECT_VISIBLE, call.me.id, call.me.is_admin, limit, offset
    )
    out = []
    for row in rows:
        role = Role.parse(row["role"]) if row["role"] else Role.OWNER
        out.append(projects.to_json(projects.ProjectAccess(row, role, row["role"] is not None)))
    return {"projects": out}


async def get_one(call: Call) -> dict[str, Any]:
    return await _reply(call.services.db, call, call.path_int("pid"))


def _frozen(field: str, status: str) -> Conflict:
    return Conflict(
        f"{field} cannot change once the project has started (status: {status})",
        code="immutable_field",
        details={"field": field},
    )


async def patch(call: Call) -> dict[str, Any]:
    body: ProjectPatch = call.body
    pid = call.path_int("pid")
    sent = body.model_fields_set
    async with call.services.db.acquire() as conn, conn.transaction():
        await conn.execute(projects.LOCK, pid)
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        row = pa.row
        task_type = body.task_type if body.task_type is not None else row["task_type"]
        consensus = (
            merge(Consensus, pa.setting("consensus"), body.consensus, "consensus")
            if body.consensus is not None else Consensus.model_validate(pa.setting("consensus"))
        )
        ml = (
            merge(MlAssist, pa.setting("ml_assist"), body.ml_assist, "ml_assist")
            if body.ml_assist is not None else MlAssist.model_validate(pa.setting("ml_assist"))
        )
        if pa.started:
            # Re-sending an unchanged value is fine (forms send everything); changing is not.
            changed = {
                "task_type": task_type != row["task_type"],
                "media_type": body.media_type is not None and body.media_type != row["media_type"],
                "consensus": consensus.model_dump() != pa.setting("consensus"),
            }
            for field in projects.FROZEN_AFTER_START:
                if changed.get(field):
                    raise _frozen(field, row["status"])
        check_compatible(task_type, consensus, ml)
        instructions = Instructions.model_validate(
            {"text": row["instructions_text"], "url": row["instructions_url"]}
        )
        if body.instructions is not None:
            instructions = merge(
                Instructions, instructions.model_dump(mode="json"), body.instructions,
                "instructions",
            )
        if "name" in sent and body.name is not None and (
            project_name_key(body.name) != project_name_key(row["name"])
        ):
            await _reserve_name(conn, body.name, pid)
        await conn.execute(
            """
            UPDATE projects SET name = $2, media_type = $3, task_type = $4,
                instructions_text = $5, instructions_html = $6, instructions_url = $7,
                consensus = $8, ml_assist = $9, updated_at = now()
            WHERE id = $1
            """,
            pid, body.name or row["name"], body.media_type or row["media_type"], task_type,
            instructions.text, render(instructions.text),
            str(instructions.url) if instructions.url else None,
            consensus.model_dump(), ml.model_dump(),
        )
        reply = await _reply(conn, call, pid)
    if consensus.model_dump() != pa.setting("consensus"):
        # Who may write the final document depends on it; open sockets are checked again.
        await announce(call.request, project=pid)
    return reply


async def delete(call: Call) -> None:
    pid = call.path_int("pid")
    async with call.services.db.acquire() as conn, conn.transaction():
        await projects.access(conn, call.me, pid, Role.OWNER)
        await conn.execute(projects.SOFT_DELETE, pid)
    await announce(call.request, project=pid)


async def _transition(call: Call, action: str) -> dict[str, Any]:
    pid = call.path_int("pid")
    allowed_from, target = TRANSITIONS[action]
    async with call.services.db.acquire() as conn, conn.transaction():
        await conn.execute(projects.LOCK, pid)
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        status = pa.row["status"]
        if status not in allowed_from:
            raise Conflict(
                f"cannot {action} a project that is {status}",
                code="invalid_transition",
                details={"status": status, "action": action},
            )
        if action == "start":
            missing = []
            if pa.row["label_count"] == 0:
                missing.append("labels")
            if pa.row["dataset"] is None:
                missing.append("dataset")
            if missing:
                raise Conflict(
                    "a project needs " + " and ".join(missing) + " before it can start",
                    code="not_ready",
                    details={"missing": missing},
                )
        await conn.execute(projects.SET_STATUS, pid, target)
        return await _reply(conn, call, pid)


async def start(call: Call) -> dict[str, Any]:
    return await _transition(call, "start")


async def pause(call: Call) -> dict[str, Any]:
    return await _transition(call, "pause")


async def resume(call: Call) -> dict[str, Any]:
    return await _transition(call, "resume")


_P = "/api/v1/projects/{pid:int}"
ENDPOINTS = [
    Endpoint("GET", "/api/v1/projects", list_projects, "Projects I can see", tag="projects",
             errors=(401,)),
    Endpoint("POST", "/api/v1/projects", create, "Create a project with all its settings",
             body=ProjectCreate, status=201, tag="projects", errors=(401, 403, 409, 422)),
    Endpoint("GET", _P, get_one, "A project, its settings and label tree", tag="projects",
             errors=(401, 404)),
    Endpoint("PATCH", _P, patch, "Change project settings (owners)", body=ProjectPatch,
             tag="projects", errors=(401, 403, 404, 409, 422)),
    Endpoint("DELETE", _P, delete, "Delete a project; its name stays taken (owners)",
             status=204, tag="projects", errors=(401, 403, 404)),
    Endpoint("POST", _P + "/start", start, "Start labeling (owners)", tag="projects",
             errors=(401, 403, 404, 409)),
    Endpoint("POST", _P + "/pause", pause, "Pause labeling (owners)", tag="projects",
             errors=(401, 403, 404, 409)),
    Endpoint("POST", _P + "/resume", resume, "Resume labeling (owners)", tag="projects",
             errors=(401, 403, 404, 409)),
]
