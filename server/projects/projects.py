"""Projects: the SQL that owns the `projects` table, access checks and the JSON shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from server.accounts.roles import Role
from server.accounts.users import User
from server.data import binding as dataset_binding
from server.errors import Conflict, Forbidden, NotFound

_COLUMNS = """
p.id, p.name, p.media_type, p.task_type, p.status, p.instructions_text,
p.instructions_html, p.instructions_url, p.consensus, p.ml_assist, p.dataset, p.refresh,
p.last_refresh_at, p.ingest, p.created_by, p.created_at, p.updated_at, p.started_at,
p.archived_at
"""
# A project (`p`) as the caller sees it: with their membership's role (`m`, joined on
# their id) and its number of labels. The rows `access` and `granted` judge.
ACCESS_COLUMNS = f"""{_COLUMNS}, m.role,
       (SELECT count(*) FROM labels l WHERE l.project_id = p.id) AS label_count"""
SELECT_ONE = f"""
SELECT {ACCESS_COLUMNS}
FROM projects p
LEFT JOIN memberships m ON m.project_id = p.id AND m.user_id = $2
WHERE p.id = $1 AND p.deleted_at IS NULL
"""
# Admins see every project; everyone else sees the projects they are members of. Archived
# projects ($5 true) are listed apart, and only to their owners (and admins).
SELECT_VISIBLE = f"""
SELECT {ACCESS_COLUMNS}
FROM projects p
LEFT JOIN memberships m ON m.project_id = p.id AND m.user_id = $1
WHERE p.deleted_at IS NULL AND CASE WHEN $5::boolean
    THEN p.archived_at IS NOT NULL AND (m.role = 'owner' OR $2)
    ELSE p.archived_at IS NULL AND (m.role IS NOT NULL OR $2) END
ORDER BY p.id DESC
LIMIT $3 OFFSET $4
"""
LOCK = "SELECT id FROM projects WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"
INSERT = """
INSERT INTO projects (name, media_type, task_type, instructions_text, instructions_html,
                      instructions_url, consensus, ml_assist, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id
"""
RESERVE_NAME = "INSERT INTO project_names (name_key, project_id) VALUES ($1, $2)"
UPDATE_SETTINGS = """
UPDATE projects SET name = $2, media_type = $3, task_type = $4,
    instructions_text = $5, instructions_html = $6, instructions_url = $7,
    consensus = $8, ml_assist = $9, updated_at = now()
WHERE id = $1
"""
TOUCH = "UPDATE projects SET updated_at = now() WHERE id = $1"
NAME = "SELECT name FROM projects WHERE id = $1"
ITEM_COUNTS = "SELECT status, count(*) AS n FROM items WHERE project_id = $1 GROUP BY status"
SOFT_DELETE = "UPDATE projects SET deleted_at = now(), updated_at = now() WHERE id = $1"
# Archiving stops the handing out of work (a running project is paused) and hides the
# project; unarchiving leaves it paused, for its owner to resume.
ARCHIVE = """
UPDATE projects SET archived_at = now(), updated_at = now(),
       status = CASE WHEN status = 'running' THEN 'paused' ELSE status END
WHERE id = $1
"""
UNARCHIVE = "UPDATE projects SET archived_at = NULL, updated_at = now() WHERE id = $1"
SET_STATUS = """
UPDATE projects SET status = $2, updated_at = now(),
       started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, now()) ELSE started_at END
WHERE id = $1
"""

# Settings that can no longer change once a project leaves `initializing`.
FROZEN_AFTER_START = ("media_type", "task_type", "consensus", "dataset")


@dataclass(frozen=True)
class ProjectAccess:
    """A project row together with the caller's effective role in it."""

    row: asyncpg.Record
    role: Role
    is_member: bool

    @property
    def id(self) -> int:
        value: int = self.row["id"]
        return value

    @property
    def archived(self) -> bool:
        return self.row["archived_at"] is not None

    @property
    def started(self) -> bool:
        return bool(self.row["status"] != "initializing")

    def setting(self, name: str) -> dict[str, Any]:
        value: dict[str, Any] = self.row[name]
        return value


async def lock(conn: asyncpg.Connection, project_id: int) -> None:
    """Hold the project row until the transaction ends, so edits of one project queue up."""
    await conn.execute(LOCK, project_id)


async def access(
    db: asyncpg.Pool | asyncpg.Connection, user: User, project_id: int, need: Role
) -> ProjectAccess:
    """Load a project for `user`: 404 unless a member (or admin), 403 below `need`."""
    return granted(await db.fetchrow(SELECT_ONE, project_id, user.id), user, project_id, need)


