"""Sign-in and sign-out with a session cookie; who am I."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.responses import JSONResponse, Response

from server.accounts import auth, csrf
from server.accounts.passwords import GivenPassword
from server.accounts.users import EMAIL_PATTERN
from server.live.access_watch import announce
from server.routing import Access, Call, Endpoint
from server.validation import Strict


class LoginBody(Strict):
    email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)
    password: GivenPassword


def client_address(call: Call) -> str:
    client = call.request.client
    return client.host if client else "unknown"


async def login(call: Call) -> Response:
    body: LoginBody = call.body
    services = call.services
    # A login form posted from another site would sign the victim into our account
    # (login CSRF), so a browser's Origin must be ours even though no cookie exists yet.
    if call.request.headers.get("origin") is not None:
        csrf.check(services.settings, call.request)
    user = await auth.check_credentials(services, body.email, body.password, client_address(call))
    response = JSONResponse({"user": user.to_json()})
    await auth.start_session(services, user, response)
    return response


async def logout(call: Call) -> Response:
    response = Response(status_code=204)
    await auth.end_session(call.services, call.identity, response)
    if call.identity.user is not None and call.identity.session_hash is not None:
        # The sockets this session opened close too.
        await announce(call.request, user=call.identity.user.id)
    return response


async def me(call: Call) -> dict[str, Any]:
    return {"user": call.me.to_json(), "via_token": call.via_token}


ENDPOINTS = [
    Endpoint("POST", "/api/v1/auth/login", login, "Sign in; sets the session cookie",
             access=Access.PUBLIC, body=LoginBody, tag="auth", errors=(401, 403, 422, 429)),
    Endpoint("POST", "/api/v1/auth/logout", logout, "Sign out and end the session",
             access=Access.PUBLIC, status=204, tag="auth", errors=(403,)),
    Endpoint("GET", "/api/v1/me", me, "The signed-in user", tag="auth", errors=(401,)),
]
