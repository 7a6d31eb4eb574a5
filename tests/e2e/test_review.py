"""Review in the browser. Boxes: two labelers disagree on an image; the reviewer sees each one's
boxes in their own colour with label tags, switches to side by side, reads why the item is in
review, takes one labeler's whole annotation and copies a box from the other in one click each,
adjusts, decides, and the item's final holds what was chosen. Classification: the queue item's
votes per label, number keys, the label picker, one labeler's classes in one click, and zoom.
Masks: the undecided share and tiles, and one labeler's whole mask taken in one click."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import Page, expect

from collab.schema import rle_encode
from tests.e2e.conftest import shot, sign_in
from tests.e2e.helpers import stage_ready
from tests.export_setup import MakeUser, new_project
from tests.infra import Api, unique

TREE = [{"name": "cat"}, {"name": "dog"}, {"name": "car"}]


def _to_review(make_user: MakeUser, data_dir: Path, task_type: str,
               votes: list[dict[str, Any]]) -> tuple[Api, int, int, dict[str, int], list[Api], Api]:
    """A project whose one item two labelers annotated differently (through the API, which
    writes their documents too): it needs review. Returns (owner, pid, iid, labels, labelers,
    reviewer); `votes` maps label names to ids through `labels` lazily (see _ids)."""
    folder = data_dir / "datasets" / unique("review")
    folder.mkdir(parents=True)
    # A busy image: outlines must stay readable on it.
    Image.effect_noise((320, 240), 90).convert("RGB").save(folder / "street scene.png")
    owner, pid, labels = new_project(make_user, folder, task_type, TREE,
                                     consensus={"enabled": True, "min": 2, "max": 2})
    people = [make_user("labeler"), make_user("labeler")]
    reviewer = make_user("reviewer")
    for person in people:
        owner.put(f"/api/v1/projects/{pid}/members", {"email": person.email, "role": "labeler"})
    owner.put(f"/api/v1/projects/{pid}/members", {"email": reviewer.email, "role": "reviewer"})
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    iid = 0
    for person, vote in zip(people, votes, strict=True):
        lease = person.post(f"/api/v1/projects/{pid}/tasks/next", {"count": 1}).json()["leases"][0]
        iid = lease["item"]["id"]
        r = person.post(f"/api/v1/leases/{lease['lease_id']}/submit", {"annotation": _ids(vote, labels)})
        assert r.status_code == 200, r.text
    assert owner.get(f"/api/v1/projects/{pid}/items/{iid}").json()["item"]["status"] == "needs_review"
    return owner, pid, iid, labels, people, reviewer


def _ids(annotation: dict[str, Any], labels: dict[str, int]) -> dict[str, Any]:
    """Label names in an annotation replaced by the project's label ids."""
    if "mask" in annotation:  # one label painted over the first whole tile
        painted = rle_encode([labels[annotation["mask"]]] * 256 * 256)
        return {"mask": {"tile_size": 256, "tiles": {"0,0": base64.b64encode(painted).decode()}}}
    if "classes" in annotation:
        return {"classes": [labels[c] for c in annotation["classes"]]}
    return {"shapes": [{**s, "label": labels[s["label"]]} for s in annotation["shapes"]]}


def _box(sid: str, label: str, x: float, y: float, w: float, h: float) -> dict[str, Any]:
    return {"id": sid, "kind": "box", "label": label, "x": x, "y": y, "w": w, "h": h}


def _final_shapes(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("[data-testid=shapes] .shape a").all_inner_texts()]


