"""A labeler goes back to what they submitted: corrects it while the item is not decided
(the correction is what the others' work is compared with), comes back to the same page of
work, and finds the item read-only once it is decided."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import shot, sign_in
from tests.e2e.helpers import center, drag, stage_ready
from tests.work_setup import MakeUser, setup_project


def _box(page: Page, dx: float) -> None:
    cx, cy = center(page)
    drag(page, cx + dx - 40, cy - 30, cx + dx + 40, cy + 30)


def _key(page: Page) -> str:
    return page.locator(".side strong").first.inner_text()


def _synced(page: Page) -> None:
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")


def test_a_labeler_corrects_a_submitted_item_until_it_is_decided(
        make_user: MakeUser, data_dir: Path, server: str, new_context: Any) -> None:
    p = setup_project(make_user, data_dir, items=3, task_type="bbox", labelers=2,
                      consensus={"enabled": True, "min": 2, "max": 2, "threshold": 0.5})
    a, b = p.labelers
    page = sign_in(new_context(), server, a, f"#/p/{p.pid}/label")
    stage_ready(page)
    first = _key(page)
    _box(page, -100)
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(1)
    _synced(page)
    page.click("[data-testid=submit]")
    page.wait_for_function(f"() => document.querySelector('.side strong')?.innerText !== {first!r}")
    stage_ready(page)
    second = _key(page)

    # Previous: the item just submitted, open again and still editable.
    page.click("[data-testid=previous]")
    expect(page.locator("[data-testid=revisit]")).to_have_attribute("data-editable", "true")
    expect(page.locator(".side strong").first).to_have_text(first)
    stage_ready(page)
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(1)
    _box(page, 100)
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(2)
    _synced(page)
    shot(page, "going-back-correct")
    page.click("[data-testid=resubmit]")
    expect(page.locator("[data-testid=correction-saved]")).to_contain_text(first)
    # Back at work on the page that was on screen before going back.
    stage_ready(page)
    expect(page.locator(".side strong").first).to_have_text(second)

    # The other labeler disagrees (one box elsewhere): the item goes to review, which
    # compares their box with the corrected annotation (two boxes), not the first submit.
    iid = next(x["item"]["id"] for x in a.get(f"/api/v1/projects/{p.pid}/tasks/history").json()["items"])
    theirs = None
    for _ in range(3):
        got = b.post(f"/api/v1/projects/{p.pid}/tasks/next", {"count": 1}).json()["leases"]
        if got and got[0]["item"]["id"] == iid:
            theirs = got[0]
            break
        if got:
            b.post(f"/api/v1/leases/{got[0]['lease_id']}/skip")
    assert theirs is not None
    box = {"id": "b1", "kind": "box", "label": p.labels["dog"], "x": 0.0, "y": 0.0, "w": 0.1, "h": 0.1}
    r = b.post(f"/api/v1/leases/{theirs['lease_id']}/submit", {"annotation": {"shapes": [box]}})
    assert r.json()["item_status"] == "needs_review", r.text
    review = p.owner.get(f"/api/v1/projects/{p.pid}/review").json()["items"]
    by_user = {x["user"]["id"]: x["annotation"] for x in review[0]["annotations"]}
    assert a.user is not None and len(by_user[a.user["id"]]["shapes"]) == 2

    # Decided (here: in review): the list says so and the item opens read-only.
    page.click("[data-testid=history]")
    expect(page.locator("[data-testid=history-0]")).to_contain_text("decided")
    page.click("[data-testid=history-0]")
    expect(page.locator("[data-testid=revisit]")).to_have_attribute("data-editable", "false")
    expect(page.locator("[data-testid=revisit-state]")).to_contain_text("read-only")
    expect(page.locator("[data-testid=resubmit]")).to_have_count(0)
    stage_ready(page)
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(2)
    _box(page, 0)
    page.keyboard.press("Delete")
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(2)
    page.click("[data-testid=back-to-work]")
    stage_ready(page)
    expect(page.locator(".side strong").first).to_have_text(second)


def test_a_classification_page_item_is_corrected_with_the_keyboard(
        make_user: MakeUser, data_dir: Path, server: str, new_context: Any) -> None:
    p = setup_project(make_user, data_dir, items=6, labelers=2,
                      consensus={"enabled": True, "min": 2, "max": 3, "threshold": 0.5})
    a = p.labelers[0]
    page = sign_in(new_context(), server, a, f"#/p/{p.pid}/label")
    page.click("[data-testid=grid-4]")
    expect(page.locator("[data-testid^=cell-]")).to_have_count(4)
    page.keyboard.press("a")
    page.keyboard.press("1")
    expect(page.locator("[data-testid=tags-3]")).to_contain_text("cat")
    _synced(page)
    page.click("[data-testid=submit]")
    expect(page.locator("[data-testid=tags-0]")).to_have_text("")

    page.click("[data-testid=previous]")
    expect(page.locator("[data-testid=revisit]")).to_have_attribute("data-editable", "true")
    expect(page.locator("[data-testid^=cell-]")).to_have_count(1)
    expect(page.locator("[data-testid=tags-0]")).to_contain_text("cat")
    expect(page.locator("[data-testid=submit]")).to_have_count(0)
    page.keyboard.press("2")
    expect(page.locator("[data-testid=tags-0]")).to_have_text("dog")
    _synced(page)
    page.click("[data-testid=resubmit]")
    expect(page.locator("[data-testid=correction-saved]")).to_be_visible()
    entries = a.get(f"/api/v1/projects/{p.pid}/tasks/history").json()["items"]
    assert len(entries) == 4
    corrected = [e for e in entries if e["corrected_at"]]
    assert len(corrected) == 1 and corrected[0]["lease_id"] == entries[0]["lease_id"]
    # Back at work: the page of four that was leased ahead.
    expect(page.locator("[data-testid^=cell-]")).to_have_count(2)
