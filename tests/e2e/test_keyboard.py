"""Labeling with the keyboard alone: on the grid, arrow keys move between images (the focus
is visible), Shift+arrow and Space build a selection, number keys label it and Ctrl+Enter
submits; review's class screen takes the same number keys and undo/redo; the drawing canvas
has an accessible name. And the time spent per item (not counting time with the tab hidden)
reaches the monitor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import sign_in
from tests.e2e.helpers import items_by_key, stage_ready
from tests.export_setup import MakeUser, started_project

TREE = [{"name": "cat"}, {"name": "dog"}, {"name": "car"}]


def _focused(page: Page) -> str | None:
    testid: str | None = page.evaluate("document.activeElement?.dataset?.testid ?? null")
    return testid


def _keys(page: Page, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def _cell_keys(page: Page) -> list[str]:
    return [page.locator(f"[data-testid=cell-{i}] img").get_attribute("alt") or "" for i in range(4)]


def test_grid_labeling_with_the_keyboard_only(make_user: MakeUser, data_dir: Path, server: str,
                                              new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "multiclass", TREE, 8)
    page = sign_in(new_context(), server, labeler)
    page.evaluate("localStorage.setItem('colabel.grid', '4')")
    page.goto(f"{server}/#/p/{pid}/label")
    page.wait_for_selector("[data-testid=cell-3] img")
    # The page opens with its first image focused: work starts without the mouse.
    page.wait_for_function("() => document.activeElement?.dataset?.testid === 'cell-0'")
    first = _cell_keys(page)

    _keys(page, "1")                        # cell 0: cat
    _keys(page, "ArrowRight", "2")          # cell 1: dog
    assert _focused(page) == "cell-1"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "the focused image must show it"
    _keys(page, "ArrowDown")                # cell 3 (two columns)
    assert _focused(page) == "cell-3"
    _keys(page, "Shift+ArrowLeft", "3")     # cells 3 and 2: car
    expect(page.locator("[data-testid=tags-2]")).to_have_text("car")
    expect(page.locator("[data-testid=tags-3]")).to_have_text("car")
    _keys(page, "Space", "1")               # Space takes cell 2 out of the selection: cell 3 alone
    expect(page.locator("[data-testid=tags-3]")).to_have_text("cat")
    expect(page.locator("[data-testid=tags-2]")).to_have_text("car")
    expect(page.locator("[data-testid=cell-2]")).to_have_attribute("aria-selected", "false")
    _keys(page, "Control+ArrowUp")          # the focus moves to cell 0, the selection stays
    assert _focused(page) == "cell-0"
    expect(page.locator("[data-testid=cell-0]")).to_have_attribute("aria-selected", "false")
    _keys(page, "Space", "3")               # cell 0 joins cell 3: both car
    expect(page.locator("[data-testid=cell-0]")).to_have_attribute("aria-selected", "true")
    expect(page.locator("[data-testid=tags-0]")).to_have_text("car")
    expect(page.locator("[data-testid=tags-3]")).to_have_text("car")
    expect(page.locator("[data-testid=tags-1]")).to_have_text("dog")
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    _keys(page, "Control+Enter")

    # The next page, straight from the keyboard: select all, label, submit.
    page.wait_for_function(f"() => document.querySelector('[data-testid=cell-0] img')?.alt !== {first[0]!r}")
    page.wait_for_function("() => document.activeElement?.dataset?.testid === 'cell-0'")
    second = _cell_keys(page)
    _keys(page, "a", "2")
    for i in range(4):
        expect(page.locator(f"[data-testid=tags-{i}]")).to_have_text("dog")
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    _keys(page, "Control+Enter")
    # The last page's submits arrive together, and the last of them completes the project.
    expect(page.locator("[data-testid=project-complete]")).to_be_visible()
    assert owner.get(f"/api/v1/projects/{pid}").json()["project"]["status"] == "completed"

    items = items_by_key(owner, pid)
    finals = {key: owner.get(f"/api/v1/projects/{pid}/items/{items[key]['id']}").json()["item"]["final"]
              for key in first + second}
    assert [finals[k] for k in first] == [{"classes": [labels[n]]} for n in ("car", "dog", "car", "car")]
    assert all(finals[k] == {"classes": [labels["dog"]]} for k in second)


def test_review_takes_the_same_keys(make_user: MakeUser, data_dir: Path, server: str,
                                    new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "multiclass", TREE, 2)
    iid = next(iter(items_by_key(owner, pid).values()))["id"]
    page = sign_in(new_context(), server, owner, f"#/p/{pid}/review?item={iid}")
    final = page.locator(".side .card", has_text="Final").locator("p").first
    expect(final).to_have_text("not chosen yet")
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    _keys(page, "2")
    expect(final).to_have_text("dog")
    _keys(page, "3")
    expect(final).to_have_text("car")
    _keys(page, "Control+z")
    expect(final).to_have_text("dog")
    _keys(page, "Control+z")
    expect(final).to_have_text("not chosen yet")
    _keys(page, "Control+y", "Control+y")
    expect(final).to_have_text("car")
    _keys(page, "Control+Enter")
    expect(page.locator(".notice")).to_contain_text("decided")
    item = owner.get(f"/api/v1/projects/{pid}/items/{iid}").json()["item"]
    assert item["status"] == "labeled" and item["final"] == {"classes": [labels["car"]]}


def test_the_drawing_canvas_has_an_accessible_name(make_user: MakeUser, data_dir: Path, server: str,
                                                   new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "bbox", TREE, 1)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    key = page.locator(".side strong").first.inner_text()
    canvas = page.get_by_role("application", name=f"Drawing canvas for {key}")
    expect(canvas).to_be_visible()
    # Tab from the toolbar's last button reaches it, and shows where the focus is.
    page.locator(".toolbar button[title='Keyboard shortcuts']").focus()
    _keys(page, "Tab")
    assert _focused(page) == "stage"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"


def test_the_monitor_shows_the_time_per_item(make_user: MakeUser, data_dir: Path, server: str,
                                             new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "multiclass", TREE, 4)
    page = sign_in(new_context(), server, labeler)
    page.evaluate("localStorage.setItem('colabel.grid', '1')")
    page.goto(f"{server}/#/p/{pid}/label")
    for _ in range(3):
        page.wait_for_function("() => document.querySelector('[data-testid=cell-0] img')?.naturalWidth > 0")
        expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
        page.wait_for_timeout(400)  # looking at the image
        key = page.locator("[data-testid=cell-0] img").get_attribute("alt")
        _keys(page, "1")
        expect(page.locator("[data-testid=tags-0]")).to_have_text("cat")
        expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
        _keys(page, "Control+Enter")
        page.wait_for_function(f"() => document.querySelector('[data-testid=cell-0] img')?.alt !== {key!r}")

    monitor = sign_in(new_context(), server, owner, f"#/p/{pid}/monitor")
    row = monitor.locator("[data-testid=labelers] tbody tr", has_text="labeler")
    expect(row.locator("td").nth(1)).to_have_text("3")
    median = row.locator("td").nth(3).inner_text()
    assert median.endswith(" s"), median
    assert 0.4 <= float(median[:-2]) < 60, median


def test_time_with_the_tab_hidden_is_not_counted(make_user: MakeUser, data_dir: Path, server: str,
                                                 new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "bbox", TREE, 2)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    page.wait_for_timeout(500)
    # Another tab comes to the front for two seconds (the page is told it is hidden).
    flip = ("(hidden) => {"
            " Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});"
            " document.dispatchEvent(new Event('visibilitychange')); }")
    page.evaluate(flip, True)
    page.wait_for_timeout(2000)
    page.evaluate(flip, False)
    page.wait_for_timeout(300)
    with page.expect_request(lambda r: r.url.endswith("/submit")) as submitted:
        _keys(page, "Control+Enter")
    duration = submitted.value.post_data_json["duration_ms"]
    assert 700 <= duration < 2000, duration