def granted(row: asyncpg.Record | None, user: User, project_id: int, need: Role) -> ProjectAccess:
    """The rules of `access` on a row read with the columns of SELECT_ONE (`role` being
    the user's membership): 404 unless a member (or admin), 403 below `need`."""
    if row is None or (row["role"] is None and not user.is_admin):
        raise NotFound(f"project {project_id} not found")
    role = Role.OWNER if user.is_admin else Role.parse(row["role"])
    if role < need:
        raise Forbidden(f"this needs the {need.label} role in project {project_id}")
    return ProjectAccess(row, role, is_member=row["role"] is not None)


def refuse_archived(pa: ProjectAccess) -> None:
    """An archived project is read-only: a 409 for anything that would change it."""
    if pa.archived:
        raise Conflict("this project is archived and read-only; an owner can unarchive it "
                       "from the project page", code="project_archived")


async def visible(
    db: asyncpg.Pool | asyncpg.Connection, user: User, limit: int, offset: int,
    archived: bool = False,
) -> list[ProjectAccess]:
    """One page of the projects `user` may see, newest first: the everyday ones, or the
    archived ones they own (`archived`)."""
    rows = await db.fetch(SELECT_VISIBLE, user.id, user.is_admin, limit, offset, archived)
    out = []
    for row in rows:
        # No membership row means an admin who sees it as an owner would.
        role = Role.parse(row["role"]) if row["role"] else Role.OWNER
        out.append(ProjectAccess(row, role, row["role"] is not None))
    return out


async def item_counts(db: asyncpg.Pool | asyncpg.Connection, project_id: int) -> dict[str, int]:
    """How many items the project has in each status (statuses with none are left out)."""
    return {r["status"]: r["n"] for r in await db.fetch(ITEM_COUNTS, project_id)}


async def name_of(db: asyncpg.Pool | asyncpg.Connection, project_id: int) -> str:
    """The project's name, also once it is deleted."""
    name: str = await db.fetchval(NAME, project_id)
    return name


async def set_status(conn: asyncpg.Connection, project_id: int, status: str) -> None:
    """Move the project to `status`; the first start is remembered in `started_at`."""
    await conn.execute(SET_STATUS, project_id, status)


async def soft_delete(conn: asyncpg.Connection, project_id: int) -> None:
    """Hide the project; its rows stay (and its name stays taken)."""
    await conn.execute(SOFT_DELETE, project_id)


async def archive(conn: asyncpg.Connection, project_id: int) -> None:
    """Archive the project (pausing it if it runs); call holding the project lock."""
    await conn.execute(ARCHIVE, project_id)


async def unarchive(conn: asyncpg.Connection, project_id: int) -> None:
    """Bring an archived project back to the everyday lists; call holding the project lock."""
    await conn.execute(UNARCHIVE, project_id)


async def touch(conn: asyncpg.Connection, project_id: int) -> None:
    """Record that something of the project changed now."""
    await conn.execute(TOUCH, project_id)


def editable(status: str, archived: bool = False) -> dict[str, bool]:
    """Which settings the owner may still change, for the settings screen (none while the
    project is archived)."""
    started = status != "initializing"
    fields = ("name", "labels", "instructions", "ml_assist", "refresh", *FROZEN_AFTER_START)
    return {f: not archived and not (started and f in FROZEN_AFTER_START) for f in fields}


def to_json(pa: ProjectAccess) -> dict[str, Any]:
    row = pa.row
    return {
        "id": row["id"],
        "name": row["name"],
        "media_type": row["media_type"],
        "task_type": row["task_type"],
        "status": row["status"],
        "role": pa.role.label,
        "is_member": pa.is_member,
        "instructions": {
            "text": row["instructions_text"],
            "html": row["instructions_html"],
            "url": row["instructions_url"],
        },
        "consensus": pa.setting("consensus"),
        "ml_assist": pa.setting("ml_assist"),
        "dataset": dataset_binding.public(row["dataset"]),
        "refresh": {
            **pa.setting("refresh"),
            "last_refresh_at": row["last_refresh_at"].isoformat() if row["last_refresh_at"] else None,
        },
        "ingest": row["ingest"],
        "label_count": row["label_count"],
        "editable": editable(row["status"], pa.archived),
        "archived": pa.archived,
        "archived_at": row["archived_at"].isoformat() if row["archived_at"] else None,
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "started_at": row["started_at"].isoformat() if row["started_at"] else None,
    }
