from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.infra import Api, unique


def test_login_sets_a_signed_httponly_samesite_cookie(make_user: Callable[..., Api]) -> None:
    user = make_user("alice")
    fresh = Api(user.base_url)
    r = fresh.client.post(
        "/api/v1/auth/login", json={"email": user.user["email"], "password": PASSWORD})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert "colabel_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert user.get("/api/v1/me").json()["user"]["email"] == user.user["email"]


def test_wrong_password_and_unknown_email_look_the_same(anon: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    bad = anon.post("/api/v1/auth/login", {"email": user.user["email"], "password": "nope-nope"})
    ghost = anon.post("/api/v1/auth/login", {"email": "ghost@colabel.test", "password": "nope"})
    assert bad.status_code == ghost.status_code == 401
    assert bad.json() == ghost.json()
    assert bad.json()["error"]["code"] == "invalid_credentials"


def test_login_is_rate_limited_per_account(anon: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    email = user.user["email"]
    codes = [anon.post("/api/v1/auth/login", {"email": email, "password": "wrong-pass"}).status_code
             for _ in range(5)]
    assert codes == [401] * 5
    blocked = anon.post("/api/v1/auth/login", {"email": email, "password": PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert blocked.json()["error"]["code"] == "rate_limited"
    # Other accounts from the same address are not affected.
    other = make_user()
    assert other.get("/api/v1/me").status_code == 200


def test_anonymous_and_forged_cookies_are_refused(anon: Api, make_user: Callable[..., Api]) -> None:
    assert anon.get("/api/v1/me").status_code == 401
    user = make_user()
    real = user.client.cookies["colabel_session"]
    forged = real[:-3] + ("AAA" if not real.endswith("AAA") else "BBB")
    with httpx.Client(base_url=anon.base_url, cookies={"colabel_session": forged}) as c:
        r = c.get("/api/v1/me")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_logout_ends_the_session_server_side(make_user: Callable[..., Api]) -> None:
    user = make_user()
    cookie = user.client.cookies["colabel_session"]
    assert user.post("/api/v1/auth/logout").status_code == 204
    with httpx.Client(base_url=user.base_url, cookies={"colabel_session": cookie}) as replay:
        assert replay.get("/api/v1/me").status_code == 401


@pytest.mark.reliability(
    area='Access',
    attack='Sent cookie-authenticated writes with a foreign Origin, with no Origin, and with a token.',
    promise='A write with a session cookie from another site is refused 403; tokens and same-origin '
            'requests work.')
def test_csrf_origin_check_for_cookie_requests(make_user: Callable[..., Api]) -> None:
    user = make_user()
    body = {"name": unique("p"), "task_type": "bbox"}
    with httpx.Client(base_url=user.base_url, cookies=user.client.cookies) as no_origin:
        r = no_origin.post("/api/v1/projects", json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
        evil = no_origin.post("/api/v1/projects", json=body,
                              headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403
        ref = no_origin.post("/api/v1/projects", json=body,
                             headers={"Referer": user.base_url + "/projects/new"})
        assert ref.status_code == 201
        # Safe methods need no Origin.
        assert no_origin.get("/api/v1/projects").status_code == 200


def test_login_from_another_site_is_refused(anon: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    r = anon.post("/api/v1/auth/login", {"email": user.user["email"], "password": PASSWORD},
                  headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


def test_api_tokens_shown_once_stored_hashed_and_revocable(make_user: Callable[..., Api]) -> None:
    user = make_user()
    r = user.post("/api/v1/tokens", {"name": "script"})
    assert r.status_code == 201
    created = r.json()
    token = created["token"]
    assert token.startswith("clb_") and created["prefix"] == token[:10]
    listed = user.get("/api/v1/tokens").json()["tokens"]
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    bot = Api(user.base_url).use_token(token)
    me = bot.get("/api/v1/me").json()
    assert me["user"]["id"] == user.id and me["via_token"] is True
    # Bearer requests need no Origin: browsers never attach tokens by themselves.
    assert bot.post("/api/v1/projects", {"name": unique("p"), "task_type": "bbox"}).status_code == 201
    assert user.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    r = bot.get("/api/v1/me")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    garbage = Api(user.base_url).use_token("clb_not-a-token")
    assert garbage.get("/api/v1/projects").status_code == 401


def test_tokens_of_others_cannot_be_revoked(make_user: Callable[..., Api]) -> None:
    a, b = make_user(), make_user()
    tid = a.post("/api/v1/tokens", {"name": "x"}).json()["id"]
    assert b.delete(f"/api/v1/tokens/{tid}").status_code == 404
    assert len(a.get("/api/v1/tokens").json()["tokens"]) == 1


def test_password_change_needs_the_current_one_and_ends_sessions(
    make_user: Callable[..., Api],
) -> None:
    user = make_user()
    r = user.patch("/api/v1/me", {"password": "a-new-password", "current_password": "wrong"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_password"
    r = user.patch("/api/v1/me", {"password": "a-new-password"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == ["current_password"]
    r = user.patch("/api/v1/me", {"password": "a-new-password", "current_password": PASSWORD})
    assert r.status_code == 200
    assert user.get("/api/v1/me").status_code == 401
    Api(user.base_url).login(user.user["email"], "a-new-password")


def test_admin_manages_users_and_deactivation_blocks_login(
    admin: Api, make_user: Callable[..., Api], anon: Api,
) -> None:
    user = make_user()
    r = admin.post("/api/v1/users", {"email": user.user["email"].upper(), "password": PASSWORD})
    assert r.status_code == 409 and r.json()["error"]["code"] == "email_taken"
    r = admin.post("/api/v1/users", {"email": "not-an-email", "password": PASSWORD})
    assert r.status_code == 422
    r = admin.post("/api/v1/users", {"email": "short@colabel.test", "password": "short"})
    assert r.status_code == 422
    assert admin.patch(f"/api/v1/users/{user.id}", {"is_active": False}).status_code == 200
    assert user.get("/api/v1/me").status_code == 401
    r = anon.post("/api/v1/auth/login", {"email": user.user["email"], "password": PASSWORD})
    assert r.status_code == 401
    r = admin.patch(f"/api/v1/users/{admin.id}", {"is_admin": False})
    assert r.status_code == 409
    assert admin.get("/api/v1/users/999999999").status_code == 404
