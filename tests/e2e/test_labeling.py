"""Labeling in the browser: drawing a box with the mouse while someone watches it appear live,
and two labelers in a consensus flow that ends labeled and in Needs Review, resolved by a
reviewer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shot, sign_in
from tests.e2e.helpers import center, items_by_key, stage_ready
from tests.export_setup import MakeUser, export, new_project, started_project
from tests.infra import Api, unique

TREE = [{"name": "cat"}, {"name": "dog"}, {"name": "car"}]


def test_a_drawn_box_appears_live_for_a_watcher(make_user: MakeUser, data_dir: Path, server: str,
                                                new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "bbox", TREE, 3)

    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    key = page.locator(".side strong").first.inner_text()
    iid = items_by_key(owner, pid)[key]["id"]

    watcher = sign_in(new_context(), server, owner, f"#/p/{pid}/review?item={iid}")
    stage_ready(watcher)
    expect(watcher.locator("[data-testid=outcome]")).to_contain_text("labeler")
    assert watcher.locator("[data-testid=stage] [data-labeler-shape]").count() == 0

    page.keyboard.press("2")  # the hotkey of "dog"
    stage = page.locator("[data-testid=stage]").bounding_box()
    assert stage is not None
    cx, cy = stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2
    page.mouse.move(cx - 60, cy - 40)
    page.mouse.down()
    page.mouse.move(cx, cy, steps=5)
    page.mouse.move(cx + 50, cy + 30, steps=5)
    page.mouse.up()
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(1)
    expect(page.locator("[data-testid=shapes]")).to_contain_text("dog")
    # The watcher has the labeler's document open: the box appears there, live.
    expect(watcher.locator("[data-testid=stage] [data-labeler-shape]")).to_have_count(1, timeout=10_000)
    expect(watcher.locator("[data-testid=stage] [data-labeler-shape] .tag")).to_have_text("dog")
    shot(page, "labeling-boxes")
    shot(watcher, "review-watching")

    item = _submit_and_read(page, owner, pid, key)
    assert item["status"] == "labeled" and item["decided_by"] == "single"
    [box] = item["final"]["shapes"]
    assert box["label"] == labels["dog"] and box["kind"] == "box" and 0 < box["w"] < 1 and 0 < box["h"] < 1


def _label_grid(page: Page, votes: dict[str, str]) -> None:
    """Give each image on the grid page its label by hotkey, then submit the page."""
    page.wait_for_selector("[data-testid=cell-0] img")
    cells = page.locator("[data-testid^=cell-]")
    expect(cells).to_have_count(len(votes))
    for i in range(cells.count()):
        key = cells.nth(i).locator("img").get_attribute("alt")
        assert key in votes
        cells.nth(i).click()
        page.keyboard.press(str([n["name"] for n in TREE].index(votes[key]) + 1))
        expect(page.locator(f"[data-testid=tags-{i}]")).to_contain_text(votes[key])
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    submits: list[str] = []
    page.on("request", lambda r: submits.append(r.url) if "/submit" in r.url else None)
    page.click("[data-testid=submit]")
    expect(page.locator("[data-testid=no-work]")).to_be_visible()
    # The whole page goes in one request (one transaction), not one per image.
    assert [u.split("/api/v1/")[-1] for u in submits] == ["leases/submit"], submits


def test_two_labelers_reach_consensus_or_review(make_user: MakeUser, data_dir: Path, server: str,
                                                new_context: Any) -> None:
    folder = data_dir / "datasets" / unique("consensus")
    folder.mkdir(parents=True)
    for name, color in (("agree.png", (200, 30, 30)), ("differ.png", (30, 30, 200))):
        Image.new("RGB", (64, 48), color).save(folder / name)
    owner, pid, labels = new_project(make_user, folder, "multiclass", TREE,
                                     consensus={"enabled": True, "min": 2, "max": 2})
    first, second, reviewer = make_user("labeler"), make_user("labeler"), make_user("reviewer")
    for person, role in ((first, "labeler"), (second, "labeler"), (reviewer, "reviewer")):
        owner.put(f"/api/v1/projects/{pid}/members", {"email": person.email, "role": role})
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200

    a = sign_in(new_context(), server, first, f"#/p/{pid}/label")
    _label_grid(a, {"agree.png": "cat", "differ.png": "dog"})
    shot(a, "labeling-grid-done")
    b = sign_in(new_context(), server, second, f"#/p/{pid}/label")
    _label_grid(b, {"agree.png": "cat", "differ.png": "car"})

    items = items_by_key(owner, pid)
    assert items["agree.png"]["status"] == "labeled" and items["agree.png"]["decided_by"] == "consensus"
    assert items["differ.png"]["status"] == "needs_review"

    r = sign_in(new_context(), server, reviewer, f"#/p/{pid}/review")
    r.click("[data-testid='review-item-differ.png']")
    expect(r.locator("[data-testid=outcome]")).to_contain_text("No agreement")
    expect(r.locator(".side")).to_contain_text("dog")
    expect(r.locator(".side")).to_contain_text("car")
    r.click("[data-testid='label-car']")
    shot(r, "review-needs-review")
    r.click("[data-testid=decide]")
    expect(r.locator("[data-testid=review-empty]")).to_be_visible()
    decided = owner.get(f"/api/v1/projects/{pid}/items/{items['differ.png']['id']}").json()["item"]
    assert decided["status"] == "labeled" and decided["decided_by"] == "owner"
    assert decided["final"] == {"classes": [labels["car"]]}


def _submit_and_read(page: Page, owner: Api, pid: int, key: str) -> dict[str, Any]:
    """Submit the item on screen, wait for the next one, and return the submitted item."""
    page.click("[data-testid=submit]")
    page.wait_for_function(f"() => document.querySelector('.side strong')?.innerText !== {key!r}")
    iid = items_by_key(owner, pid)[key]["id"]
    item: dict[str, Any] = owner.get(f"/api/v1/projects/{pid}/items/{iid}").json()["item"]
    return item


def test_polygons_are_clicked_closed_and_edited(make_user: MakeUser, data_dir: Path, server: str,
                                                new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "polygon", TREE, 2)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    key = page.locator(".side strong").first.inner_text()
    page.keyboard.press("3")
    cx, cy = center(page)
    for dx, dy in ((-100, -80), (120, -60), (40, 100)):
        page.mouse.click(cx + dx, cy + dy)
    page.mouse.click(cx - 100, cy - 80)  # back on the first point closes the polygon
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(1)
    page.mouse.dblclick(cx + 10, cy - 70)  # on the first edge: a fourth vertex
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    shot(page, "labeling-polygon")
    [shape] = _submit_and_read(page, owner, pid, key)["final"]["shapes"]
    assert shape["kind"] == "polygon" and shape["label"] == labels["car"] and len(shape["points"]) == 8


def test_semantic_brush_paints_the_mask(make_user: MakeUser, data_dir: Path, server: str,
                                        new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "semantic", TREE, 2)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    key = page.locator(".side strong").first.inner_text()
    page.click("[data-testid=submit]")
    expect(page.locator(".side .error")).to_contain_text("paint at least one region")
    page.keyboard.press("1")
    cx, cy = center(page)
    page.mouse.move(cx - 80, cy)
    page.mouse.down()
    page.mouse.move(cx + 80, cy, steps=8)
    page.mouse.up()
    expect(page.locator(".side")).to_contain_text("painted tile")
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    shot(page, "labeling-semantic")
    mask = _submit_and_read(page, owner, pid, key)["final"]["mask"]
    assert mask["tiles"] and mask["tile_size"] == 256
    _, raw = export(owner, pid, "coco")
    assert labels["cat"] in {a["category_id"] for a in json.loads(raw)["annotations"]}
