"""Projects: create with every setting, read, edit within the rules, delete, run state."""

from __future__ import annotations

from typing import Any

import asyncpg

from server.accounts.roles import Role
from server.data import binding as dataset_binding
from server.data import ingest_jobs
from server.errors import Conflict
from server.live.access_watch import announce
from server.projects import label_store as labels
from server.projects import lifecycle, projects
from server.projects.project_settings import ProjectCreate, ProjectPatch
from server.routing import Call, Endpoint
from server.validation import form_flag


async def _reply(conn: asyncpg.Connection | asyncpg.Pool, call: Call, pid: int) -> dict[str, Any]:
    pa = await projects.access(conn, call.me, pid, Role.LABELER)
    counts = await projects.item_counts(conn, pid)
    return {
        "project": {**projects.to_json(pa), "items": {"total": sum(counts.values()), **counts}},
        "labels": await labels.read_tree(conn, pid),
    }


async def create(call: Call) -> dict[str, Any]:
    body: ProjectCreate = call.body
    if body.dataset is None:
        async with call.services.db.acquire() as conn, conn.transaction():
            pid = await lifecycle.insert_project(conn, call.me.id, body)
            return await _reply(conn, call, pid)
    # Created and bound in one transaction: if the datastore cannot be read, no project is
    # left behind and the name stays free. Its files are registered by the job it queues.
    settings = call.services.settings
    dataset_binding.check_local_folder(call.me.is_admin, body.dataset, None)
    binding = await dataset_binding.validate(settings, body.dataset)
    await dataset_binding.check_readable(settings, None, binding)
    async with call.services.db.bulk() as conn, conn.transaction():
        pid = await lifecycle.insert_project(conn, call.me.id, body)
        await dataset_binding.save(conn, pid, binding, body.dataset.refresh, same=False)
        job = await ingest_jobs.queue_bind(conn, pid, binding, call.me.id)
        reply = await _reply(conn, call, pid)
        return {**reply, "job": job}


async def check(call: Call) -> dict[str, Any]:
    """Run every rule a create would (name free, label tree, settings that go together,
    the binding's folder, pattern and addresses), then undo it: nothing is kept."""
    body: ProjectCreate = call.body
    async with call.services.db.acquire() as conn:
        if body.dataset is not None:
            dataset_binding.check_local_folder(call.me.is_admin, body.dataset, None)
            await dataset_binding.validate(call.services.settings, body.dataset)
        tr = conn.transaction()
        await tr.start()
        try:
            await lifecycle.insert_project(conn, call.me.id, body)
        finally:
            await tr.rollback()
    return {"ok": True}


async def list_projects(call: Call) -> dict[str, Any]:
    limit, offset = call.page()
    archived = form_flag(call.request.query_params.get("archived", ""))
    visible = await projects.visible(call.services.db, call.me, limit, offset, archived)
    return {"projects": [projects.to_json(pa) for pa in visible]}


async def get_one(call: Call) -> dict[str, Any]:
    return await _reply(call.services.db, call, call.path_int("pid"))


async def patch(call: Call) -> dict[str, Any]:
    body: ProjectPatch = call.body
    pid = call.path_int("pid")
    async with call.services.db.acquire() as conn, conn.transaction():
        await projects.lock(conn, pid)
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        consensus_changed = await lifecycle.change_settings(conn, pa, body)
        reply = await _reply(conn, call, pid)
    if consensus_changed:
        # Who may write the final document depends on it; open sockets are checked again.
        await announce(call.request, project=pid)
    return reply


async def delete(call: Call) -> None:
    pid = call.path_int("pid")
    async with call.services.db.acquire() as conn, conn.transaction():
        await projects.access(conn, call.me, pid, Role.OWNER)
        await projects.soft_delete(conn, pid)
    await announce(call.request, project=pid)


async def archive(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    async with call.services.db.acquire() as conn, conn.transaction():
        await projects.lock(conn, pid)
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        if pa.archived:
            raise Conflict("this project is already archived", code="already_archived")
        await projects.archive(conn, pid)
        reply = await _reply(conn, call, pid)
    # Labelers' live documents follow the project's read-only state.
    await announce(call.request, project=pid)
    return reply


async def unarchive(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    async with call.services.db.acquire() as conn, conn.transaction():
        await projects.lock(conn, pid)
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        if not pa.archived:
            raise Conflict("this project is not archived", code="not_archived")
        await projects.unarchive(conn, pid)
        return await _reply(conn, call, pid)


async def _transition(call: Call, action: str) -> dict[str, Any]:
    pid = call.path_int("pid")
    async with call.services.db.acquire() as conn, conn.transaction():
        await projects.lock(conn, pid)
        pa = await projects.access(conn, call.me, pid, Role.OWNER)
        await lifecycle.transition(conn, pa, action)
        return await _reply(conn, call, pid)


async def start(call: Call) -> dict[str, Any]:
    return await _transition(call, "start")


async def pause(call: Call) -> dict[str, Any]:
    return await _transition(call, "pause")


async def resume(call: Call) -> dict[str, Any]:
    return await _transition(call, "resume")


_P = "/api/v1/projects/{pid:int}"
ENDPOINTS = [
    Endpoint("GET", "/api/v1/projects", list_projects,
             "Projects I can see (`archived=true`: the archived ones I own)", tag="projects",
             errors=(401, 422)),
    Endpoint("POST", "/api/v1/projects", create, "Create a project with all its settings",
             body=ProjectCreate, status=201, tag="projects", errors=(401, 403, 409, 422)),
    Endpoint("POST", "/api/v1/projects/check", check,
             "Check a create body against every rule of POST /api/v1/projects without "
             "creating anything (the wizard checks each step with it)",
             body=ProjectCreate, tag="projects", errors=(401, 403, 409, 422)),
    Endpoint("GET", _P, get_one, "A project, its settings and label tree", tag="projects",
             errors=(401, 404)),
    Endpoint("PATCH", _P, patch, "Change project settings (owners)", body=ProjectPatch,
             tag="projects", errors=(401, 403, 404, 409, 422)),
    Endpoint("DELETE", _P, delete, "Delete a project; its name stays taken (owners)",
             status=204, tag="projects", errors=(401, 403, 404)),
    Endpoint("POST", _P + "/archive", archive,
             "Archive: pause, hide from everyday lists, make read-only (owners)",
             tag="projects", errors=(401, 403, 404, 409)),
    Endpoint("POST", _P + "/unarchive", unarchive, "Undo an archive; the project stays paused "
             "(owners)", tag="projects", errors=(401, 403, 404, 409)),
    Endpoint("POST", _P + "/start", start, "Start labeling (owners)", tag="projects",
             errors=(401, 403, 404, 409)),
    Endpoint("POST", _P + "/pause", pause, "Pause labeling (owners)", tag="projects",
             errors=(401, 403, 404, 409)),
    Endpoint("POST", _P + "/resume", resume, "Resume labeling (owners)", tag="projects",
             errors=(401, 403, 404, 409)),
]
