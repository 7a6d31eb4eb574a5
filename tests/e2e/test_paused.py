"""A project paused by its owner while people label: the labeler sees it on their next
action (their work so far is saved and what is on screen can still be submitted), with a way
to try again; a labeler arriving while it is paused is told so instead of getting an error."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.e2e.conftest import sign_in
from tests.e2e.helpers import center, drag, items_by_key, stage_ready
from tests.export_setup import MakeUser, started_project

TREE = [{"name": "cat"}, {"name": "dog"}]
PAUSED = re.compile("paused by its owner; your work is saved")


def test_pausing_tells_the_labeler_on_their_next_action(make_user: MakeUser, data_dir: Path, server: str,
                                                        new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "bbox", TREE, 6)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    key = page.locator(".side strong").first.inner_text()
    assert owner.post(f"/api/v1/projects/{pid}/pause").status_code == 200

    page.keyboard.press("1")
    cx, cy = center(page)
    drag(page, cx - 60, cy - 40, cx + 60, cy + 40)
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    page.click("[data-testid=submit]")
    notice = page.locator("[data-testid=project-paused]")
    expect(notice).to_be_visible()
    expect(notice).to_have_text(PAUSED)
    # The submit went through, and the item leased before the pause is still there to finish.
    item = owner.get(f"/api/v1/projects/{pid}/items/{items_by_key(owner, pid)[key]['id']}").json()["item"]
    assert item["status"] == "labeled"
    stage_ready(page)
    assert page.locator(".side strong").first.inner_text() != key

    # Trying again while paused says the same; once resumed, the notice goes.
    notice.locator("[data-testid=try-again]").click()
    expect(notice).to_have_text(PAUSED)
    assert owner.post(f"/api/v1/projects/{pid}/resume").status_code == 200
    notice.locator("[data-testid=try-again]").click()
    expect(notice).to_have_count(0)


def test_arriving_while_paused_says_so(make_user: MakeUser, data_dir: Path, server: str,
                                       new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "multiclass", TREE, 4)
    assert owner.post(f"/api/v1/projects/{pid}/pause").status_code == 200
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    notice = page.locator("[data-testid=project-paused]")
    expect(notice).to_have_text(PAUSED)
    expect(page.locator("[data-testid^=cell-]")).to_have_count(0)
    assert owner.post(f"/api/v1/projects/{pid}/resume").status_code == 200
    notice.locator("[data-testid=try-again]").click()
    expect(page.locator("[data-testid=cell-0] img")).to_be_visible()
    expect(notice).to_have_count(0)
