"""Which label a new shape gets: one is chosen when the page opens (the last one used in the
project, else the first leaf), a number key chooses the label of the NEXT shape, and
relabelling a shape is an explicit action (Shift+number, or a click in the picker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import sign_in
from tests.e2e.helpers import center, drag, items_by_key, shape_labels, stage_ready
from tests.export_setup import MakeUser, started_project

# Display order: animal, animal/cat, animal/dog, car; hotkeys go to leaves first: cat 1,
# dog 2, car 3, then the group animal 4. The first leaf, cat, is chosen when the page opens.
TREE = [{"name": "animal", "children": [{"name": "cat"}, {"name": "dog"}]}, {"name": "car"}]


def _box(page: Page, dx: float) -> None:
    cx, cy = center(page)
    drag(page, cx + dx - 40, cy - 30, cx + dx + 40, cy + 30)


def _submitted_shapes(page: Page, owner: Any, pid: int) -> list[dict[str, Any]]:
    """Submit the item on screen; its shapes as the server recorded them."""
    key = page.locator(".side strong").first.inner_text()
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    page.click("[data-testid=submit]")
    page.wait_for_function(f"() => document.querySelector('.side strong')?.innerText !== {key!r}")
    return list(_final_of(owner, pid, key)["shapes"])


def _final_of(owner: Any, pid: int, key: str) -> dict[str, Any]:
    iid = items_by_key(owner, pid)[key]["id"]
    item = owner.get(f"/api/v1/projects/{pid}/items/{iid}").json()["item"]
    final: dict[str, Any] = item["final"]
    return final


def test_a_box_drawn_right_away_gets_the_default_label(make_user: MakeUser, data_dir: Path, server: str,
                                                       new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "bbox", TREE, 6)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    # No key pressed, nothing clicked: the first leaf in display order is chosen.
    expect(page.locator("[data-testid='label-animal/cat']")).to_have_class("active")
    _box(page, 0)
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(1)
    assert shape_labels(page) == ["animal/cat"]
    [shape] = _submitted_shapes(page, owner, pid)
    assert shape["label"] == labels["animal/cat"]

    # The label chosen last in this project is where the next item (and the next visit) starts.
    stage_ready(page)
    page.keyboard.press("3")
    _box(page, 0)
    assert shape_labels(page) == ["car"]
    _submitted_shapes(page, owner, pid)
    page.reload()
    stage_ready(page)
    expect(page.locator("[data-testid=label-car]")).to_have_class("active")
    _box(page, 0)
    assert shape_labels(page) == ["car"]


def test_a_number_key_labels_the_next_shape_not_the_one_just_drawn(make_user: MakeUser, data_dir: Path,
                                                                   server: str, new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "bbox", TREE, 2)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    page.keyboard.press("1")  # cat
    _box(page, -120)
    page.keyboard.press("2")  # dog, for the next box: the cat box keeps its label
    expect(page.locator("[data-testid='label-animal/dog']")).to_have_class("active")
    assert shape_labels(page) == ["animal/cat"]
    _box(page, 120)
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(2)
    assert sorted(shape_labels(page)) == ["animal/cat", "animal/dog"]

    # Relabelling is explicit: select the cat box, Shift+3 makes it a car.
    page.locator("[data-testid=shapes] .shape a", has_text="animal/cat").click()
    page.keyboard.press("Shift+3")
    expect(page.locator("[data-testid=shapes]")).to_contain_text("car")
    assert sorted(shape_labels(page)) == ["animal/dog", "car"]
    # ... and so is a click in the picker while a shape is selected.
    page.locator("[data-testid=shapes] .shape a", has_text="animal/dog").click()
    page.click("[data-testid='label-animal/cat']")
    expect(page.locator("[data-testid=shapes]")).to_contain_text("animal/cat")
    assert sorted(shape_labels(page)) == ["animal/cat", "car"]

    page.keyboard.press("?")
    sheet = page.locator("[data-testid=shortcuts]")
    expect(sheet).to_contain_text("Shift+label key (1–4)")
    expect(sheet).to_contain_text("relabel the selected shape")
    page.keyboard.press("Escape")
    expect(sheet).to_have_count(0)
    shapes = _submitted_shapes(page, owner, pid)
    assert sorted(s["label"] for s in shapes) == sorted([labels["car"], labels["animal/cat"]])
