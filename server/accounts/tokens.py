"""Personal API tokens: the SQL that owns the `api_tokens` table and their JSON shape."""

from __future__ import annotations

from typing import Any

import asyncpg

from server.accounts.auth import new_token
from server.errors import NotFound

INSERT = """
INSERT INTO api_tokens (user_id, name, token_hash, prefix) VALUES ($1, $2, $3, $4)
RETURNING id, name, prefix, created_at, last_used_at
"""
LIST = """
SELECT id, name, prefix, created_at, last_used_at FROM api_tokens
WHERE user_id = $1 ORDER BY id
"""
DELETE = "DELETE FROM api_tokens WHERE id = $1 AND user_id = $2"


def token_json(row: asyncpg.Record) -> dict[str, Any]:
    """A token as its owner sees it: never the secret, only its prefix."""
    return {
        "id": row["id"],
        "name": row["name"],
        "prefix": row["prefix"],
        "created_at": row["created_at"].isoformat(),
        "last_used_at": row["last_used_at"].isoformat() if row["last_used_at"] else None,
    }


async def create_token(db: asyncpg.Pool | asyncpg.Connection, user_id: int, name: str) -> dict[str, Any]:
    """A new token of the user's; only the hash is stored, so this answer is the one time
    the secret (`token`) is ever shown."""
    token, digest, prefix = new_token()
    row = await db.fetchrow(INSERT, user_id, name, digest, prefix)
    return {**token_json(row), "token": token}


async def list_tokens(db: asyncpg.Pool | asyncpg.Connection, user_id: int) -> list[dict[str, Any]]:
    """The user's tokens, oldest first."""
    return [token_json(r) for r in await db.fetch(LIST, user_id)]


async def revoke_token(db: asyncpg.Pool | asyncpg.Connection, token_id: int, user_id: int) -> None:
    """Delete one of the user's tokens; a 404 for another user's or an unknown one."""
    status = await db.execute(DELETE, token_id, user_id)
    if status.endswith(" 0"):
        raise NotFound(f"token {token_id} not found")
