"""Who is calling: session cookies for browsers, bearer API tokens for scripts.

A session cookie holds a random id signed with the instance secret; the database keeps
only the id's SHA-256 and its expiry, so logout and expiry are enforced server-side and
a forged or tampered cookie is rejected before any query. API tokens are shown once and
stored hashed as well.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
from itsdangerous import BadSignature, TimestampSigner
from starlette.requests import HTTPConnection
from starlette.responses import Response

from server.accounts import csrf
from server.accounts.passwords import verify_password
from server.accounts.ratelimit import LoginThrottle
from server.accounts.users import User, row_by_email
from server.errors import Forbidden, Unauthorized
from server.settings import Settings

if TYPE_CHECKING:
    from server.services import Services

SESSION_COOKIE = "colabel_session"
TOKEN_PREFIX = "clb_"

_SESSION_USER = """
SELECT u.id, u.email, u.name, u.is_admin, u.is_active, u.created_at
FROM sessions s JOIN users u ON u.id = s.user_id
WHERE s.id_hash = $1 AND s.expires_at > now() AND u.is_active
"""
_TOKEN_USER = """
SELECT t.id AS token_id, u.id, u.email, u.name, u.is_admin, u.is_active, u.created_at,
       t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute' AS touch
FROM api_tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_hash = $1 AND u.is_active
"""
# Recording use on every request would turn reads into writes; once a minute is plenty.
_TOKEN_TOUCH = """
UPDATE api_tokens SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""
_INSERT_SESSION = "INSERT INTO sessions (id_hash, user_id, expires_at) VALUES ($1, $2, $3)"
_DELETE_SESSION = "DELETE FROM sessions WHERE id_hash = $1"
_DELETE_EXPIRED = "DELETE FROM sessions WHERE user_id = $1 AND expires_at <= now()"


@dataclass(frozen=True)
class Identity:
    user: User | None
    via_cookie: bool = False
    via_token: bool = False
    session_hash: bytes | None = None
    token_id: int | None = None


def _sha256(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _signer(settings: Settings) -> TimestampSigner:
    return TimestampSigner(settings.secret_key, salt="colabel-session")


def _bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Authorization must be 'Bearer <token>'", code="invalid_token")
        return value.strip()
    return None


async def _token(db: asyncpg.Pool, token: str) -> asyncpg.Record | None:
    row = await db.fetchrow(_TOKEN_USER, _sha256(token))
    if row is not None and row["touch"]:  # the statement only when it would change something
        await db.execute(_TOKEN_TOUCH, row["token_id"])
    return row


async def identify(services: Services, conn: HTTPConnection, token: str | None = None) -> Identity:
    """Resolve the caller; a bad API token is an error, a stale cookie is anonymous."""
    token = token or _bearer(conn)
    if token is not None:
        row = await _token(services.db, token)
        if row is None:
            raise Unauthorized("unknown or revoked API token", code="invalid_token")
        return Identity(User.from_row(row), via_token=True, token_id=row["token_id"])
    cookie = conn.cookies.get(SESSION_COOKIE)
    if not cookie:
        return Identity(None)
    try:
        session_id = _signer(services.settings).unsign(
            cookie, max_age=services.settings.session_ttl_s
        ).decode()
    except (BadSignature, UnicodeDecodeError):
        return Identity(None)
    digest = _sha256(session_id)
    row = await services.db.fetchrow(_SESSION_USER, digest)
    if row is None:
        return Identity(None)
    return Identity(User.from_row(row), via_cookie=True, session_hash=digest)


async def check_credentials(services: Services, email: str, password: str, address: str) -> User:
    """The active user an email and password sign in, within the login throttle's limits."""
    throttle = LoginThrottle(services)
    # Counted before the password is checked, so concurrent guesses cannot pass the limit.
    await throttle.attempt(email, address)
    try:
        row = await row_by_email(services.db, email)
        ok = verify_password(row["password_hash"] if row else None, password)
    except BaseException:
        await throttle.give_back(email, address)
        raise
    if not ok or row is None or not row["is_active"]:
        raise Unauthorized("wrong email or password", code="invalid_credentials")
    await throttle.succeeded(email, address)
    return User.from_row(row)


async def start_session(services: Services, user: User, response: Response) -> None:
    """Create a server-side session and set its signed cookie on `response`."""
    settings = services.settings
    session_id = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(seconds=settings.session_ttl_s)
    await services.db.execute(_DELETE_EXPIRED, user.id)
    await services.db.execute(_INSERT_SESSION, _sha256(session_id), user.id, expires)
    response.set_cookie(
        SESSION_COOKIE,
        _signer(settings).sign(session_id).decode(),
        max_age=settings.session_ttl_s,
        httponly=True,
        samesite="lax",
        secure=settings.public_url.startswith("https://"),
        path="/",
    )


async def end_session(services: Services, identity: Identity, response: Response) -> None:
    if identity.session_hash is not None:
        await services.db.execute(_DELETE_SESSION, identity.session_hash)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")


async def websocket_identity(services: Services, ws: HTTPConnection) -> Identity:
    """Who is behind a WebSocket handshake: `?token=`, or a cookie from our own origin.

    The identity keeps its session or token, so the open socket can be closed once it ends.
    """
    identity = await identify(services, ws, token=ws.query_params.get("token") or None)
    if identity.user is None:
        raise Unauthorized("sign in or pass ?token=")
    if identity.via_cookie and not csrf.origin_matches(services.settings, ws):
        raise Forbidden("cross-site WebSocket refused", code="csrf_failed")
    return identity


def new_token() -> tuple[str, bytes, str]:
    """A fresh API token: (the secret shown once, its hash, a short display prefix)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, _sha256(token), token[: len(TOKEN_PREFIX) + 6]
