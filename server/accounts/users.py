"""Users: the row type and the SQL that owns the `users` table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from server.accounts.passwords import hash_password
from server.errors import Conflict

# What a valid email looks like, for the API document (api/users.py's check_email checks the
# same): no whitespace, something before the @, a dot after it.
EMAIL_PATTERN = r"^[^@\s\x00]+@[^\s\x00]*\.[^\s\x00]*$"

_COLUMNS = "id, email, name, is_admin, is_active, created_at"
SELECT_BY_ID = f"SELECT {_COLUMNS} FROM users WHERE id = $1"
SELECT_BY_EMAIL = f"SELECT {_COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)"
SELECT_ALL = f"SELECT {_COLUMNS} FROM users ORDER BY id LIMIT $1 OFFSET $2"
INSERT = f"""
INSERT INTO users (email, name, password_hash, is_admin) VALUES ($1, $2, $3, $4)
RETURNING {_COLUMNS}
"""


@dataclass(frozen=True)
class User:
    id: int
    email: str
    name: str
    is_admin: bool
    is_active: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> User:
        return cls(
            id=row["id"],
            email=row["email"],
            name=row["name"],
            is_admin=row["is_admin"],
            is_active=row["is_active"],
            created_at=row["created_at"],
        )

    def public(self) -> dict[str, Any]:
        """The fields any project member may see about another user."""
        return {"id": self.id, "name": self.name, "email": self.email}

    def to_json(self) -> dict[str, Any]:
        return {
            **self.public(),
            "is_admin": self.is_admin,
            "is_active": self.is_active,
            "created_at": self.created_at.isoformat(),
        }


async def create_user(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    email: str,
    password: str,
    name: str = "",
    is_admin: bool = False,
) -> User:
    """Insert a user; a taken email (case-insensitively) is a Conflict."""
    try:
        row = await db.fetchrow(
            INSERT, email, name or email.split("@")[0], hash_password(password), is_admin
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a user with email {email} already exists", code="email_taken") from None
    assert row is not None
    return User.from_row(row)


async def get_user(db: asyncpg.Pool | asyncpg.Connection, user_id: int) -> User | None:
    row = await db.fetchrow(SELECT_BY_ID, user_id)
    return User.from_row(row) if row else None
