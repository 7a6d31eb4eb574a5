"""Personal API tokens: created and shown once, listed by prefix, revoked by id."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from server.accounts import tokens
from server.live.access_watch import announce
from server.routing import Call, Endpoint
from server.validation import Strict


class TokenCreate(Strict):
    name: str = Field("api", min_length=1, max_length=100)


async def create(call: Call) -> dict[str, Any]:
    body: TokenCreate = call.body
    return await tokens.create_token(call.services.db, call.me.id, body.name)


async def list_tokens(call: Call) -> dict[str, Any]:
    return {"tokens": await tokens.list_tokens(call.services.db, call.me.id)}


async def revoke(call: Call) -> None:
    await tokens.revoke_token(call.services.db, call.path_int("tid"), call.me.id)
    # Sockets opened with it close at once.
    await announce(call.request, user=call.me.id)


ENDPOINTS = [
    Endpoint("POST", "/api/v1/tokens", create, "Create an API token (shown once)",
             body=TokenCreate, status=201, tag="auth", errors=(401, 403, 422)),
    Endpoint("GET", "/api/v1/tokens", list_tokens, "My API tokens (without secrets)",
             tag="auth", errors=(401,)),
    Endpoint("DELETE", "/api/v1/tokens/{tid:int}", revoke, "Revoke one of my API tokens",
             status=204, tag="auth", errors=(401, 403, 404)),
]
