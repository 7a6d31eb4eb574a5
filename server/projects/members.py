"""Project members: the SQL that owns the `memberships` table and the rules on roles."""

from __future__ import annotations

from typing import Any

import asyncpg

from server.accounts.users import User, get_user, row_by_email
from server.errors import Conflict, NotFound

# Adding someone who is already a member changes their role.
ADD = """
INSERT INTO memberships (project_id, user_id, role) VALUES ($1, $2, $3)
ON CONFLICT (project_id, user_id) DO UPDATE SET role = EXCLUDED.role
"""
LIST = """
SELECT u.id, u.name, u.email, u.is_active, m.role, m.created_at FROM memberships m
JOIN users u ON u.id = m.user_id WHERE m.project_id = $1 ORDER BY m.created_at, u.id
"""
ROLE_OF = "SELECT role FROM memberships WHERE project_id = $1 AND user_id = $2"
OWNERS = "SELECT count(*) FROM memberships WHERE project_id = $1 AND role = 'owner'"
REMOVE = "DELETE FROM memberships WHERE project_id = $1 AND user_id = $2"
# People an owner may pick when adding members to project $1, matching $3 (a LIKE pattern
# on name or email): active accounts not in the project yet that the caller ($2) can
# already see — an instance admin ($4) everyone; anyone else the members of the projects
# whose member list they can read (reviewer or owner there) — plus whoever has exactly the
# email typed ($5), which the caller knows already. Exact matches first.
CANDIDATES = """
SELECT u.id, u.name, u.email FROM users u
WHERE u.is_active
  AND NOT EXISTS (SELECT 1 FROM memberships x WHERE x.project_id = $1 AND x.user_id = u.id)
  AND (lower(u.email) = lower($5) OR (
       (lower(u.email) LIKE $3 OR lower(u.name) LIKE $3)
       AND ($4 OR EXISTS (
           SELECT 1 FROM memberships mine
           JOIN projects p ON p.id = mine.project_id AND p.deleted_at IS NULL
           JOIN memberships theirs ON theirs.project_id = mine.project_id
           WHERE mine.user_id = $2 AND mine.role IN ('owner', 'reviewer')
             AND theirs.user_id = u.id))))
ORDER BY lower(u.email) = lower($5) DESC, lower(u.name), u.id
LIMIT $6
"""


def member_json(row: asyncpg.Record) -> dict[str, Any]:
    """A member as other members see them: who, in which role, since when."""
    return {
        "user": {"id": row["id"], "name": row["name"], "email": row["email"],
                 "is_active": row["is_active"]},
        "role": row["role"],
        "added_at": row["created_at"].isoformat(),
    }


async def list_members(db: asyncpg.Pool | asyncpg.Connection, project_id: int) -> list[dict[str, Any]]:
    """Every member with their role, in the order they joined."""
    return [member_json(r) for r in await db.fetch(LIST, project_id)]


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its wildcards taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def candidates(db: asyncpg.Pool | asyncpg.Connection, me: User, project_id: int,
                     query: str, limit: int = 10) -> list[dict[str, Any]]:
    """Who an owner may add to the project, matching what they typed (see CANDIDATES)."""
    rows = await db.fetch(CANDIDATES, project_id, me.id, _like(query), me.is_admin,
                          query.strip(), limit)
    return [{"id": r["id"], "name": r["name"], "email": r["email"]} for r in rows]


async def add_member(conn: asyncpg.Connection, project_id: int, user_id: int, role: str) -> None:
    """Make the user a member with `role` (or change their role), without any checks."""
    await conn.execute(ADD, project_id, user_id, role)


async def user_by_id(conn: asyncpg.Connection, me: User, project_id: int, user_id: int) -> int:
    """The active user an owner names by id: one of the project's members (to change a
    role), or anyone for an instance admin. New people are added by email; otherwise any
    id would answer with that account's name and email. Admins see every account anyway."""
    user = await get_user(conn, user_id)
    known = user is not None and user.is_active and (
        me.is_admin or await conn.fetchval(ROLE_OF, project_id, user.id) is not None)
    if user is None or not known:
        raise NotFound(f"no member with id {user_id} in this project; "
                       "add people by email", code="unknown_user")
    return user.id


async def user_by_email(conn: asyncpg.Connection, email: str) -> int:
    """The active user with this email (matched ignoring case)."""
    row = await row_by_email(conn, email)
    if row is None or not row["is_active"]:
        raise NotFound(f"no active user with email {email}", code="unknown_user")
    user_id: int = row["id"]
    return user_id


async def _keep_an_owner(conn: asyncpg.Connection, project_id: int, user_id: int,
                         new_role: str | None) -> None:
    """Refuse to demote or remove the project's last owner (`new_role` None: removal)."""
    current = await conn.fetchval(ROLE_OF, project_id, user_id)
    if current == "owner" and new_role != "owner" and await conn.fetchval(OWNERS, project_id) <= 1:
        raise Conflict("a project must keep at least one owner", code="last_owner")


async def set_role(conn: asyncpg.Connection, project_id: int, user_id: int, role: str) -> None:
    """Add a member or change their role; call inside a transaction holding the project lock."""
    await _keep_an_owner(conn, project_id, user_id, role)
    await add_member(conn, project_id, user_id, role)


async def remove_member(conn: asyncpg.Connection, project_id: int, user_id: int) -> None:
    """Remove a member; call inside a transaction holding the project lock."""
    if await conn.fetchval(ROLE_OF, project_id, user_id) is None:
        raise NotFound(f"user {user_id} is not a member of project {project_id}")
    await _keep_an_owner(conn, project_id, user_id, None)
    await conn.execute(REMOVE, project_id, user_id)