def test_bbox_review_overlay_side_by_side_accept_copy_decide(make_user: MakeUser, data_dir: Path, server: str,
                                                             new_context: Any) -> None:
    cat = _box("a1", "cat", 0.10, 0.10, 0.30, 0.30)
    dog = _box("b1", "dog", 0.12, 0.11, 0.30, 0.30)   # the same place, another label
    car = _box("b2", "car", 0.60, 0.55, 0.25, 0.30)   # a place only one of two drew: a tie
    owner, pid, iid, labels, (a, b), reviewer = _to_review(
        make_user, data_dir, "bbox", [{"shapes": [cat]}, {"shapes": [dog, car]}])

    page = sign_in(new_context(), server, reviewer, f"#/p/{pid}/review")
    queued = page.locator("[data-testid='review-item-street scene.png']")
    expect(queued).to_be_visible()
    # Items are named by file name and link to the data manager.
    expect(page.locator(f".queue a[href='#/p/{pid}/data/{iid}']")).to_have_count(1)
    queued.click()
    stage_ready(page)
    expect(page.locator("[data-testid=item-link]")).to_have_text("street scene.png")
    expect(page.locator("[data-testid=item-link]")).to_have_attribute("href", f"#/p/{pid}/data/{iid}")

    # Overlay: each labeler's boxes in their own colour, each with its label on a filled tag.
    stage = page.locator("[data-testid=stage]")
    mine, theirs = stage.locator(f"[data-labeler='{a.id}']"), stage.locator(f"[data-labeler='{b.id}']")
    expect(mine.locator("[data-labeler-shape]")).to_have_count(1)
    expect(theirs.locator("[data-labeler-shape]")).to_have_count(2)
    expect(mine.locator(".tag text")).to_have_text(["cat"])
    assert sorted(theirs.locator(".tag text").all_text_contents()) == ["car", "dog"]

    def outline(who: Any) -> str:
        value: str = who.locator("[data-labeler-shape] > rect").nth(1).get_attribute("stroke")
        return value

    assert outline(mine) != outline(theirs)
    assert mine.locator(".tag rect").first.get_attribute("fill") == outline(mine)

    # Why: the place where they disagreed on the label, and the place only one drew (a tie),
    # listed and outlined on the image.
    why = page.locator("[data-testid=why-places] li")
    expect(why).to_have_count(2)
    expect(page.locator("[data-testid=why]")).to_contain_text("no majority label")
    expect(page.locator("[data-testid=why]")).to_contain_text("tied")
    expect(stage.locator("[data-testid=place-1]")).to_have_count(1)
    expect(stage.locator("[data-testid=place-2]")).to_have_count(1)
    shot(page, "review-overlay")

    # Side by side: one panel per labeler next to the final.
    page.click("[data-testid=mode-side]")
    expect(page.locator("[data-testid=side-by-side]")).to_be_visible()
    left, right = page.locator(f"[data-testid=panel-{a.id}]"), page.locator(f"[data-testid=panel-{b.id}]")
    expect(left.locator("[data-labeler-shape]")).to_have_count(1)
    expect(right.locator("[data-labeler-shape]")).to_have_count(2)
    # The final's own stage no longer shows the labelers' boxes.
    final_stage = page.locator(".review-body .labeler [data-testid=stage]")
    expect(final_stage.locator("[data-labeler-shape]")).to_have_count(0)
    shot(page, "review-side-by-side")

    # One click takes the first labeler's whole annotation; one click on a box of the other's copies it.
    left.locator(f"[data-testid=panel-accept-{a.id}]").click()
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(1)
    assert _final_shapes(page) == ["cat"]
    # Taking it is one step of the reviewer's undo history.
    page.keyboard.press("Control+z")
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(0)
    page.keyboard.press("Control+y")
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(1)
    right.locator("[data-labeler-shape][data-label=car]").click()
    expect(page.locator("[data-testid=shapes] .shape")).to_have_count(2)
    assert sorted(_final_shapes(page)) == ["car", "cat"]

    # Adjust: the copied box becomes a dog (select it, Shift+2), and decide.
    page.locator("[data-testid=shapes] .shape a", has_text="car").click()
    page.keyboard.press("Shift+2")
    expect(page.locator("[data-testid=shapes]")).to_contain_text("dog")
    assert sorted(_final_shapes(page)) == ["cat", "dog"]
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    page.click("[data-testid=decide]")
    expect(page.locator("[data-testid=review-notice]")).to_contain_text("street scene.png decided")
    expect(page.locator("[data-testid=review-empty]")).to_be_visible()

    item = owner.get(f"/api/v1/projects/{pid}/items/{iid}").json()["item"]
    assert item["status"] == "labeled" and item["decided_by"] == "owner"
    got = sorted((s["label"], round(s["x"], 4), round(s["y"], 4), round(s["w"], 4), round(s["h"], 4))
                 for s in item["final"]["shapes"])
    assert got == sorted([(labels["cat"], 0.1, 0.1, 0.3, 0.3), (labels["dog"], 0.6, 0.55, 0.25, 0.3)])
    assert all(s["source"] == "human" for s in item["final"]["shapes"])


