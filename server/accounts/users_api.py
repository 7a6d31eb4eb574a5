"""Instance users: admins create and manage accounts; everyone edits their own profile."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator

from server.accounts.passwords import GivenPassword, NewPassword, hash_password, verify_password
from server.accounts.users import (
    EMAIL_PATTERN,
    SELECT_ALL,
    SELECT_BY_EMAIL,
    User,
    create_user,
    get_user,
)
from server.errors import Conflict, Forbidden, NotFound, field_error
from server.live.access_watch import announce
from server.routing import Access, Call, Endpoint
from server.validation import Strict

_UPDATE = """
UPDATE users SET name = coalesce($2, name), is_admin = coalesce($3, is_admin),
                 is_active = coalesce($4, is_active),
                 password_hash = coalesce($5, password_hash)
WHERE id = $1
RETURNING id, email, name, is_admin, is_active, created_at
"""
_DROP_SESSIONS = "DELETE FROM sessions WHERE user_id = $1"


def check_email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        raise ValueError("not a valid email address")
    return value


class UserCreate(Strict):
    email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)
    password: NewPassword
    name: str = Field("", max_length=200)
    is_admin: bool = False

    _email = field_validator("email")(check_email)


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
    user = await create_user(
        call.services.db, email=body.email, password=body.password, name=body.name,
        is_admin=body.is_admin,
    )
    return {"user": user.to_json()}


async def list_users(call: Call) -> dict[str, Any]:
    limit, offset = call.page()
    rows = await call.services.db.fetch(SELECT_ALL, limit, offset)
    return {"users": [User.from_row(r).to_json() for r in rows]}


async def _update(call: Call, user_id: int, name: str | None, is_admin: bool | None,
                  is_active: bool | None, password: str | None) -> User:
    pw_hash = hash_password(password) if password is not None else None
    async with call.services.db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_UPDATE, user_id, name, is_admin, is_active, pw_hash)
        if row is None:
            raise NotFound(f"user {user_id} not found")
        if is_active is False or password is not None:
            # A deactivated account or a changed password ends every open session.
            await conn.execute(_DROP_SESSIONS, user_id)
    if is_active is not None or is_admin is not None or password is not None:
        # Open sockets follow: closed with their sessions, or for the rights they lost.
        await announce(call.request, user=user_id)
    return User.from_row(row)


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
        row = await call.services.db.fetchrow(SELECT_BY_EMAIL, call.me.email)
        if body.current_password is None:
            raise field_error("current_password", "a new password needs the current one")
        if not verify_password(row["password_hash"] if row else None, body.current_password):
            # Well formed, but not the right password: refused as a credential, not as input.
            raise Forbidden("the current password does not match", code="wrong_password")
    user = await _update(call, call.me.id, body.name, None, None, body.password)
    return {"user": user.to_json()}


async def get_one(call: Call) -> dict[str, Any]:
    user = await get_user(call.services.db, call.path_int("uid"))
    if user is None:
        raise NotFound(f"user {call.path_int('uid')} not found")
    return {"user": user.to_json()}


ENDPOINTS = [
    Endpoint("PATCH", "/api/v1/me", patch_me, "Change my name or password", body=MePatch,
             tag="auth", errors=(401, 403, 422)),
    Endpoint("POST", "/api/v1/users", create, "Create a user (instance admins)",
             access=Access.ADMIN, body=UserCreate, status=201, tag="users",
             errors=(401, 403, 409, 422)),
    Endpoint("GET", "/api/v1/users", list_users, "List users (instance admins)",
             access=Access.ADMIN, tag="users", errors=(401, 403)),
    Endpoint("GET", "/api/v1/users/{uid:int}", get_one, "One user (instance admins)",
             access=Access.ADMIN, tag="users", errors=(401, 403, 404)),
    Endpoint("PATCH", "/api/v1/users/{uid:int}", patch,
             "Rename, (de)activate, promote or reset a user's password (instance admins)",
             access=Access.ADMIN, body=UserPatch, tag="users", errors=(401, 403, 404, 409, 422)),
]
