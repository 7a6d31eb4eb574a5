"""CSRF protection for cookie-authenticated requests that change something.

Browsers send `Origin` on every cross-site unsafe request (and `Referer` otherwise), so
requiring one that matches our own origin stops forged form posts and fetches without a
token round-trip. API-token requests skip this: browsers never attach tokens on their own.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from server.errors import Forbidden
from server.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def allowed_origin(settings: Settings, conn: HTTPConnection) -> str:
    """The configured public origin, or the origin this request was addressed to."""
    if settings.public_url:
        return settings.public_url.lower()
    scheme = "https" if conn.url.scheme in ("https", "wss") else "http"
    return f"{scheme}://{conn.headers.get('host', '')}".lower()


def origin_matches(settings: Settings, conn: HTTPConnection) -> bool:
    sent = conn.headers.get("origin")
    if sent is None or sent == "null":
        referer = conn.headers.get("referer")
        sent = _origin_of(referer) if referer else None
    return sent is not None and sent.lower() == allowed_origin(settings, conn)


def check(settings: Settings, conn: HTTPConnection) -> None:
    """Raise 403 for an unsafe cookie-authenticated request from another origin."""
    method = conn.scope.get("method", "GET")
    if method in SAFE_METHODS:
        return
    if not origin_matches(settings, conn):
        raise Forbidden(
            "cross-site request refused: Origin or Referer must match "
            + allowed_origin(settings, conn),
            code="csrf_failed",
        )
