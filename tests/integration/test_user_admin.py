"""Instance admins invite people with one-time links, reset passwords with new links,
(de)activate accounts and see each account's projects; owners find people to add."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from tests.conftest import PASSWORD, project_body, run_sync
from tests.infra import Api, unique

NEW_PASSWORD = "a brand new passphrase"


def _invite(admin: Api, **extra: Any) -> dict[str, Any]:
    email = f"{unique('invitee')}@colabel.test"
    r = admin.post("/api/v1/invites", {"email": email, "name": "Invitee", **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _sql(database_url: str, statement: str, *args: Any) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(statement, *args)
        finally:
            await conn.close()

    run_sync(run)


def test_an_invitee_sets_a_password_through_the_link_once(admin: Api, anon: Api, server: str) -> None:
    made = _invite(admin)
    link, user = made["invite"], made["user"]
    assert link["kind"] == "invite" and link["url"].endswith(f"/#/invite/{link['token']}")
    # Until the link is used nobody signs in to the account, whatever the password.
    for guess in ("", "!invited", PASSWORD):
        r = anon.post("/api/v1/auth/login", {"email": user["email"], "password": guess or "x"})
        assert r.status_code in (401, 422)
    listed = {u["id"]: u for u in admin.get("/api/v1/users?limit=1000").json()["users"]}
    assert listed[user["id"]]["state"] == "invited"
    assert listed[user["id"]]["open_link"]["kind"] == "invite"

    r = anon.post("/api/v1/invites/check", {"token": link["token"]})
    assert r.status_code == 200 and r.json()["invite"]["email"] == user["email"]
    fresh = Api(server)
    r = fresh.post("/api/v1/invites/accept", {"token": link["token"], "name": "Ina Vitee",
                                              "password": NEW_PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["name"] == "Ina Vitee"
    # The answer signed the browser in.
    assert fresh.get("/api/v1/me").json()["user"]["id"] == user["id"]
    Api(server).login(user["email"], NEW_PASSWORD)

    again = anon.post("/api/v1/invites/accept", {"token": link["token"], "password": "another one!"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "invite_used"
    assert anon.post("/api/v1/invites/check", {"token": link["token"]}).status_code == 409
    listed = {u["id"]: u for u in admin.get("/api/v1/users?limit=1000").json()["users"]}
    assert listed[user["id"]]["state"] == "active" and listed[user["id"]]["open_link"] is None


def test_expired_unknown_and_replaced_links_say_why(admin: Api, anon: Api,
                                                     database_url: str) -> None:
    made = _invite(admin)
    token = made["invite"]["token"]
    _sql(database_url, "UPDATE invites SET expires_at = now() - interval '1 hour' "
                       "WHERE user_id = $1", made["user"]["id"])
    r = anon.post("/api/v1/invites/accept", {"token": token, "password": NEW_PASSWORD})
    assert r.status_code == 409 and r.json()["error"]["code"] == "invite_expired"
    assert "ask your administrator" in r.json()["error"]["message"]

    r = anon.post("/api/v1/invites/check", {"token": "x" * 43})
    assert r.status_code == 404 and r.json()["error"]["code"] == "invite_not_found"
    r = anon.post("/api/v1/invites/check", {"token": "not a token!"})
    assert r.status_code == 422

    # A new link for the same person replaces the old one.
    first = admin.post(f"/api/v1/users/{made['user']['id']}/invite", {}).json()["invite"]
    second = admin.post(f"/api/v1/users/{made['user']['id']}/invite",
                        {"expires_in_hours": 2}).json()["invite"]
    assert first["kind"] == second["kind"] == "invite"
    r = anon.post("/api/v1/invites/check", {"token": first["token"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "invite_replaced"
    assert anon.post("/api/v1/invites/check", {"token": second["token"]}).status_code == 200


def test_a_reset_link_changes_the_password_and_ends_old_sessions(
        admin: Api, anon: Api, server: str, make_user: Callable[..., Api]) -> None:
    user = make_user("forgetful")
    r = admin.post(f"/api/v1/users/{user.id}/invite", {"expires_in_hours": 24})
    assert r.status_code == 201, r.text
    link = r.json()["invite"]
    assert link["kind"] == "reset"
    # The old password still works until the link is used.
    assert user.get("/api/v1/me").status_code == 200
    r = Api(server).post("/api/v1/invites/accept", {"token": link["token"], "password": NEW_PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["name"] == "forgetful"  # kept when no name is given
    assert user.get("/api/v1/me").status_code == 401
    assert anon.post("/api/v1/auth/login", {"email": user.email, "password": PASSWORD}).status_code == 401
    Api(server).login(user.email, NEW_PASSWORD)


def test_deactivation_stops_sessions_tokens_and_links_and_keeps_history(
        admin: Api, anon: Api, make_user: Callable[..., Api], server: str) -> None:
    user = make_user("leaver")
    token = user.post("/api/v1/tokens", {"name": "script"}).json()["token"]
    script = Api(server).use_token(token)
    assert script.get("/api/v1/me").status_code == 200
    link = admin.post(f"/api/v1/users/{user.id}/invite", {}).json()["invite"]

    r = admin.patch(f"/api/v1/users/{user.id}", {"is_active": False})
    assert r.status_code == 200 and r.json()["user"]["is_active"] is False
    assert user.get("/api/v1/me").status_code == 401
    assert script.get("/api/v1/me").status_code == 401
    r = anon.post("/api/v1/invites/accept", {"token": link["token"], "password": NEW_PASSWORD})
    assert r.status_code == 403 and r.json()["error"]["code"] == "account_deactivated"
    r = admin.post(f"/api/v1/users/{user.id}/invite", {})
    assert r.status_code == 409 and r.json()["error"]["code"] == "account_deactivated"
    listed = {u["id"]: u for u in admin.get("/api/v1/users?limit=1000").json()["users"]}
    assert listed[user.id]["state"] == "deactivated"

    assert admin.patch(f"/api/v1/users/{user.id}", {"is_active": True}).status_code == 200
    Api(server).login(user.email, PASSWORD)
    # Tokens were suspended, not deleted: they work again with the account.
    assert script.get("/api/v1/me").status_code == 200


def test_admin_endpoints_refuse_others_and_bad_input(
        admin: Api, anon: Api, make_user: Callable[..., Api]) -> None:
    user = make_user()
    for client, status in ((anon, 401), (user, 403)):
        assert client.post("/api/v1/invites", {"email": "a@b.co"}).status_code == status
        assert client.post(f"/api/v1/users/{user.id}/invite", {}).status_code == status
        assert client.get("/api/v1/users").status_code == status
    r = admin.post("/api/v1/invites", {"email": user.email})
    assert r.status_code == 409 and r.json()["error"]["code"] == "email_taken"
    r = admin.post("/api/v1/invites", {"email": user.email.upper()})
    assert r.status_code == 409
    for bad in ({"email": "nope"}, {"email": "a@b.co", "expires_in_hours": 0},
                {"email": "a@b.co", "expires_in_hours": 24 * 31}, {"email": "a@b.co", "role": "x"}):
        assert admin.post("/api/v1/invites", bad).status_code == 422, bad
    assert admin.post("/api/v1/users/999999999/invite", {}).status_code == 404
    r = admin.patch(f"/api/v1/users/{admin.id}", {"is_active": False})
    assert r.status_code == 409 and r.json()["error"]["code"] == "self_demotion"
    r = anon.post("/api/v1/invites/accept", {"token": "x" * 43, "password": "short"})
    assert r.status_code == 422


def test_the_user_list_shows_each_accounts_projects_and_roles(
        admin: Api, make_project: Callable[..., tuple[Api, dict[str, Any]]],
        make_user: Callable[..., Api]) -> None:
    owner, project = make_project()
    labeler = make_user("lab")
    assert owner.put(f"/api/v1/projects/{project['id']}/members",
                     {"email": labeler.email, "role": "labeler"}).status_code == 200
    listed = {u["id"]: u for u in admin.get("/api/v1/users?limit=1000").json()["users"]}
    assert listed[owner.id]["projects"] == [
        {"id": project["id"], "name": project["name"], "role": "owner", "archived": False}]
    assert listed[labeler.id]["projects"][0]["role"] == "labeler"
    assert listed[labeler.id]["state"] == "active"


def test_member_candidates_show_only_people_the_owner_can_see(
        admin: Api, anon: Api, make_project: Callable[..., tuple[Api, dict[str, Any]]],
        make_user: Callable[..., Api]) -> None:
    owner, first = make_project()
    r = owner.post("/api/v1/projects", project_body())
    assert r.status_code == 201, r.text
    second = r.json()["project"]
    tag = unique("zed")
    colleague = make_user(f"{tag}-colleague")
    stranger = make_user(f"{tag}-stranger")
    gone = make_user(f"{tag}-gone")
    for who in (colleague, gone):
        assert owner.put(f"/api/v1/projects/{first['id']}/members",
                         {"email": who.email, "role": "labeler"}).status_code == 200
    admin.patch(f"/api/v1/users/{gone.id}", {"is_active": False})
    # Adding people to the second project: the colleague from the first is offered, the
    # stranger only when their whole email is typed, the deactivated never.
    url = f"/api/v1/projects/{second['id']}/members/candidates"
    found = owner.get(url, params={"q": tag}).json()["users"]
    assert [u["id"] for u in found] == [colleague.id]
    assert set(found[0]) == {"id", "name", "email"}
    exact = owner.get(url, params={"q": stranger.email.upper()}).json()["users"]
    assert [u["id"] for u in exact] == [stranger.id]
    assert owner.get(url, params={"q": stranger.email[:-1]}).json()["users"] == []
    # Members already in the project are not offered again.
    mine = owner.get(f"/api/v1/projects/{first['id']}/members/candidates",
                     params={"q": tag}).json()["users"]
    assert mine == []
    # Wildcards are taken literally.
    assert owner.get(url, params={"q": "%"}).json()["users"] == []
    # A labeler does not reveal their fellow labelers to projects they own.
    r = colleague.post("/api/v1/projects", project_body())
    theirs = f"/api/v1/projects/{r.json()['project']['id']}/members/candidates"
    assert colleague.get(theirs, params={"q": tag}).json()["users"] == []
    # Admins see everyone active.
    every = admin.get(url, params={"q": tag}).json()["users"]
    assert {u["id"] for u in every} == {colleague.id, stranger.id}
    assert owner.get(url, params={"q": "x" * 300}).status_code == 422
    assert owner.get(url, params={"q": tag, "limit": 0}).status_code == 422
    assert colleague.get(f"/api/v1/projects/{first['id']}/members/candidates").status_code == 403
    assert stranger.get(url).status_code == 404
    assert anon.get(url).status_code == 401


def test_the_last_owner_cannot_leave_or_step_down(
        make_project: Callable[..., tuple[Api, dict[str, Any]]], make_user: Callable[..., Api]) -> None:
    owner, project = make_project()
    base = f"/api/v1/projects/{project['id']}/members"
    r = owner.delete(f"{base}/{owner.id}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_owner"
    r = owner.put(base, {"user_id": owner.id, "role": "labeler"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_owner"
    other = make_user("co-owner")
    assert owner.put(base, {"email": other.email, "role": "owner"}).status_code == 200
    assert owner.delete(f"{base}/{owner.id}").status_code == 204
    members = other.get(base).json()["members"]
    assert [m["user"]["id"] for m in members] == [other.id]
    assert members[0]["user"]["is_active"] is True
