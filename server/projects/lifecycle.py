"""A project's life: created with its settings and labels, renamed, edited within the rules,
started, paused and resumed."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from server.errors import Conflict
from server.projects import label_store as labels
from server.projects import members, projects
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
from server.projects.projects import ProjectAccess

# initializing -> running <-> paused -> completed; `completed` is reached when every
# item is decided, never by a request.
TRANSITIONS = {
    "start": ({"initializing"}, "running"),
    "pause": ({"running"}, "paused"),
    "resume": ({"paused"}, "running"),
}


async def reserve_name(conn: asyncpg.Connection, name: str, project_id: int) -> None:
    """Claim the name for the project; a name once used is never given out again."""
    try:
        await conn.execute(projects.RESERVE_NAME, project_name_key(name), project_id)
    except asyncpg.UniqueViolationError:
        raise Conflict(
            f"the project name '{name}' is taken (names stay taken even after deletion)",
            code="name_taken",
            details={"field": "name"},
        ) from None


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
    await reserve_name(conn, body.name, pid)
    await members.add_member(conn, pid, owner_id, "owner")
    await labels.apply_tree(conn, pid, flat)
    return pid


@dataclass(frozen=True)
class _Settings:
    """The settings a PATCH leads to: what it sent merged onto what is stored."""

    task_type: str
    consensus: Consensus
    ml_assist: MlAssist


def _merged(pa: ProjectAccess, body: ProjectPatch) -> _Settings:
    task_type = body.task_type if body.task_type is not None else pa.row["task_type"]
    consensus = (
        merge(Consensus, pa.setting("consensus"), body.consensus, "consensus")
        if body.consensus is not None else Consensus.model_validate(pa.setting("consensus"))
    )
    ml = (
        merge(MlAssist, pa.setting("ml_assist"), body.ml_assist, "ml_assist")
        if body.ml_assist is not None else MlAssist.model_validate(pa.setting("ml_assist"))
    )
    return _Settings(task_type, consensus, ml)


def _frozen(field: str, status: str) -> Conflict:
    return Conflict(
        f"{field} cannot change once the project has started (status: {status})",
        code="immutable_field",
        details={"field": field},
    )


def _refuse_frozen_changes(pa: ProjectAccess, body: ProjectPatch, new: _Settings) -> None:
    """Once started, the settings in FROZEN_AFTER_START keep their value."""
    if not pa.started:
        return
    row = pa.row
    # Re-sending an unchanged value is fine (forms send everything); changing is not.
    changed = {
        "task_type": new.task_type != row["task_type"],
        "media_type": body.media_type is not None and body.media_type != row["media_type"],
        "consensus": new.consensus.model_dump() != pa.setting("consensus"),
    }
    for field in projects.FROZEN_AFTER_START:
        if changed.get(field):
            raise _frozen(field, row["status"])


def _instructions(pa: ProjectAccess, body: ProjectPatch) -> Instructions:
    stored = Instructions.model_validate(
        {"text": pa.row["instructions_text"], "url": pa.row["instructions_url"]}
    )
    if body.instructions is None:
        return stored
    return merge(Instructions, stored.model_dump(mode="json"), body.instructions, "instructions")


async def _rename(conn: asyncpg.Connection, pa: ProjectAccess, body: ProjectPatch) -> None:
    """Reserve a new name; one that differs only in case or spacing is already ours."""
    if "name" in body.model_fields_set and body.name is not None and (
        project_name_key(body.name) != project_name_key(pa.row["name"])
    ):
        await reserve_name(conn, body.name, pa.id)


async def change_settings(conn: asyncpg.Connection, pa: ProjectAccess, body: ProjectPatch) -> bool:
    """Apply an owner's PATCH; call inside a transaction holding the project lock.

    Returns whether consensus changed, which changes who may write the final document.
    """
    projects.refuse_archived(pa)
    row = pa.row
    new = _merged(pa, body)
    _refuse_frozen_changes(pa, body, new)
    check_compatible(new.task_type, new.consensus, new.ml_assist)
    instructions = _instructions(pa, body)
    await _rename(conn, pa, body)
    await conn.execute(
        projects.UPDATE_SETTINGS,
        pa.id, body.name or row["name"], body.media_type or row["media_type"], new.task_type,
        instructions.text, render(instructions.text),
        str(instructions.url) if instructions.url else None,
        new.consensus.model_dump(), new.ml_assist.model_dump(),
    )
    return bool(new.consensus.model_dump() != pa.setting("consensus"))


async def transition(conn: asyncpg.Connection, pa: ProjectAccess, action: str) -> None:
    """Start, pause or resume the project (an action of TRANSITIONS); call inside a
    transaction holding the project lock."""
    allowed_from, target = TRANSITIONS[action]
    if action != "pause":
        projects.refuse_archived(pa)
    status = pa.row["status"]
    if status not in allowed_from:
        raise Conflict(
            f"cannot {action} a project that is {status}",
            code="invalid_transition",
            details={"status": status, "action": action},
        )
    if action == "start":
        _refuse_unready(pa)
    await projects.set_status(conn, pa.id, target)


def _refuse_unready(pa: ProjectAccess) -> None:
    """A project starts only with labels to give and a dataset to label."""
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
