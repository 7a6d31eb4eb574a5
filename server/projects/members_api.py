"""Project members and their roles, managed by owners and instance admins."""

from __future__ import annotations

from typing import Any, Literal

import asyncpg
from pydantic import ConfigDict, Field, model_validator

from server.accounts.roles import Role
from server.accounts.users import SELECT_BY_EMAIL, get_user
from server.errors import Conflict, NotFound
from server.live.access_watch import announce
from server.projects import project as projects
from server.routing import Call, Endpoint
from server.validation import Strict

_LIST = """
SELECT u.id, u.name, u.email, m.role, m.created_at FROM memberships m
JOIN users u ON u.id = m.user_id WHERE m.project_id = $1 ORDER BY m.created_at, u.id
"""
_ROLE_OF = "SELECT role FROM memberships WHERE project_id = $1 AND user_id = $2"
_OWNERS = "SELECT count(*) FROM memberships WHERE project_id = $1 AND role = 'owner'"
_REMOVE = "DELETE FROM memberships WHERE project_id = $1 AND user_id = $2"


class MemberPut(Strict):
    """Add a member or change their role: a new member by email, a member by id or email
    (instance admins may name any user by id). Exactly one of the two, not null."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["user_id"]},
                                                           {"required": ["email"]}]})

    user_id: int | None = Field(None, json_schema_extra={"type": "integer"})
    email: str | None = Field(None, max_length=254, json_schema_extra={"type": "string"})
    role: Literal["owner", "reviewer", "labeler"]

    @model_validator(mode="before")
    @classmethod
    def _one_of(cls, data: Any) -> Any:
        given = [k for k in ("user_id", "email") if isinstance(data, dict) and k in data]
        if len(given) != 1 or data[given[0]] is None:
            raise ValueError("give exactly one of user_id or email")
        return data


def _json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "user": {"id": row["id"], "name": row["name"], "email": row["email"]},
        "role": row["role"],
        "added_at": row["created_at"].isoformat(),
    }


async def _last_owner_guard(conn: asyncpg.Connection, pid: int, uid: int, new_role: str | None) -> None:
    current = await conn.fetchval(_ROLE_OF, pid, uid)
    if current == "owner" and new_role != "owner" and await conn.fetchval(_OWNERS, pid) <= 1:
        raise Conflict("a project must keep at least one owner", code="last_owner")


async def list_members(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    await projects.access(call.services.db, call.me, pid, Role.REVIEWER)
    return {"members": [_json(r) for r in await call.services.db.fetch(_LIST, pid)]}


async def put_member(call: Call) -> dict[str, Any]:
    body: MemberPut = call.body
    pid = call.path_int("pid")
    async with call.services.db.acquire() as conn, conn.transaction():
        await conn.execute(projects.LOCK, pid)
        await projects.access(conn, call.me, pid, Role.OWNER)
        if body.user_id is not None:
            # By id, owners name only their own project's members (to change a role); new
            # people are added by email. Otherwise any id would answer with that account's
            # name and email. Admins see every account anyway.
            user = await get_user(conn, body.user_id)
            known = user is not None and user.is_active and (
                call.me.is_admin or await conn.fetchval(_ROLE_OF, pid, user.id) is not None)
            if user is None or not known:
                raise NotFound(f"no member with id {body.user_id} in this project; "
                               "add people by email", code="unknown_user")
            uid = user.id
        else:
            row = await conn.fetchrow(SELECT_BY_EMAIL, body.email)
            if row is None or not row["is_active"]:
                raise NotFound(f"no active user with email {body.email}", code="unknown_user")
            uid = row["id"]
        await _last_owner_guard(conn, pid, uid, body.role)
        await conn.execute(projects.ADD_MEMBER, pid, uid, body.role)
        members = [_json(r) for r in await conn.fetch(_LIST, pid)]
    # A lower role may no longer allow the member's open sockets.
    await announce(call.request, user=uid)
    return {"members": members}


async def remove_member(call: Call) -> None:
    pid, uid = call.path_int("pid"), call.path_int("uid")
    async with call.services.db.acquire() as conn, conn.transaction():
        await conn.execute(projects.LOCK, pid)
        await projects.access(conn, call.me, pid, Role.OWNER)
        if await conn.fetchval(_ROLE_OF, pid, uid) is None:
            raise NotFound(f"user {uid} is not a member of project {pid}")
        await _last_owner_guard(conn, pid, uid, None)
        await conn.execute(_REMOVE, pid, uid)
    await announce(call.request, user=uid)


_P = "/api/v1/projects/{pid:int}/members"
ENDPOINTS = [
    Endpoint("GET", _P, list_members, "Members and their roles (reviewers and owners)",
             tag="members", errors=(401, 403, 404)),
    Endpoint("PUT", _P, put_member, "Add a member or change a role (owners)", body=MemberPut,
             tag="members", errors=(401, 403, 404, 409, 422)),
    Endpoint("DELETE", _P + "/{uid:int}", remove_member, "Remove a member (owners)",
             status=204, tag="members", errors=(401, 403, 404, 409)),
]