def _scale(page: Page) -> float:
    style = page.locator("[data-testid=stage] .layer").get_attribute("style") or ""
    m = re.search(r"scale\(([0-9.e-]+)\)", style)
    assert m, style
    return float(m.group(1))


def test_classification_review_keys_picker_and_zoom(make_user: MakeUser, data_dir: Path, server: str,
                                                    new_context: Any) -> None:
    owner, pid, iid, labels, (a, b), reviewer = _to_review(
        make_user, data_dir, "multilabel", [{"classes": ["cat"]}, {"classes": ["dog", "car"]}])
    page = sign_in(new_context(), server, reviewer, f"#/p/{pid}/review")
    page.click("[data-testid='review-item-street scene.png']")
    final = page.locator("[data-testid=final-classes]")
    expect(final).to_have_text("not chosen yet")
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")

    # Why: every label's votes, each tied one of two.
    rows = page.locator("[data-testid=why-labels] tr")
    expect(rows).to_have_count(3)
    for row in range(3):
        expect(rows.nth(row)).to_contain_text("1 of 2")
        expect(rows.nth(row)).to_contain_text("tied")

    # Number keys toggle labels on the final; the picker takes any label.
    page.keyboard.press("1")
    expect(final).to_have_text("cat")
    page.keyboard.press("3")
    expect(final).to_have_text("cat, car")
    page.keyboard.press("1")
    expect(final).to_have_text("car")
    page.click("[data-testid=label-dog]")
    expect(final).to_have_text("dog, car")
    # One click: one labeler's classes become the final ones.
    page.click(f"[data-testid=accept-{a.id}]")
    expect(final).to_have_text("cat")
    page.fill("[data-testid=label-search]", "ca")
    page.click("[data-testid=label-car]")
    expect(final).to_have_text("cat, car")

    # Zoom: the buttons and the wheel zoom the image, F fits it again.
    page.wait_for_function("() => document.querySelector('[data-testid=stage] img')?.naturalWidth > 0")
    fitted = _scale(page)
    page.click("[data-testid=zoom-in]")
    zoomed = _scale(page)
    assert zoomed > fitted * 1.2
    box = page.locator("[data-testid=stage]").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"() => !document.querySelector('[data-testid=stage] .layer').style.transform"
                           f".includes('scale({zoomed})')")
    assert _scale(page) > zoomed
    page.click("[data-testid=zoom-out]")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("f")
    page.wait_for_function(f"() => document.querySelector('[data-testid=stage] .layer').style.transform"
                           f".includes('scale({fitted})')")
    shot(page, "review-classification")

    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    page.keyboard.press("Control+Enter")
    expect(page.locator("[data-testid=review-notice]")).to_contain_text("decided")
    item = owner.get(f"/api/v1/projects/{pid}/items/{iid}").json()["item"]
    assert item["status"] == "labeled"
    assert sorted(item["final"]["classes"]) == sorted([labels["cat"], labels["car"]])


def test_semantic_review_shows_undecided_tiles_and_takes_a_mask(make_user: MakeUser, data_dir: Path,
                                                                server: str, new_context: Any) -> None:
    owner, pid, iid, labels, (a, b), reviewer = _to_review(
        make_user, data_dir, "semantic", [{"mask": "cat"}, {"mask": "dog"}])
    page = sign_in(new_context(), server, reviewer, f"#/p/{pid}/review?item={iid}")
    stage_ready(page)
    expect(page.locator("[data-testid=why-pixels]")).to_contain_text("% of the painted area is undecided")
    expect(page.locator("[data-testid=stage] [data-testid=undecided-tiles] rect")).to_have_count(1)
    page.click("[data-testid=mode-side]")
    expect(page.locator(f"[data-testid=panel-{a.id}] .mask canvas")).not_to_have_count(0)
    page.click(f"[data-testid=panel-accept-{b.id}]")
    expect(page.locator("[data-testid=painted-tiles]")).to_have_attribute("data-count", "1")
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")
    page.click("[data-testid=decide]")
    expect(page.locator("[data-testid=review-notice]")).to_contain_text("decided")
    final = owner.get(f"/api/v1/projects/{pid}/items/{iid}").json()["item"]["final"]
    assert final == _ids({"mask": "dog"}, labels)
