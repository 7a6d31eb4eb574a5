"""Security headers on every kind of response, and the page served before the browser app is
built works under the same policy (no inline script or style)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from PIL import Image

from server.app import create_app
from server.security_headers import CONTENT_SECURITY_POLICY
from server.settings import Settings
from tests.infra import Api

EXPECTED = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


def _has_headers(r: httpx.Response) -> bool:
    return all(r.headers.get(k) == v for k, v in EXPECTED.items())


def test_every_response_carries_the_security_headers(anon: Api, make_user: object) -> None:
    for path in ("/", "/index.html", "/api/v1/me", "/api/v1/openapi.json", "/api/v1/nowhere",
                 "/api/v1/projects/1/items"):
        r = anon.get(path)
        assert _has_headers(r), (path, r.status_code, dict(r.headers))
    bad = anon.post("/api/v1/auth/login", {"email": "x"})
    assert bad.status_code == 422 and _has_headers(bad)
    policy = dict(p.split(" ", 1) for p in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"


async def test_the_welcome_page_needs_no_inline_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Building the app sets Pillow's process-wide pixel limit; keep this process's as it was.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    app = create_app(Settings.from_env({"COLABEL_DATABASE_URL": "postgresql://x/y",
                                        "COLABEL_REDIS_URL": "redis://x"}), client_dist=tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        page = await c.get("/")
        assert page.status_code == 200 and _has_headers(page)
        assert not re.search(r"<script>|<style|style=|\son\w+=", page.text), page.text
        for name, kind in (("welcome.js", "text/javascript"), ("welcome.css", "text/css")):
            assert f'"/{name}"' in page.text
            r = await c.get(f"/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind) and len(r.text) > 100
