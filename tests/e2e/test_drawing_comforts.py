"""What a labeler coming from CVAT or Label Studio expects of the drawing screen: hide and lock
shapes (one, or all of a label), kept in this browser only and across a reload; each shape's
label on a filled tag that reads; a brush outline the size of the brush at any zoom; label
colours that stay apart; hotkeys that go to leaves before groups, past nine; a shortcut sheet
for the tool in hand; badges and muted text at WCAG AA contrast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shot, sign_in
from tests.e2e.helpers import center, drag, shape_labels, stage_ready
from tests.export_setup import MakeUser, started_project

# 30 leaves and one group: the group comes first in display order, yet 1 goes to its first child.
MANY = [{"name": "Shape", "children": [{"name": "circle"}, {"name": "square"}]}]
MANY += [{"name": f"L{i:02d}"} for i in range(3, 31)]
# Keys: animal/cat 1, animal/dog 2, car 3, animal (the group) 4.
SMALL = [{"name": "animal", "children": [{"name": "cat"}, {"name": "dog"}]}, {"name": "car"}]

# OKLab distance and WCAG contrast computed in the page, from what it renders.
COLOUR_JS = """
const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
const lin = (c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
const oklab = ([r, g, b]) => {
  const [R, G, B] = [lin(r), lin(g), lin(b)];
  const l = Math.cbrt(0.4122214708 * R + 0.5363325363 * G + 0.0514459929 * B);
  const m = Math.cbrt(0.2119034982 * R + 0.6806995451 * G + 0.1073969566 * B);
  const s = Math.cbrt(0.0883024619 * R + 0.2817188376 * G + 0.6299787005 * B);
  return [0.2104542553 * l + 0.793617785 * m - 0.0040720468 * s,
          1.9779984951 * l - 2.428592205 * m + 0.4505937099 * s,
          0.0259040371 * l + 0.7827717662 * m - 0.808675766 * s];
};
const lum = ([r, g, b]) => 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
const ratio = (a, b) => {
  const [x, y] = [lum(a), lum(b)].sort((u, v) => v - u);
  return (x + 0.05) / (y + 0.05);
};
// The colour a text is seen on: the first ancestor-or-self with an opaque background.
const behind = (el) => {
  for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
const contrastOf = (el) => ratio(rgb(getComputedStyle(el).color).slice(0, 3), behind(el));
"""


def _contrast(page: Page, selector: str) -> float:
    value: float = page.evaluate(
        f"(sel) => {{ {COLOUR_JS} return contrastOf(document.querySelector(sel)); }}", selector)
    return value


@pytest.fixture(scope="module")
def many(make_user: MakeUser, data_dir: Path) -> tuple[Any, Any, int, dict[str, int]]:
    return started_project(make_user, data_dir, "bbox", MANY, 2)


def _active(page: Page, path: str) -> None:
    expect(page.locator(f"[data-testid='label-{path}']")).to_have_class("active")


def _box(page: Page, dx: float, dy: float = 0) -> None:
    cx, cy = center(page)
    drag(page, cx + dx - 40, cy + dy - 30, cx + dx + 40, cy + dy + 30)


def test_hotkeys_go_to_leaves_first_and_past_nine(many: Any, server: str, new_context: Any) -> None:
    owner, labeler, pid, labels = many
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    badge = lambda path: page.locator(f"[data-testid='label-{path}'] [data-testid=hotkey]")  # noqa: E731
    expect(badge("Shape/circle")).to_have_text("1")
    expect(badge("L10")).to_have_text("0")
    expect(badge("L11")).to_have_text("Q")
    expect(badge("L28")).to_have_text("M")
    expect(badge("Shape")).to_have_count(0)  # the group comes after the 28 keys run out
    expect(badge("L30")).to_have_count(0)

    page.keyboard.press("2")
    _active(page, "Shape/square")
    page.keyboard.press("1")  # the first leaf, not the group "Shape" above it
    _active(page, "Shape/circle")
    expect(page.locator("[data-testid=label-Shape]")).not_to_have_class("active")
    page.keyboard.press("0")
    _active(page, "L10")
    page.keyboard.press("q")  # the eleventh key draws with the eleventh leaf
    _active(page, "L11")
    _box(page, 0)
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(1)
    assert shape_labels(page) == ["L11"]
    page.keyboard.press("m")
    _active(page, "L28")
    # Shift + a letter key relabels the selected shape, as Shift + a digit does.
    page.locator("[data-testid=shapes] .shape a").first.click()
    page.keyboard.press("Shift+W")
    expect(page.locator("[data-testid=shapes] .shape a")).to_have_text("L12")


def test_label_colours_stay_apart(many: Any, server: str, new_context: Any) -> None:
    owner, labeler, pid, labels = many
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    found = page.evaluate(f"""() => {{ {COLOUR_JS}
        const colours = [...document.querySelectorAll('.labels .swatch')]
          .map((s) => rgb(getComputedStyle(s).backgroundColor).slice(0, 3));
        let min = Infinity;
        for (let i = 0; i < colours.length; i++) for (let j = i + 1; j < colours.length; j++) {{
          const [a, b] = [oklab(colours[i]), oklab(colours[j])];
          min = Math.min(min, Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]));
        }}
        return {{ count: colours.length, min }};
    }}""")
    assert found["count"] == len(labels) == 31
    # ΔE_OK 0.1 is an obvious difference (0.02 is just noticeable): no two greens alike.
    assert found["min"] >= 0.1, found


def test_badges_and_muted_text_meet_wcag_aa(many: Any, server: str, new_context: Any) -> None:
    owner, labeler, pid, labels = many
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    page.keyboard.press("2")
    _active(page, "Shape/square")
    inactive = "[data-testid='label-L03'] [data-testid=hotkey]"
    active = "[data-testid='label-Shape/square'] [data-testid=hotkey]"
    assert _contrast(page, inactive) >= 4.5
    assert _contrast(page, active) >= 4.5
    _box(page, 60)
    muted = ".shape-group-head .muted"
    expect(page.locator(muted).first).to_be_visible()
    assert _contrast(page, muted) >= 4.5
    page.fill("[data-testid=label-search]", "no such label")
    expect(page.locator(".labels .muted")).to_have_text("No label matches.")
    assert _contrast(page, ".labels .muted") >= 4.5


def test_the_shortcut_sheet_follows_the_tool(many: Any, server: str, new_context: Any) -> None:
    owner, labeler, pid, labels = many
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    sheet = page.locator("[data-testid=shortcuts]")

    def read() -> str:
        page.keyboard.press("?")
        text = sheet.inner_text()
        page.keyboard.press("Escape")
        expect(sheet).to_have_count(0)
        return text

    box = read()
    page.keyboard.press("v")
    select = read()
    page.keyboard.press("h")
    pan = read()
    assert "Box tool" in box and "draw a box" in box and "delete the selected shape" not in box
    assert "Select tool" in select and "delete the selected shape" in select and "draw a box" not in select
    assert "Pan tool" in pan and "relabel" not in pan
    assert "brush" not in box.lower() and "brush" not in select.lower()
    for text in (box, select, pan):  # the general keys are always there
        assert "Ctrl+Enter" in text and "fit the image" in text and "1–9, 0, Q W T" in text


def test_hide_lock_and_show_shapes_and_labels(make_user: MakeUser, data_dir: Path, server: str,
                                              new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "bbox", SMALL, 1)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    _box(page, -150)           # cat (the first leaf, chosen when the page opens)
    _box(page, 150)            # cat
    page.keyboard.press("3")   # car
    _box(page, 0, 110)
    rows = page.locator("[data-testid=shapes] .shape")
    expect(rows).to_have_count(3)
    drawn = page.locator("[data-testid=stage] svg [data-shape]")
    tags = page.locator("[data-testid=stage] svg [data-testid=shape-tag]")

    # Every shape carries its label on a tag filled with the label's colour, text readable on it.
    expect(tags).to_have_count(3)
    page.keyboard.press("?")
    shot(page, "drawing-tags-and-shape-list")
    page.keyboard.press("Escape")
    assert sorted(tags.all_text_contents()) == ["animal/cat", "animal/cat", "car"]
    tag_colours = page.evaluate(f"""() => {{ {COLOUR_JS}
        return [...document.querySelectorAll('[data-testid=shape-tag]')].map((g) => {{
          const fill = rgb(getComputedStyle(g.querySelector('rect')).fill);
          const ink = rgb(getComputedStyle(g.querySelector('text')).fill);
          return {{ text: g.textContent, fill: fill.join(','), contrast: ratio(fill, ink) }};
        }});
    }}""")
    swatch = page.evaluate("""(sel) => getComputedStyle(document.querySelector(sel)).backgroundColor
        .match(/[\\d.]+/g).slice(0, 3).join(',')""", "[data-testid='label-car'] .swatch")
    assert [t["fill"] for t in tag_colours if t["text"] == "car"] == [swatch]
    assert all(t["contrast"] >= 4.5 for t in tag_colours), tag_colours

    def shape_at(dx: float, dy: float = 0) -> str:
        """The id of the shape drawn around (centre + dx, centre + dy)."""
        cx, cy = center(page)
        found: str = page.evaluate(
            """([x, y]) => [...document.querySelectorAll('[data-testid=stage] svg [data-shape]')]
               .find((el) => {
                 const r = el.getBoundingClientRect();
                 return r.left < x && x < r.right && r.top < y && y < r.bottom; })?.dataset.shape""",
            [cx + dx, cy + dy])
        return found

    left, right, car = shape_at(-150), shape_at(150), shape_at(0, 110)
    row = lambda sid: page.locator(f"[data-testid=shapes] .shape[data-shape-id='{sid}']")  # noqa: E731
    on_canvas = lambda sid: page.locator(f"[data-testid=stage] svg [data-shape='{sid}']")  # noqa: E731

    # Hide one shape: it is not drawn, its twin is; and it stays hidden after a reload.
    row(left).get_by_test_id("hide-shape").click()
    expect(on_canvas(left)).to_have_count(0)
    expect(on_canvas(right)).to_have_count(1)
    expect(tags).to_have_count(2)
    expect(row(left)).to_have_attribute("data-hidden", "true")
    page.reload()
    stage_ready(page)
    expect(row(left)).to_have_attribute("data-hidden", "true")
    expect(on_canvas(left)).to_have_count(0)
    expect(drawn).to_have_count(2)
    # The view is this browser's, not the document's: elsewhere all three are drawn.
    elsewhere = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(elsewhere)
    expect(elsewhere.locator("[data-testid=stage] svg [data-shape]")).to_have_count(3)
    elsewhere.close()
    # Show it again.
    row(left).get_by_test_id("hide-shape").click()
    expect(on_canvas(left)).to_have_count(1)

    # Hide a whole label: the car goes, the cats stay.
    page.locator("[data-testid='shape-group-car'] [data-testid=hide-label]").click()
    expect(on_canvas(car)).to_have_count(0)
    expect(drawn).to_have_count(2)
    page.locator("[data-testid='shape-group-car'] [data-testid=hide-label]").click()
    expect(drawn).to_have_count(3)

    # Lock every cat: they cannot be selected, moved or deleted.
    page.locator("[data-testid='shape-group-animal/cat'] [data-testid=lock-label]").click()
    expect(row(left)).to_have_attribute("data-locked", "true")
    expect(row(right)).to_have_attribute("data-locked", "true")
    expect(row(left).get_by_test_id("delete-shape")).to_be_disabled()
    page.keyboard.press("v")
    x_before = on_canvas(left).get_attribute("x")
    cx, cy = center(page)
    drag(page, cx - 150, cy, cx - 90, cy + 40)
    page.keyboard.press("Delete")
    page.wait_for_timeout(200)
    expect(rows).to_have_count(3)
    assert on_canvas(left).get_attribute("x") == x_before
    # The car is not locked: a click selects it and Delete removes it.
    cx, cy = center(page)  # the drag on the locked cat panned the image: find the car again
    box = on_canvas(car).bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.press("Delete")
    expect(rows).to_have_count(2)
    expect(on_canvas(car)).to_have_count(0)

    # Unlock: the cat can be moved again.
    page.get_by_test_id("show-all").click()
    expect(row(left)).to_have_attribute("data-locked", "false")
    box = on_canvas(left).bounding_box()
    assert box is not None
    mx, my = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    drag(page, mx, my, mx + 30, my + 20)
    expect(on_canvas(left)).not_to_have_attribute("x", x_before or "")


def test_the_brush_cursor_shows_its_size(make_user: MakeUser, data_dir: Path, server: str,
                                         new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "semantic", SMALL, 1)
    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    cursor = page.get_by_test_id("brush-cursor")
    expect(cursor).to_be_hidden()  # until the pointer is over the image
    cx, cy = center(page)
    page.mouse.move(cx, cy)
    page.mouse.move(cx + 5, cy + 5)
    expect(cursor).to_be_visible()

    def measured() -> tuple[float, float]:
        """(on-screen diameter of the outline, brush diameter in image pixels × zoom)."""
        found: list[float] = page.evaluate("""() => {
            const img = document.querySelector('[data-testid=stage] img');
            const scale = img.getBoundingClientRect().width / img.naturalWidth;
            const r = Number(document.querySelector('[data-testid=brush-cursor]').dataset.radius);
            const c = document.querySelector('[data-testid=brush-circle]').getBoundingClientRect();
            return [c.width, 2 * r * scale];
        }""")
        return found[0], found[1]

    def centred_at(x: float, y: float) -> bool:
        c = page.get_by_test_id("brush-circle").bounding_box()
        assert c is not None
        return abs(c["x"] + c["width"] / 2 - x) < 2 and abs(c["y"] + c["height"] / 2 - y) < 2

    seen, expected = measured()
    assert abs(seen - expected) <= 1.5, (seen, expected)
    assert centred_at(cx + 5, cy + 5)
    shot(page, "drawing-brush-outline")
    for _ in range(4):
        page.keyboard.press("]")
    bigger, expected = measured()
    assert bigger > seen * 2 and abs(bigger - expected) <= 1.5, (bigger, expected)
    page.mouse.wheel(0, -400)  # zoom in around the pointer: the outline grows with the image
    page.wait_for_timeout(200)
    zoomed, expected = measured()
    assert zoomed > bigger * 1.3 and abs(zoomed - expected) <= 1.5, (zoomed, expected)
    page.keyboard.press("e")  # the eraser shows its reach too
    page.mouse.move(cx - 20, cy)
    expect(cursor).to_be_visible()
    assert centred_at(cx - 20, cy)
    page.mouse.move(5, 5)  # off the stage: no outline left behind
    expect(cursor).to_be_hidden()

    # The brush sheet has the brush keys, which the box tools' sheets do not.
    page.keyboard.press("r")
    page.keyboard.press("?")
    sheet = page.get_by_test_id("shortcuts")
    expect(sheet).to_contain_text("Brush tool")
    expect(sheet).to_contain_text("smaller / larger brush")
    expect(sheet).not_to_contain_text("draw a box")


def test_an_owner_chooses_a_labels_hotkey(make_user: MakeUser, data_dir: Path, server: str,
                                          new_context: Any) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "bbox", SMALL, 1)
    page = sign_in(new_context(), server, owner, f"#/p/{pid}")
    row = lambda path: page.locator(f"[data-testid=label-row][data-path='{path}']")  # noqa: E731
    expect(row("animal").get_by_test_id("label-hotkey")).to_have_text("4")
    row("animal").get_by_test_id("label-hotkey-pick").select_option("q")
    row("car").get_by_test_id("label-hotkey-pick").select_option("1")
    # A key one label has is not offered to another.
    assert row("animal/cat").locator("option[value='1']").is_disabled()
    expect(row("animal/cat").get_by_test_id("label-hotkey")).to_have_text("2")  # the keys left, leaves first
    shot(page, "label-editor-hotkeys")
    page.get_by_test_id("labels-save").click()
    expect(page.get_by_test_id("labels-editor")).to_contain_text("Saved.")
    tree = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    assert (tree[0]["assigned_hotkey"], tree[1]["assigned_hotkey"]) == ("q", "1")

    work = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(work)
    expect(work.locator("[data-testid='label-animal'] [data-testid=hotkey]")).to_have_text("Q")
    work.keyboard.press("q")
    _active(work, "animal")
    work.keyboard.press("1")
    _active(work, "car")
    work.keyboard.press("2")
    _active(work, "animal/cat")
