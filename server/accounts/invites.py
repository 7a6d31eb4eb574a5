"""One-time links: an admin invites a new person or lets someone set a new password.

A link carries a 256-bit random token; the database keeps only its SHA-256 (as for
sessions and API tokens), its expiry, and whether it was used or replaced. Issuing a
link for a user retires the links they had not used yet, so only the newest one works.
An invited account exists from the moment of the invitation (owners can add it to
projects), but has no password: nobody can sign in to it until the link is used.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from server.accounts.passwords import hash_password
from server.accounts.users import User
from server.errors import Conflict, Forbidden, NotFound

# Stored in place of a password hash until the invitation is accepted: argon2 cannot
# parse it, so no password matches it.
NO_PASSWORD = "!invited"

_INSERT_INVITED = """
INSERT INTO users (email, name, password_hash, is_admin, has_password)
VALUES ($1, $2, $3, $4, false)
RETURNING id, email, name, is_admin, is_active, created_at
"""
_RETIRE = """
UPDATE invites SET revoked_at = now()
WHERE user_id = $1 AND used_at IS NULL AND revoked_at IS NULL
"""
_INSERT = """
INSERT INTO invites (token_hash, user_id, kind, created_by, expires_at)
VALUES ($1, $2, $3, $4, $5)
"""
# The link with its user, locked when accepting so a link is used at most once.
_FIND = """
SELECT i.id AS invite_id, i.kind, i.expires_at, i.used_at, i.revoked_at,
       u.id, u.email, u.name, u.is_admin, u.is_active, u.created_at
FROM invites i JOIN users u ON u.id = i.user_id
WHERE i.token_hash = $1
"""
_FIND_FOR_UPDATE = _FIND + " FOR UPDATE OF i"
_USE = "UPDATE invites SET used_at = now() WHERE id = $1"
_SET_PASSWORD = """
UPDATE users SET name = $2, password_hash = $3, has_password = true
WHERE id = $1
RETURNING id, email, name, is_admin, is_active, created_at
"""
_DROP_SESSIONS = "DELETE FROM sessions WHERE user_id = $1"
_HAS_PASSWORD = "SELECT has_password FROM users WHERE id = $1"


def _sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Link:
    """A link just issued: the token is shown this once, never stored."""

    token: str
    kind: str
    expires_at: datetime

    def to_json(self, base_url: str) -> dict[str, Any]:
        return {
            "token": self.token,
            "kind": self.kind,
            "url": f"{base_url.rstrip('/')}/#/invite/{self.token}",
            "expires_at": self.expires_at.isoformat(),
        }


async def issue(conn: asyncpg.Connection, user_id: int, by: int, ttl: timedelta) -> Link:
    """A new link for the user, retiring their unused ones: an invitation while they have
    never set a password, a password reset after. Call inside a transaction."""
    has_password = await conn.fetchval(_HAS_PASSWORD, user_id)
    if has_password is None:
        raise NotFound(f"user {user_id} not found")
    kind = "reset" if has_password else "invite"
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + ttl
    await conn.execute(_RETIRE, user_id)
    await conn.execute(_INSERT, _sha256(token), user_id, kind, by, expires)
    return Link(token, kind, expires)


async def invite(conn: asyncpg.Connection, *, email: str, name: str, is_admin: bool, by: int,
                 ttl: timedelta) -> tuple[User, Link]:
    """Create an account without a password and its invitation; call inside a transaction."""
    try:
        row = await conn.fetchrow(_INSERT_INVITED, email, name or email.split("@")[0],
                                  NO_PASSWORD, is_admin)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a user with email {email} already exists; to let them set a new "
                       "password, issue them a new link", code="email_taken") from None
    assert row is not None
    user = User.from_row(row)
    return user, await issue(conn, user.id, by, ttl)


def _check(row: asyncpg.Record | None) -> asyncpg.Record:
    """The link's row if it can still be used; otherwise why not, in words to act on (409
    with a code of its own: used, replaced or expired)."""
    if row is None:
        raise NotFound("this link is not valid: check that it was copied whole, or ask your "
                       "administrator for a new one", code="invite_not_found")
    if row["used_at"] is not None:
        raise Conflict("this link has already been used: sign in with your password, or ask "
                   "your administrator for a new link", code="invite_used")
    if row["revoked_at"] is not None:
        raise Conflict("this link was replaced by a newer one: use the newest link your "
                   "administrator gave you", code="invite_replaced")
    if row["expires_at"] <= datetime.now(UTC):
        when = row["expires_at"].strftime("%Y-%m-%d %H:%M UTC")
        raise Conflict(f"this link expired on {when}: ask your administrator for a new one",
                   code="invite_expired", details={"expired_at": row["expires_at"].isoformat()})
    if not row["is_active"]:
        raise Forbidden("this account is deactivated: ask your administrator",
                        code="account_deactivated")
    return row


async def look_up(db: asyncpg.Pool | asyncpg.Connection, token: str) -> dict[str, Any]:
    """What the person opening a link is about to do, if the link still works."""
    row = _check(await db.fetchrow(_FIND, _sha256(token)))
    return {"kind": row["kind"], "email": row["email"], "name": row["name"],
            "expires_at": row["expires_at"].isoformat()}


async def accept(conn: asyncpg.Connection, token: str, name: str | None, password: str) -> User:
    """Use the link: set the password (and name), end the account's other sessions; call
    inside a transaction."""
    row = _check(await conn.fetchrow(_FIND_FOR_UPDATE, _sha256(token)))
    await conn.execute(_USE, row["invite_id"])
    # A reset ends whatever sessions the old password had opened.
    await conn.execute(_DROP_SESSIONS, row["id"])
    updated = await conn.fetchrow(_SET_PASSWORD, row["id"], name or row["name"],
                                  hash_password(password))
    return User.from_row(updated)
