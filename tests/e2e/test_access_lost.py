"""Losing access while a page is open: a labeler removed from the project is told the
project is no longer available (the page stops reconnecting), and a reviewer whose session
is ended elsewhere is sent to the sign-in page."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import sign_in
from tests.export_setup import MakeUser, started_project
from tests.reliability import Measured

TREE = [{"name": "cat"}, {"name": "dog"}]


@pytest.mark.reliability(
    area="Access",
    attack="An owner removes a labeler from the project while the labeling page is open in "
           "their browser.",
    promise="The page says the project is no longer available and stops reconnecting.")
def test_a_removed_labeler_is_told_the_project_is_gone(make_user: MakeUser, data_dir: Path,
                                                       server: str, new_context: Any,
                                                       measured: Measured) -> None:
    owner, labeler, pid, _ = started_project(make_user, data_dir, "multiclass", TREE, 4)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    started = time.monotonic()
    assert owner.delete(f"/api/v1/projects/{pid}/members/{labeler.id}").status_code == 204
    notice = page.locator("[data-testid=doc-closed]")
    expect(notice).to_have_text("This project is no longer available to you.", timeout=5_000)
    took = time.monotonic() - started
    # It stays closed: no reconnect brings the document back.
    page.wait_for_timeout(1_500)
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "offline")
    measured(f"the notice showed {took:.2f} s after the removal was sent; still offline 1.5 s later")


@pytest.mark.reliability(
    area="Access",
    attack="A reviewer's browser session is signed out from elsewhere while their monitoring "
           "page is open.",
    promise="The page's live socket is closed and the browser goes to the sign-in page.")
def test_a_session_ended_elsewhere_goes_to_sign_in(make_user: MakeUser, data_dir: Path,
                                                   server: str, new_context: Any,
                                                   measured: Measured) -> None:
    owner, _, pid, _ = started_project(make_user, data_dir, "multiclass", TREE, 2)
    reviewer = make_user("reviewer")
    owner.put(f"/api/v1/projects/{pid}/members", {"email": reviewer.email, "role": "reviewer"})
    ctx = new_context()
    page = sign_in(ctx, server, reviewer, f"#/p/{pid}/monitor")
    expect(page.locator("[data-testid=events-state]")).to_have_attribute("data-state", "open")
    # The browser's own session, signed out from somewhere else (another tab, a script).
    cookie = next(c["value"] for c in ctx.cookies() if c["name"] == "colabel_session")
    started = time.monotonic()
    r = httpx.post(f"{server}/api/v1/auth/logout", headers={
        "Cookie": f"colabel_session={cookie}", "Origin": server})
    assert r.status_code == 204
    expect(page.locator("input[name=email]")).to_be_visible(timeout=5_000)
    measured(f"the sign-in page showed {time.monotonic() - started:.2f} s after the sign-out")
