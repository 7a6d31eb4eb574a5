"""Instance users: admins create and manage accounts; everyone edits their own profile."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from server.accounts import users
from server.accounts.passwords import GivenPassword, NewPassword
from server.accounts.users import User, UserCreate
from server.errors import Conflict, NotFound
from server.live.access_watch import announce
from server.routing import Access, Call, Endpoint
from server.validation import Strict


class UserPatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    is_admin: bool | None = None
    is_active: bool | None = None
    password: NewPassword | None = None


class MePatch(Strict):
    # A new password comes with the current one.
    model_config = ConfigDict(json_schema_extra={"dependentRequired": {"password": ["current_password"]}})

    name: str | None = Field(None, min_length=1, max_length=200)
    password: NewPassword | None = None
    # Not null when given (the schema says string; leaving it out is how to not give it).
    current_password: GivenPassword | None = Field(None, json_schema_extra={"type": "string"})


async def create(call: Call) -> dict[str, Any]:
    body: UserCreate = call.body
    user = await users.create_user(
        call.services.db, email=body.email, password=body.password, name=body.name,
        is_admin=body.is_admin,
    )
    return {"user": user.to_json()}


async def list_users(call: Call) -> dict[str, Any]:
    limit, offset = call.page()
    return {"users": await users.overview(call.services.db, limit, offset)}


async def _update(call: Call, user_id: int, name: str | None, is_admin: bool | None,
                  is_active: bool | None, password: str | None) -> User:
    user = await users.update_user(call.services.db, user_id, name=name, is_admin=is_admin,
                                   is_active=is_active, password=password)
    if is_active is not None or is_admin is not None or password is not None:
        # Open sockets follow: closed with their sessions, or for the rights they lost.
        await announce(call.request, user=user_id)
    return user


async def patch(call: Call) -> dict[str, Any]:
    body: UserPatch = call.body
    user_id = call.path_int("uid")
    if user_id == call.me.id and (body.is_admin is False or body.is_active is False):
        raise Conflict("admins cannot remove their own admin flag or deactivate themselves",
                       code="self_demotion")
    user = await _update(call, user_id, body.name, body.is_admin, body.is_active, body.password)
    return {"user": user.to_json()}


async def patch_me(call: Call) -> dict[str, Any]:
    body: MePatch = call.body
    if body.password is not None:
        await users.confirm_password(call.services.db, call.me, body.current_password)
    user = await _update(call, call.me.id, body.name, None, None, body.password)
    return {"user": user.to_json()}


async def get_one(call: Call) -> dict[str, Any]:
    user = await users.get_user(call.services.db, call.path_int("uid"))
    if user is None:
        raise NotFound(f"user {call.path_int('uid')} not found")
    return {"user": user.to_json()}


ENDPOINTS = [
    Endpoint("PATCH", "/api/v1/me", patch_me, "Change my name or password", body=MePatch,
             tag="auth", errors=(401, 403, 422)),
    Endpoint("POST", "/api/v1/users", create, "Create a user (instance admins)",
             access=Access.ADMIN, body=UserCreate, status=201, tag="users",
             errors=(401, 403, 409, 422)),
    Endpoint("GET", "/api/v1/users", list_users,
             "List users with their projects and open links (instance admins)",
             access=Access.ADMIN, tag="users", errors=(401, 403)),
    Endpoint("GET", "/api/v1/users/{uid:int}", get_one, "One user (instance admins)",
             access=Access.ADMIN, tag="users", errors=(401, 403, 404)),
    Endpoint("PATCH", "/api/v1/users/{uid:int}", patch,
             "Rename, (de)activate, promote or reset a user's password (instance admins)",
             access=Access.ADMIN, body=UserPatch, tag="users", errors=(401, 403, 404, 409, 422)),
]
