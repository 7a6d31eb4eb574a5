"""Users: the row type, the new-user model and the SQL that owns the `users` table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import Field, field_validator

from server.accounts.passwords import NewPassword, hash_password, verify_password
from server.errors import Conflict, Forbidden, NotFound, field_error
from server.validation import Strict

# What a valid email looks like, for the API document (check_email below checks the
# same): no whitespace, something before the @, a dot after it.
EMAIL_PATTERN = r"^[^@\s\x00]+@[^\s\x00]*\.[^\s\x00]*$"

_COLUMNS = "id, email, name, is_admin, is_active, created_at"
SELECT_BY_ID = f"SELECT {_COLUMNS} FROM users WHERE id = $1"
SELECT_BY_EMAIL = f"SELECT {_COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)"
SELECT_ALL = f"SELECT {_COLUMNS} FROM users ORDER BY id LIMIT $1 OFFSET $2"
# The admin's list: each account with its live projects (and role in each), whether it
# has a password yet, and its newest link that is still open.
SELECT_OVERVIEW = f"""
SELECT {_COLUMNS}, u.has_password,
  coalesce((SELECT jsonb_agg(jsonb_build_object(
                'id', p.id, 'name', p.name, 'role', m.role,
                'archived', p.archived_at IS NOT NULL) ORDER BY lower(p.name))
            FROM memberships m JOIN projects p ON p.id = m.project_id AND p.deleted_at IS NULL
            WHERE m.user_id = u.id), '[]'::jsonb) AS projects,
  (SELECT jsonb_build_object('kind', i.kind, 'expires_at', i.expires_at,
                             'expired', i.expires_at <= now())
   FROM invites i WHERE i.user_id = u.id AND i.used_at IS NULL AND i.revoked_at IS NULL
   ORDER BY i.id DESC LIMIT 1) AS open_link
FROM users u ORDER BY u.id LIMIT $1 OFFSET $2
"""
INSERT = f"""
INSERT INTO users (email, name, password_hash, is_admin) VALUES ($1, $2, $3, $4)
RETURNING {_COLUMNS}
"""
# Fields left null keep their value.
UPDATE = """
UPDATE users SET name = coalesce($2, name), is_admin = coalesce($3, is_admin),
                 is_active = coalesce($4, is_active),
                 password_hash = coalesce($5, password_hash)
WHERE id = $1
RETURNING id, email, name, is_admin, is_active, created_at
"""
DROP_SESSIONS = "DELETE FROM sessions WHERE user_id = $1"


def check_email(value: str) -> str:
    """Refuse what cannot be an email address (the same rule as EMAIL_PATTERN)."""
    local, at, domain = value.partition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        raise ValueError("not a valid email address")
    return value


# A new account, as an admin's request or `colabel createuser` gives it. (No docstring:
# it would become the schema's description in the API document.)
class UserCreate(Strict):
    email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)
    password: NewPassword
    name: str = Field("", max_length=200)
    is_admin: bool = False

    _email = field_validator("email")(check_email)


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


async def row_by_email(db: asyncpg.Pool | asyncpg.Connection, email: str) -> asyncpg.Record | None:
    """The user's row with its password hash; emails match ignoring case."""
    row: asyncpg.Record | None = await db.fetchrow(SELECT_BY_EMAIL, email)
    return row


async def list_users(db: asyncpg.Pool | asyncpg.Connection, limit: int, offset: int) -> list[User]:
    """One page of every account, oldest first."""
    return [User.from_row(r) for r in await db.fetch(SELECT_ALL, limit, offset)]


def account_state(row: asyncpg.Record) -> str:
    """`deactivated`, `invited` (no password set yet) or `active`."""
    if not row["is_active"]:
        return "deactivated"
    return "active" if row["has_password"] else "invited"


async def overview(db: asyncpg.Pool | asyncpg.Connection, limit: int, offset: int,
                   ) -> list[dict[str, Any]]:
    """One page of every account for the admin's list, oldest first."""
    return [{**User.from_row(r).to_json(), "state": account_state(r), "projects": r["projects"],
             "open_link": r["open_link"]}
            for r in await db.fetch(SELECT_OVERVIEW, limit, offset)]


async def update_user(
    db: asyncpg.Pool,
    user_id: int,
    *,
    name: str | None,
    is_admin: bool | None,
    is_active: bool | None,
    password: str | None,
) -> User:
    """Change the fields given (None keeps one); a 404 for an unknown id."""
    pw_hash = hash_password(password) if password is not None else None
    async with db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(UPDATE, user_id, name, is_admin, is_active, pw_hash)
        if row is None:
            raise NotFound(f"user {user_id} not found")
        if is_active is False or password is not None:
            # A deactivated account or a changed password ends every open session.
            await conn.execute(DROP_SESSIONS, user_id)
    return User.from_row(row)


async def confirm_password(
    db: asyncpg.Pool | asyncpg.Connection, user: User, current: str | None
) -> None:
    """A user changing their own password must give the current one, and right."""
    row = await row_by_email(db, user.email)
    if current is None:
        raise field_error("current_password", "a new password needs the current one")
    if not verify_password(row["password_hash"] if row else None, current):
        # Well formed, but not the right password: refused as a credential, not as input.
        raise Forbidden("the current password does not match", code="wrong_password")
