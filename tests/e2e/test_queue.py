"""The work queue in the browser: a reload resumes the same items with their drawings, at
most the page on screen and one page ahead are held, and leases the labeler walks away from
(changing the grid size, leaving the label page, signing out) are given back at once, and a
closed tab's after a grace in which a reload still finds them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import sign_in
from tests.e2e.helpers import (
    LeaseLog,
    active_leases,
    center,
    drag,
    lease_seconds_left,
    stage_ready,
    still_active,
)
from tests.export_setup import MakeUser, started_project
from tests.infra import Api

TREE = [{"name": "cat"}, {"name": "dog"}, {"name": "car"}]


def _wait_active(owner: Api, pid: int, want: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (held := active_leases(owner, pid)) != want:
        assert time.monotonic() < deadline, f"{held} active leases, expected {want}"
        time.sleep(0.2)


def _grid_keys(page: Page) -> list[str]:
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('[data-testid^=cell-] img')];"
        " return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0) }")
    return [img.get_attribute("alt") or "" for img in page.locator("[data-testid^=cell-] img").all()]


def _label_page(page: Page, key: str) -> None:
    page.keyboard.press("a")
    page.keyboard.press(key)
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    page.keyboard.press("Control+Enter")


def test_a_reload_resumes_the_same_items_with_their_drawings(make_user: MakeUser, data_dir: Path, server: str,
                                                             new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "bbox", TREE, 6)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    key = page.locator(".side strong").first.inner_text()
    page.keyboard.press("2")
    cx, cy = center(page)
    drag(page, cx - 120, cy - 60, cx - 40, cy + 20)
    drag(page, cx + 20, cy - 20, cx + 100, cy + 60)
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(2)
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    _wait_active(owner, pid, 2)  # the item on screen and one ahead

    page.reload()
    stage_ready(page)
    assert page.locator(".side strong").first.inner_text() == key
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(2)
    _wait_active(owner, pid, 2)
    # Work goes on from there: the next item is another one.
    page.click("[data-testid=submit]")
    page.wait_for_function(f"() => document.querySelector('.side strong')?.innerText !== {key!r}")
    stage_ready(page)
    _wait_active(owner, pid, 2)


def test_a_reloaded_grid_page_comes_back_in_order(make_user: MakeUser, data_dir: Path, server: str,
                                                  new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "multiclass", TREE, 12)
    page = sign_in(new_context(), server, labeler)
    page.evaluate("localStorage.setItem('colabel.grid', '4')")
    page.goto(f"{server}/#/p/{pid}/label")
    before = _grid_keys(page)
    page.click("[data-testid=cell-2]")
    page.keyboard.press("2")
    expect(page.locator("[data-testid=tags-2]")).to_have_text("dog")
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    _wait_active(owner, pid, 8)

    page.reload()
    assert _grid_keys(page) == before
    expect(page.locator("[data-testid=tags-2]")).to_have_text("dog")
    _wait_active(owner, pid, 8)
    _label_page(page, "1")
    page.wait_for_function(f"() => document.querySelector('[data-testid=cell-0] img')?.alt !== {before[0]!r}")
    after = _grid_keys(page)
    assert not set(after) & set(before), (before, after)
    _wait_active(owner, pid, 8)


def test_changing_the_grid_size_gives_the_old_leases_back(make_user: MakeUser, data_dir: Path, server: str,
                                                          new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "multiclass", TREE, 20)
    page = sign_in(new_context(), server, labeler)
    page.evaluate("localStorage.setItem('colabel.grid', '4')")
    log = LeaseLog(page)
    page.goto(f"{server}/#/p/{pid}/label")
    _grid_keys(page)
    _wait_active(owner, pid, 8)
    old = log.wait_for(8)

    page.click("[data-testid=grid-1]")
    expect(page.locator("[data-testid^=cell-]")).to_have_count(1)
    _grid_keys(page)
    _wait_active(owner, pid, 2)  # one on screen, one ahead: the eight before went back
    assert still_active(labeler, [lease["lease_id"] for lease in old]) == []
    # ... and whoever asks next can have them.
    now_held = {lease["item"]["id"] for lease in log.wait_for(10)[8:]}
    other = make_user("labeler")
    owner.put(f"/api/v1/projects/{pid}/members", {"email": other.email, "role": "labeler"})
    r = other.post(f"/api/v1/projects/{pid}/tasks/next", {"count": 9})
    assert r.status_code == 200, r.text
    theirs = {lease["item"]["id"] for lease in r.json()["leases"]}
    assert {lease["item"]["id"] for lease in old} - now_held <= theirs


def test_leaving_the_label_page_gives_the_leases_back(make_user: MakeUser, data_dir: Path, server: str,
                                                      new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "multiclass", TREE, 12)
    page = sign_in(new_context(), server, labeler)
    page.evaluate("localStorage.setItem('colabel.grid', '4')")
    log = LeaseLog(page)
    page.goto(f"{server}/#/p/{pid}/label")
    _grid_keys(page)
    _wait_active(owner, pid, 8)
    assert len(log.wait_for(8)) == 8
    page.click(".projectnav a >> nth=0")  # to the project's home page
    expect(page.locator("[data-testid^=cell-]")).to_have_count(0)
    _wait_active(owner, pid, 0)
    assert still_active(labeler, log.ids()) == []


def test_closing_the_tab_gives_the_leases_back_after_a_grace(
        make_user: MakeUser, data_dir: Path, server: str, new_context: Any, database_url: str) -> None:
    """A closing tab cannot be told from a reload: its leases go back 30 s later unless the
    labeler comes back first, in which case the page is exactly as it was."""
    owner, labeler, pid, labels = started_project(make_user, data_dir, "multiclass", TREE, 12)
    ctx = new_context()
    page = sign_in(ctx, server, labeler)
    page.evaluate("localStorage.setItem('colabel.grid', '4')")
    log = LeaseLog(page)
    page.goto(f"{server}/#/p/{pid}/label")
    keys = _grid_keys(page)
    page.click("[data-testid=cell-1]")
    page.keyboard.press("3")
    expect(page.locator("[data-testid=tags-1]")).to_have_text("car")
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    _wait_active(owner, pid, 8)

    page.close()
    # All eight (the page on screen and the one ahead) now expire within the grace.
    deadline = time.monotonic() + 10
    while True:
        left = lease_seconds_left(database_url, pid)
        if len(left) == 8 and all(0 < s <= 30 for s in left):
            break
        assert time.monotonic() < deadline, left
        time.sleep(0.2)
    # Back within the grace: the same page in the same places, the label on its image.
    again = ctx.new_page()
    again.goto(f"{server}/#/p/{pid}/label")
    assert _grid_keys(again) == keys
    expect(again.locator("[data-testid=tags-1]")).to_have_text("car")
    _wait_active(owner, pid, 8)
    assert len(log.wait_for(8)) == 8
    assert set(still_active(labeler, log.ids())) == set(log.ids())  # resumed, with their lifetime back


def test_signing_out_gives_the_leases_back(make_user: MakeUser, data_dir: Path, server: str,
                                           new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "bbox", TREE, 4)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    log = LeaseLog(page)
    page.reload()
    stage_ready(page)
    _wait_active(owner, pid, 2)
    assert len(log.wait_for(2)) == 2
    page.click("text=Sign out")
    expect(page.locator("input[name=password]")).to_be_visible()
    _wait_active(owner, pid, 0)
    assert still_active(labeler, log.ids()) == []
