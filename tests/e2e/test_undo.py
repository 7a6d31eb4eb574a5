"""Undo and redo of one's own changes, for every tool: boxes (Ctrl+Z brings a deleted shape
back, Ctrl+Shift+Z and Ctrl+Y remove it again), polygons, mask strokes and class toggles on
the grid and in review's final document. A collaborator's edits on the same document are
never undone by someone else's Ctrl+Z."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import sign_in
from tests.e2e.helpers import center, drag, items_by_key, stage_ready
from tests.export_setup import MakeUser, started_project

TREE = [{"name": "cat"}, {"name": "dog"}, {"name": "car"}]


def _shapes(page: Page) -> Any:
    return page.locator("[data-testid=shapes] .shape")


def test_a_deleted_box_comes_back_with_undo(make_user: MakeUser, data_dir: Path, server: str,
                                            new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "bbox", TREE, 2)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    expect(page.locator("[data-testid=undo]")).to_be_disabled()
    expect(page.locator("[data-testid=redo]")).to_be_disabled()
    cx, cy = center(page)
    drag(page, cx - 50, cy - 40, cx + 50, cy + 40)
    expect(_shapes(page)).to_have_count(1)
    expect(page.locator("[data-testid=undo]")).to_be_enabled()

    _shapes(page).locator("a").click()  # select it, then delete it
    page.keyboard.press("Delete")
    expect(_shapes(page)).to_have_count(0)
    page.keyboard.press("Control+z")
    expect(_shapes(page)).to_have_count(1)
    expect(page.locator("[data-testid=redo]")).to_be_enabled()
    page.keyboard.press("Control+Shift+z")
    expect(_shapes(page)).to_have_count(0)
    page.keyboard.press("Control+z")
    expect(_shapes(page)).to_have_count(1)
    page.keyboard.press("Control+y")
    expect(_shapes(page)).to_have_count(0)
    # The toolbar buttons do the same; undoing past the drawing removes the box it drew.
    page.click("[data-testid=undo]")
    expect(_shapes(page)).to_have_count(1)
    page.click("[data-testid=undo]")
    expect(_shapes(page)).to_have_count(0)
    expect(page.locator("[data-testid=undo]")).to_be_disabled()
    page.click("[data-testid=redo]")
    expect(_shapes(page)).to_have_count(1)

    page.keyboard.press("?")
    expect(page.locator("[data-testid=shortcuts]")).to_contain_text("Ctrl+Z")
    expect(page.locator("[data-testid=shortcuts]")).to_contain_text("Ctrl+Shift+Z / Ctrl+Y")


def test_undo_leaves_a_collaborators_edits_alone(make_user: MakeUser, data_dir: Path, server: str,
                                                 new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "polygon", TREE, 2)
    reviewer = make_user("reviewer")
    owner.put(f"/api/v1/projects/{pid}/members", {"email": reviewer.email, "role": "reviewer"})
    iid = next(iter(items_by_key(owner, pid).values()))["id"]
    # Both edit the item's final document in review, at the same time.
    mine = sign_in(new_context(), server, reviewer, f"#/p/{pid}/review?item={iid}")
    theirs = sign_in(new_context(), server, owner, f"#/p/{pid}/review?item={iid}")
    stage_ready(mine)
    stage_ready(theirs)

    cx, cy = center(mine)
    for dx, dy in ((-150, -60), (-60, -60), (-100, 40)):  # a triangle on the left
        mine.mouse.click(cx + dx, cy + dy)
    mine.keyboard.press("Enter")
    expect(_shapes(mine)).to_have_count(1)
    expect(_shapes(theirs)).to_have_count(1)
    cx, cy = center(theirs)
    for dx, dy in ((60, -60), (150, -60), (100, 40)):  # theirs, on the right
        theirs.mouse.click(cx + dx, cy + dy)
    theirs.keyboard.press("Enter")
    expect(_shapes(mine)).to_have_count(2)

    mine.keyboard.press("Control+z")
    expect(_shapes(mine)).to_have_count(1)
    expect(_shapes(theirs)).to_have_count(1)
    # Nothing of mine is left to undo; their polygon stays.
    expect(mine.locator("[data-testid=undo]")).to_be_disabled()
    mine.keyboard.press("Control+z")
    mine.wait_for_timeout(300)
    expect(_shapes(mine)).to_have_count(1)
    expect(_shapes(theirs)).to_have_count(1)
    # Their own undo still works on their polygon; my redo brings mine back.
    theirs.keyboard.press("Control+z")
    expect(_shapes(mine)).to_have_count(0)
    mine.keyboard.press("Control+y")
    expect(_shapes(theirs)).to_have_count(1)
    expect(_shapes(mine)).to_have_count(1)


def test_mask_strokes_undo_and_redo(make_user: MakeUser, data_dir: Path, server: str,
                                    new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "semantic", TREE, 2)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    tiles = page.locator("[data-testid=painted-tiles]")
    expect(tiles).to_have_attribute("data-count", "0")
    cx, cy = center(page)
    drag(page, cx - 80, cy, cx + 80, cy, steps=10)  # one stroke, many moves: one step to undo
    expect(tiles).not_to_have_attribute("data-count", "0")
    painted = tiles.get_attribute("data-count")
    drag(page, cx - 80, cy + 60, cx + 80, cy + 60, steps=10)
    page.keyboard.press("Control+z")
    expect(tiles).to_have_attribute("data-count", painted or "")
    page.keyboard.press("Control+z")
    expect(tiles).to_have_attribute("data-count", "0")
    page.keyboard.press("Control+Shift+z")
    expect(tiles).to_have_attribute("data-count", painted or "")
    # What the server keeps follows: submit needs paint, and there is some after the redo.
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    key = page.locator(".side strong").first.inner_text()
    page.click("[data-testid=submit]")
    page.wait_for_function(f"() => document.querySelector('.side strong')?.innerText !== {key!r}")
    item = owner.get(f"/api/v1/projects/{pid}/items/{items_by_key(owner, pid)[key]['id']}").json()["item"]
    assert item["final"]["mask"]["tiles"]


def test_class_toggles_undo_on_the_grid(make_user: MakeUser, data_dir: Path, server: str,
                                        new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "multilabel", TREE, 4)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    page.wait_for_selector("[data-testid=cell-3] img")
    tags = [page.locator(f"[data-testid=tags-{i}]") for i in range(4)]
    page.click("[data-testid=cell-0]")
    page.keyboard.press("1")
    page.keyboard.press("2")
    expect(tags[0]).to_have_text(re.compile("cat.*dog"))
    page.keyboard.press("Control+z")
    expect(tags[0]).to_have_text("cat")
    page.keyboard.press("Control+z")
    expect(tags[0]).to_have_text("")
    page.keyboard.press("Control+y")
    expect(tags[0]).to_have_text("cat")
    # A label given to the whole page at once is one step.
    page.keyboard.press("a")
    page.keyboard.press("3")
    for t in tags:
        expect(t).to_contain_text("car")
    page.click("[data-testid=undo]")
    for t in tags:
        expect(t).not_to_contain_text("car")
    expect(tags[0]).to_have_text("cat")
