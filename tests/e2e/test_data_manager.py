"""The data manager in Chromium, as an owner uses it: the monitor's activity names the file
and links to it, the item shows each labeler's annotation and the final one, filters and
file-name search narrow the list, previous / next walk the filtered list, and a selection is
re-opened and sent to review."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.e2e.conftest import shot, sign_in
from tests.work_setup import MakeUser, item, next_, setup_project, submit


def _box(label: int, x: float) -> dict[str, Any]:
    return {"shapes": [{"id": "s1", "kind": "box", "label": label, "x": x, "y": 0.2, "w": 0.3, "h": 0.4}]}


def test_owner_browses_filters_walks_and_acts_on_items(make_user: MakeUser, data_dir: Path, server: str,
                                                        new_context: Any) -> None:
    p = setup_project(make_user, data_dir, items=6, task_type="bbox", labelers=1)
    owner, pid, labeler = p.owner, p.pid, p.labelers[0]
    page = sign_in(new_context(), server, owner, f"#/p/{pid}/monitor")
    expect(page.locator("[data-testid=events-state]")).to_have_attribute("data-state", "open")

    # Two items labeled while the owner watches: the activity names the file, as a link.
    done = []
    for x in (0.1, 0.5):
        lease = next_(labeler, pid, 1)[0]
        assert submit(labeler, lease, _box(p.labels["cat"], x)).status_code == 200
        done.append(lease["item"])
    first, second = sorted(done, key=lambda i: i["key"])
    link = page.locator("[data-testid=activity-item]", has_text=done[-1]["key"])
    expect(link).to_be_visible(timeout=10_000)
    link.click()
    expect(page).to_have_url(re.compile(rf"#/p/{pid}/data/{done[-1]['id']}$"))
    expect(page.locator("[data-testid=item-title]")).to_have_text(done[-1]["key"])
    # The final label and the labeler's own annotation, each a thumbnail with its box drawn.
    thumbs = page.locator("[data-testid=annotation-thumb]")
    expect(thumbs).to_have_count(2)
    expect(thumbs.nth(0)).to_contain_text("Final")
    expect(thumbs.nth(1)).to_contain_text("labeler0")
    expect(page.locator("[data-testid=item-view] .dm-overlay.full rect")).to_have_count(1)
    expect(page.locator(".dm-tag")).to_have_text("cat")
    thumbs.nth(1).click()
    expect(page.locator("[data-testid=shown-annotation]")).to_have_text("labeler0")
    shot(page, "data-item")

    # The list: filter by status, then find an item by name and open it.
    page.click("[data-testid=back-to-list]")
    expect(page.locator("[data-testid=item-card]")).to_have_count(6)
    page.check("[data-testid=status-labeled]")
    expect(page.locator("[data-testid=matching]")).to_have_text("2 items match")
    expect(page.locator("[data-testid=item-card]")).to_have_count(2)
    expect(page.locator("[data-testid=item-card] svg rect")).to_have_count(2)
    shot(page, "data-list")
    page.fill("[data-testid=filter-name]", first["key"][:3])
    expect(page.locator("[data-testid=item-card]")).to_have_count(1)
    page.locator("[data-testid=item-key]", has_text=first["key"]).click()
    expect(page.locator("[data-testid=item-title]")).to_have_text(first["key"])
    # Next / previous walk the filtered list (labeled items only), by button and by key.
    page.goto(f"{server}/#/p/{pid}/data/{first['id']}?status=labeled")
    expect(page.locator("[data-testid=item-title]")).to_have_text(first["key"])
    expect(page.locator("[data-testid=prev-item]")).to_be_disabled()
    page.click("[data-testid=next-item]")
    expect(page.locator("[data-testid=item-title]")).to_have_text(second["key"])
    expect(page.locator("[data-testid=prev-item]")).to_be_enabled()  # its neighbours are known
    expect(page.locator("[data-testid=next-item]")).to_be_disabled()
    page.keyboard.press("ArrowLeft")
    expect(page.locator("[data-testid=item-title]")).to_have_text(first["key"])

    # Select the first and re-open it; send the second to review.
    page.click("[data-testid=back-to-list]")
    expect(page.locator("[data-testid=item-card]")).to_have_count(2)
    page.get_by_label(f"select {first['key']}").check()
    page.click("[data-testid=action-reopen]")
    expect(page.locator("[data-testid=action-notice]")).to_have_text("1 item re-opened.")
    expect(page.locator("[data-testid=item-card]")).to_have_count(1)
    page.get_by_label(f"select {second['key']}").check()
    page.click("[data-testid=action-review]")
    expect(page.locator("[data-testid=action-notice]")).to_have_text("1 item sent to review.")
    expect(page.locator("[data-testid=no-items]")).to_be_visible()
    assert item(owner, pid, first["id"])["status"] == "in_progress"
    assert item(owner, pid, second["id"])["status"] == "needs_review"
    page.uncheck("[data-testid=status-labeled]")
    page.check("[data-testid=status-needs_review]")
    expect(page.locator("[data-testid=item-key]")).to_have_text([second["key"]])
