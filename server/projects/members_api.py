"""Project members and their roles, managed by owners and instance admins."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from server.accounts.roles import Role
from server.errors import field_error
from server.live.access_watch import announce
from server.projects import members, projects
from server.routing import Call, Endpoint
from server.validation import Strict


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


async def list_members(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    await projects.access(call.services.db, call.me, pid, Role.REVIEWER)
    return {"members": await members.list_members(call.services.db, pid)}


async def candidates(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    query = call.request.query_params.get("q", "").strip()
    if len(query) > 254:
        raise field_error("q", "must be at most 254 characters")
    await projects.access(call.services.db, call.me, pid, Role.OWNER)
    limit = call.query_int("limit", 10, 1, 50)
    return {"users": await members.candidates(call.services.db, call.me, pid, query, limit)}


async def put_member(call: Call) -> dict[str, Any]:
    body: MemberPut = call.body
    pid = call.path_int("pid")
    async with call.services.db.acquire() as conn, conn.transaction():
        await projects.lock(conn, pid)
        await projects.access(conn, call.me, pid, Role.OWNER)
        if body.user_id is not None:
            uid = await members.user_by_id(conn, call.me, pid, body.user_id)
        else:
            assert body.email is not None  # MemberPut holds exactly one of the two
            uid = await members.user_by_email(conn, body.email)
        await members.set_role(conn, pid, uid, body.role)
        listed = await members.list_members(conn, pid)
    # A lower role may no longer allow the member's open sockets.
    await announce(call.request, user=uid)
    return {"members": listed}


async def remove_member(call: Call) -> None:
    pid, uid = call.path_int("pid"), call.path_int("uid")
    async with call.services.db.acquire() as conn, conn.transaction():
        await projects.lock(conn, pid)
        await projects.access(conn, call.me, pid, Role.OWNER)
        await members.remove_member(conn, pid, uid)
    await announce(call.request, user=uid)


_P = "/api/v1/projects/{pid:int}/members"
ENDPOINTS = [
    Endpoint("GET", _P, list_members, "Members and their roles (reviewers and owners)",
             tag="members", errors=(401, 403, 404)),
    Endpoint("GET", _P + "/candidates", candidates,
             "People an owner may add, matching `q` on name or email: everyone for instance "
             "admins; for others the members of projects whose member list they can read, "
             "plus an exact email match (owners)",
             tag="members", errors=(401, 403, 404, 422)),
    Endpoint("PUT", _P, put_member, "Add a member or change a role (owners)", body=MemberPut,
             tag="members", errors=(401, 403, 404, 409, 422)),
    Endpoint("DELETE", _P + "/{uid:int}", remove_member, "Remove a member (owners)",
             status=204, tag="members", errors=(401, 403, 404, 409)),
]
