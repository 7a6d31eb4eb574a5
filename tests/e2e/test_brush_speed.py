"""The brush keeps up on a big image: on a 4000×3000 image each pointer move of a 50-move
stroke, with the frame that follows and the work queued during it, takes at most 16 ms in the
median (one frame at 60 Hz) and 33 ms at the 95th percentile (two frames), with no long task.
Only the touched mask tiles are redrawn.

The figures are printed (run with -s to see them): per-move median, p95 and max in ms and the
number of long tasks (over 50 ms, from PerformanceObserver)."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import Page

from tests.e2e.conftest import sign_in
from tests.e2e.helpers import center, stage_ready
from tests.export_setup import MakeUser, new_project
from tests.infra import unique

TREE = [{"name": "road"}, {"name": "car"}]
MOVES = 50
# The machine running the tests may be busy with other work (2 cores): a stroke that misses
# the bound is measured again, up to this many times, and every stroke's figures are printed.
ATTEMPTS = 3

# Per move: from the start of its pointermove handling, through the handlers and the next
# frame, to the end of the work queued during that frame (two timer turns after the frame's
# requestAnimationFrame: effects that run after paint are counted too). Long tasks from the
# Long Tasks API.
PROBE = """() => {
  const probe = window.__brush = { moves: [], longTasks: [] };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) probe.longTasks.push(e.duration);
  }).observe({ type: 'longtask' });
  addEventListener('pointermove', (e) => {
    if (!e.buttons) return;
    const t0 = performance.now();
    // The frame, then the tasks queued during it (effects a UI library runs after paint).
    requestAnimationFrame(() => setTimeout(() => setTimeout(() => probe.moves.push(performance.now() - t0))));
  }, { capture: true });
}"""


def _big_image(folder: Path) -> None:
    folder.mkdir(parents=True)
    gradient = Image.linear_gradient("L").resize((4000, 3000))
    Image.merge("RGB", (gradient, gradient.rotate(90).resize((4000, 3000)), gradient)).save(
        folder / "big.jpg", quality=85)


def test_a_brush_stroke_on_a_4000x3000_image_keeps_up(make_user: MakeUser, data_dir: Path, server: str,
                                                       new_context: Any) -> None:
    folder = data_dir / "datasets" / unique("big")
    _big_image(folder)
    owner, pid, _ = new_project(make_user, folder, "semantic", TREE)
    labeler = make_user("labeler")
    owner.put(f"/api/v1/projects/{pid}/members", {"email": labeler.email, "role": "labeler"})
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200

    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    assert page.evaluate("document.querySelector('[data-testid=stage] img').naturalWidth") == 4000
    page.keyboard.press("1")
    for _ in range(7):
        page.keyboard.press("]")  # radius 12 → 60 image pixels: one to four tiles per move
    page.evaluate(PROBE)
    cx, cy = center(page)
    # A warm-up stroke (first paint of the mask layer, code paths compiled), then measured ones.
    _stroke(page, cx - 300, cy - 150, cx + 300, cy - 150, 10)
    runs = []
    for i in range(ATTEMPTS):
        y = cy - 100 + 60 * i
        page.evaluate("window.__brush.moves = []; window.__brush.longTasks = []")
        _stroke(page, cx - 300, y, cx + 300, y + 100, MOVES)
        page.wait_for_timeout(300)
        probe = page.evaluate("window.__brush")
        moves = sorted(probe["moves"])
        assert len(moves) >= MOVES * 0.8, f"only {len(moves)} moves measured"
        run = {"median": statistics.median(moves), "p95": moves[int(0.95 * (len(moves) - 1))],
               "max": moves[-1], "long_tasks": len(probe["longTasks"]), "moves": len(moves)}
        runs.append(run)
        print(f"\nbrush on 4000x3000, stroke {i + 1}, {run['moves']} moves: median {run['median']:.1f} ms, "
              f"p95 {run['p95']:.1f} ms, max {run['max']:.1f} ms, long tasks {run['long_tasks']}")
        if _within(run):
            break
    painted = page.locator(".side p", has_text="painted tile").inner_text()
    assert re.match(r"[1-9]\d* painted tile", painted), painted
    assert any(_within(r) for r in runs), runs


def _within(run: dict[str, float]) -> bool:
    return run["median"] <= 16 and run["p95"] <= 33 and run["long_tasks"] == 0


def _stroke(page: Page, x0: float, y0: float, x1: float, y1: float, moves: int) -> None:
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=moves)
    page.mouse.up()
