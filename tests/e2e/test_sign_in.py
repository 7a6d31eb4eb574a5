"""Signing in from the address people actually type: the bare server URL, without a route."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.export_setup import MakeUser


def test_signing_in_from_the_bare_url_shows_the_app(make_user: MakeUser, server: str,
                                                    new_context: Any) -> None:
    who = make_user("labeler")
    assert who.user is not None
    page = new_context().new_page()
    page.goto(f"{server}/")
    page.fill("input[name=email]", who.user["email"])
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    # Without a reload: the form goes and the signed-in app is there.
    expect(page.locator("[data-testid=who]")).to_be_visible()
    expect(page.locator("input[name=password]")).to_have_count(0)
    assert re.search(r"/#/$", page.url), page.url


def test_a_wrong_password_says_so_on_the_form(make_user: MakeUser, server: str, new_context: Any) -> None:
    who = make_user("labeler")
    assert who.user is not None
    page = new_context().new_page()
    page.goto(f"{server}/")
    page.fill("input[name=email]", who.user["email"])
    page.fill("input[name=password]", PASSWORD + " but wrong")
    page.click("button[type=submit]")
    alert = page.locator(".login [role=alert]")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(re.compile("wrong email or password", re.IGNORECASE))
    expect(page.locator("[data-testid=who]")).to_have_count(0)
    expect(page.locator("input[name=email]")).to_have_value(who.user["email"])
