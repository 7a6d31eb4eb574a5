"""Personal API tokens: created and shown once, listed by prefix, revoked by id."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import Field

from server.accounts.auth import new_token
from server.errors import NotFound
from server.live.access_watch import announce
from server.routing import Call, Endpoint
from server.validation import Strict

_INSERT = """
INSERT INTO api_tokens (user_id, name, token_hash, prefix) VALUES ($1, $2, $3, $4)
RETURNING id, name, prefix, created_at, last_used_at
"""
_LIST = """
SELECT id, name, prefix, created_at, last_used_at FROM api_tokens
WHERE user_id = $1 ORDER BY id
"""
_DELETE = "DELETE FROM api_tokens WHERE id = $1 AND user_id = $2"


class TokenCreate(Strict):
    name: str = Field("api", min_length=1, max_length=100)


def _json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "prefix": row["prefix"],
        "created_at": row["created_at"].isoformat(),
        "last_used_at": row["last_used_at"].isoformat() if row["last_used_at"] else None,
    }


async def create(call: Call) -> dict[str, Any]:
    body: TokenCreate = call.body
    token, digest, prefix = new_token()
    row = await call.services.db.fetchrow(_INSERT, call.me.id, body.name, digest, prefix)
    # The only time the secret is ever shown.
    return {**_json(row), "token": token}


async def list_tokens(call: Call) -> dict[str, Any]:
    rows = await call.services.db.fetch(_LIST, call.me.id)
    return {"tokens": [_json(r) for r in rows]}


async def revoke(call: Call) -> None:
    tid = call.path_int("tid")
    status = await call.services.db.execute(_DELETE, tid, call.me.id)
    if status.endswith(" 0"):
        raise NotFound(f"token {tid} not found")
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
