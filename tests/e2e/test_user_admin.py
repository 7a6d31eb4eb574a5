"""User administration in the browser: an admin invites someone who joins through the link
in another browser; deactivating refuses that person's open session at once; reactivating
lets them back; a reset link sets a new password. Owners add members through suggestions,
and the last owner is never offered a way out."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import asyncpg
from playwright.sync_api import Page, expect

from tests.conftest import project_body, run_sync
from tests.e2e.conftest import shot, sign_in
from tests.infra import Api, unique

NEW_PASSWORD = "the invitee's own passphrase"
RESET_PASSWORD = "a reset passphrase, longer"


def _row(page: Page, email: str) -> Any:
    return page.locator(f"[data-testid=users] tr[data-email='{email}']")


def _issued_link(page: Page) -> str:
    box = page.locator("[data-testid=issued-link]")
    expect(box).to_be_visible()
    url = page.locator("[data-testid=link-url]").input_value()
    assert re.search(r"/#/invite/[\w-]{40,}$", url), url
    return url


def _status_of_me(page: Page) -> int:
    status: int = page.evaluate("fetch('/api/v1/me').then((r) => r.status)")
    return status


def test_invite_deactivate_reactivate_and_reset(server: str, admin: Api, new_context: Any) -> None:
    page = sign_in(new_context(), server, admin)
    page.click("[data-testid=admin-users]")
    expect(page.locator("h1")).to_have_text("Users")
    email = f"{unique('newcomer')}@colabel.test"
    page.fill("input[name=invite-email]", email)
    page.fill("input[name=invite-name]", "Newcomer")
    page.click("[data-testid=invite-form] button[type=submit]")
    url = _issued_link(page)
    expect(_row(page, email)).to_have_attribute("data-state", "invited")
    shot(page, "admin-users")

    # The invitee opens the link in a browser of their own, chooses a name and a password.
    joiner = new_context().new_page()
    joiner.goto(url)
    expect(joiner.locator("[data-testid=invite]")).to_contain_text(email)
    joiner.fill("input[name=name]", "Nora Newcomer")
    joiner.fill("input[name=password]", NEW_PASSWORD)
    joiner.fill("input[name=password-again]", NEW_PASSWORD)
    joiner.click("button[type=submit]")
    expect(joiner.locator("[data-testid=who]")).to_have_text("Nora Newcomer")
    expect(joiner.locator("h1")).to_have_text("Projects")
    # Not an admin: no user administration in the header.
    expect(joiner.locator("[data-testid=admin-users]")).to_have_count(0)

    # The link worked once; opened again it says so.
    again = new_context().new_page()
    again.goto(url)
    expect(again.locator("[data-testid=invite-error]")).to_contain_text("already been used")

    page.reload()
    row = _row(page, email)
    expect(row).to_have_attribute("data-state", "active")
    row.get_by_role("button", name="Deactivate").click()
    expect(row).to_have_attribute("data-state", "deactivated")
    # The open session is refused at once, and reloading lands on the sign-in page.
    assert _status_of_me(joiner) == 401
    joiner.reload()
    expect(joiner.locator("input[name=password]")).to_be_visible()
    joiner.fill("input[name=email]", email)
    joiner.fill("input[name=password]", NEW_PASSWORD)
    joiner.click("button[type=submit]")
    expect(joiner.locator(".error")).to_contain_text("Wrong email or password")

    row.get_by_role("button", name="Reactivate").click()
    expect(row).to_have_attribute("data-state", "active")
    joiner.click("button[type=submit]")
    expect(joiner.locator("[data-testid=who]")).to_have_text("Nora Newcomer")

    # A forgotten password: the admin issues a new link; the old password and its session end.
    row.get_by_role("button", name="Reset password").click()
    reset_url = _issued_link(page)
    assert reset_url != url
    resetter = new_context().new_page()
    resetter.goto(reset_url)
    expect(resetter.locator("[data-testid=invite]")).to_contain_text("Choose a new password")
    resetter.fill("input[name=password]", RESET_PASSWORD)
    resetter.fill("input[name=password-again]", RESET_PASSWORD)
    resetter.click("button[type=submit]")
    expect(resetter.locator("[data-testid=who]")).to_have_text("Nora Newcomer")
    assert _status_of_me(joiner) == 401
    Api(server).login(email, RESET_PASSWORD)


def test_a_link_that_expired_or_never_existed_says_so(server: str, admin: Api, new_context: Any,
                                                      database_url: str) -> None:
    page = new_context().new_page()
    page.goto(f"{server}/#/invite/{'A' * 43}")
    expect(page.locator("[data-testid=invite-error]")).to_contain_text("not valid")
    made = admin.post("/api/v1/invites", {"email": f"{unique('late')}@colabel.test"}).json()

    async def expire() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE invites SET expires_at = now() - interval '1 day' "
                               "WHERE user_id = $1", made["user"]["id"])
        finally:
            await conn.close()

    run_sync(expire)
    page.goto(made["invite"]["url"])
    page.reload()
    expect(page.locator("[data-testid=invite-error]")).to_contain_text("expired")
    expect(page.locator("[data-testid=invite-error] a")).to_have_attribute("href", "#/login")


def test_owner_adds_a_member_through_suggestions_and_keeps_the_last_owner(
        server: str, make_user: Callable[..., Api], new_context: Any) -> None:
    owner = make_user("owner")
    tag = unique("Quill")
    colleague = make_user(f"{tag}-colleague")
    first = owner.post("/api/v1/projects", project_body()).json()["project"]
    owner.put(f"/api/v1/projects/{first['id']}/members", {"email": colleague.email, "role": "labeler"})
    second = owner.post("/api/v1/projects", project_body()).json()["project"]

    page = sign_in(new_context(), server, owner, f"#/p/{second['id']}")
    members = page.locator("[data-testid=members]")
    mine = members.locator(f"[data-testid=member-{owner.id}]")
    # The only owner: no role menu, no Remove, and a word on why.
    expect(mine.locator("[data-testid=last-owner]")).to_be_visible()
    expect(mine.locator("select")).to_have_count(0)
    expect(mine.get_by_role("button", name="Remove")).to_have_count(0)

    page.fill("input[name=member-email]", tag[:9])
    suggestions = page.locator("[data-testid=member-suggestions]")
    expect(suggestions).to_contain_text(colleague.email)
    suggestions.get_by_role("option").filter(has_text=colleague.email).click()
    expect(page.locator("input[name=member-email]")).to_have_value(colleague.email)
    page.select_option("select[name=member-role]", "owner")
    page.click("[data-testid=add-member] button[type=submit]")
    theirs = members.locator(f"[data-testid=member-{colleague.id}]")
    expect(theirs).to_contain_text(colleague.email)
    expect(theirs.locator("select")).to_have_value("owner")
    # Two owners now: either may step down or leave.
    expect(mine.locator("[data-testid=last-owner]")).to_have_count(0)
    expect(mine.get_by_role("button", name="Remove")).to_be_visible()
    shot(page, "members")
    # The server agrees with what the page offers.
    listed = owner.get(f"/api/v1/projects/{second['id']}/members").json()["members"]
    assert {(m["user"]["id"], m["role"]) for m in listed} == {(owner.id, "owner"), (colleague.id, "owner")}
