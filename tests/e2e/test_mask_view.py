"""Hiding and locking the labels of a semantic mask: a hidden label's pixels are not drawn,
a locked label's pixels are neither painted over nor erased, and the view (this labeler's
own, not the document's) survives a reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.conftest import sign_in
from tests.e2e.helpers import center, drag, stage_ready
from tests.export_setup import MakeUser, started_project

TREE = [{"name": "road"}, {"name": "car"}]

# The mask pixel under a point of the screen: [r, g, b, a] of the tile canvas there.
PIXEL_JS = """([x, y]) => {
    const img = document.querySelector('[data-testid=stage] img');
    const r = img.getBoundingClientRect();
    const ix = Math.floor((x - r.left) * img.naturalWidth / r.width);
    const iy = Math.floor((y - r.top) * img.naturalHeight / r.height);
    for (const c of document.querySelectorAll('[data-testid=mask] canvas')) {
        const left = parseFloat(c.style.left), top = parseFloat(c.style.top);
        if (ix >= left && iy >= top && ix < left + c.width && iy < top + c.height) {
            return Array.from(c.getContext('2d').getImageData(ix - left, iy - top, 1, 1).data);
        }
    }
    return [0, 0, 0, 0];
}"""


def _pixel(page: Page, x: float, y: float) -> list[int]:
    got: list[int] = page.evaluate(PIXEL_JS, [x, y])
    return got


def _toggle(page: Page, label: str, what: str) -> None:
    page.locator(f"[data-testid=mask-label-{label}] [data-testid={what}-label]").click()


def test_hidden_and_locked_mask_labels(make_user: MakeUser, data_dir: Path, server: str,
                                       new_context: Any) -> None:
    _, labeler, pid, _ = started_project(make_user, data_dir, "semantic", TREE, 1)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    for _ in range(12):
        page.keyboard.press("[")  # the smallest brush: one image pixel
    cx, cy = center(page)
    page.keyboard.press("1")
    drag(page, cx - 30, cy, cx + 30, cy)
    road = _pixel(page, cx, cy)
    assert road[3] == 255, road

    _toggle(page, "road", "hide")
    page.wait_for_function(f"() => ({PIXEL_JS})([{cx}, {cy}])[3] === 0")
    _toggle(page, "road", "hide")
    page.wait_for_function(f"() => ({PIXEL_JS})([{cx}, {cy}])[3] === 255")

    # Locked: a car stroke across the road leaves the road as it is, and paints elsewhere.
    _toggle(page, "road", "lock")
    page.keyboard.press("2")
    drag(page, cx - 200, cy, cx + 200, cy, steps=12)
    page.wait_for_function(f"() => ({PIXEL_JS})([{cx + 150}, {cy}])[3] === 255")
    car = _pixel(page, cx + 150, cy)
    assert car[:3] != road[:3]
    assert _pixel(page, cx, cy) == road
    # The eraser leaves it too.
    page.keyboard.press("e")
    drag(page, cx - 200, cy, cx + 200, cy, steps=12)
    page.wait_for_function(f"() => ({PIXEL_JS})([{cx + 150}, {cy}])[3] === 0")
    assert _pixel(page, cx, cy) == road

    # The view is this labeler's, kept for the item: still locked after a reload.
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    page.reload()
    stage_ready(page)
    lock = page.locator("[data-testid=mask-label-road] [data-testid=lock-label]")
    expect(lock).to_have_attribute("aria-pressed", "true")
    assert _pixel(page, cx, cy) == road
