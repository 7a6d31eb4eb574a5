"""Invitations and password-reset links: admins issue them, the person opens one to set
their password and is signed in."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator
from starlette.responses import JSONResponse, Response

from server.accounts import auth, csrf, invites
from server.accounts.passwords import NewPassword
from server.accounts.users import EMAIL_PATTERN, check_email, get_user
from server.errors import Conflict, NotFound
from server.live.access_watch import announce
from server.routing import Access, Call, Endpoint
from server.validation import Strict

# A week by default, at most a month: long enough to reach someone on leave, short enough
# that a link forgotten in a mailbox stops working.
DEFAULT_HOURS = 7 * 24
MOST_HOURS = 30 * 24
# The tokens issue() makes are 43 characters; the bound only keeps junk out.
_TOKEN = Field(min_length=20, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")


class InviteCreate(Strict):
    email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)
    name: str = Field("", max_length=200)
    is_admin: bool = False
    expires_in_hours: int = Field(DEFAULT_HOURS, ge=1, le=MOST_HOURS)

    _email = field_validator("email")(check_email)


class LinkCreate(Strict):
    expires_in_hours: int = Field(DEFAULT_HOURS, ge=1, le=MOST_HOURS)


class LinkCheck(Strict):
    token: str = _TOKEN


class LinkAccept(Strict):
    token: str = _TOKEN
    name: str | None = Field(None, min_length=1, max_length=200, json_schema_extra={"type": "string"})
    password: NewPassword


def _base_url(call: Call) -> str:
    """Where links point: the configured public address, else the one the admin used."""
    return call.services.settings.public_url or str(call.request.base_url)


async def create(call: Call) -> dict[str, Any]:
    body: InviteCreate = call.body
    async with call.services.db.acquire() as conn, conn.transaction():
        user, link = await invites.invite(
            conn, email=body.email, name=body.name, is_admin=body.is_admin, by=call.me.id,
            ttl=timedelta(hours=body.expires_in_hours))
    return {"user": user.to_json(), "invite": link.to_json(_base_url(call))}


async def new_link(call: Call) -> dict[str, Any]:
    body: LinkCreate = call.body
    uid = call.path_int("uid")
    async with call.services.db.acquire() as conn, conn.transaction():
        user = await get_user(conn, uid)
        if user is None:
            raise NotFound(f"user {uid} not found")
        if not user.is_active:
            raise Conflict("this account is deactivated: reactivate it before issuing a link",
                           code="account_deactivated")
        link = await invites.issue(conn, uid, call.me.id, timedelta(hours=body.expires_in_hours))
    return {"user": user.to_json(), "invite": link.to_json(_base_url(call))}


async def check(call: Call) -> dict[str, Any]:
    body: LinkCheck = call.body
    return {"invite": await invites.look_up(call.services.db, body.token)}


async def accept(call: Call) -> Response:
    body: LinkAccept = call.body
    services = call.services
    # As for signing in: a form posted from another site must not sign the browser in.
    if call.request.headers.get("origin") is not None:
        csrf.check(services.settings, call.request)
    async with services.db.acquire() as conn, conn.transaction():
        user = await invites.accept(conn, body.token, body.name, body.password)
    # Sessions of the old password ended with it; their open sockets close too.
    await announce(call.request, user=user.id)
    response = JSONResponse({"user": user.to_json()})
    await auth.start_session(services, user, response)
    return response


ENDPOINTS = [
    Endpoint("POST", "/api/v1/invites", create,
             "Invite someone: creates their account and a one-time link (instance admins)",
             access=Access.ADMIN, body=InviteCreate, status=201, tag="users",
             errors=(401, 403, 409, 422)),
    Endpoint("POST", "/api/v1/users/{uid:int}/invite", new_link,
             "A new one-time link for a user to set their password; older links stop "
             "working (instance admins)",
             access=Access.ADMIN, body=LinkCreate, status=201, tag="users",
             errors=(401, 403, 404, 409, 422)),
    Endpoint("POST", "/api/v1/invites/check", check,
             "What a one-time link is for, if it still works", access=Access.PUBLIC,
             body=LinkCheck, tag="users", errors=(403, 404, 409, 422)),
    Endpoint("POST", "/api/v1/invites/accept", accept,
             "Use a one-time link: set a password and sign in", access=Access.PUBLIC,
             body=LinkAccept, tag="users", errors=(403, 404, 409, 422)),
]
