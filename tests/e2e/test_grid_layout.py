"""The classification grid shows each image whole (nothing cropped, its aspect kept) and a
whole page fits the window: 9 images at 1280×720 and 4 at 1440×900, with images of very
different shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import shot, sign_in
from tests.export_setup import MakeUser, new_project
from tests.infra import unique

TREE = [{"name": "cat"}, {"name": "dog"}]
# Landscape, portrait, square, panorama and tall strips.
SIZES = [(640, 480), (480, 640), (500, 500), (1200, 300), (300, 900), (800, 450), (450, 800), (1000, 600),
         (256, 1024)]

# For each cell: the box the image is drawn in, as the browser lays it out, the part of it the
# picture really covers (from object-fit), the cell that clips it, and the picture's own size.
MEASURE = """() => [...document.querySelectorAll('[data-testid^=cell-]')].map((cell) => {
  const img = cell.querySelector('img');
  const b = img.getBoundingClientRect(), c = cell.getBoundingClientRect();
  const cs = getComputedStyle(cell);
  const nw = img.naturalWidth, nh = img.naturalHeight;
  const fit = getComputedStyle(img).objectFit;
  let w = nw, h = nh;
  if (fit === 'fill') { w = b.width; h = b.height; }
  else if (fit === 'contain' || fit === 'scale-down') {
    const s = Math.min(b.width / nw, b.height / nh, fit === 'scale-down' ? 1 : Infinity);
    w = nw * s; h = nh * s;
  } else if (fit === 'cover') {
    const s = Math.max(b.width / nw, b.height / nh); w = nw * s; h = nh * s;
  }
  const x = b.left + (b.width - w) / 2, y = b.top + (b.height - h) / 2;
  const bl = parseFloat(cs.borderLeftWidth), bt = parseFloat(cs.borderTopWidth);
  return {key: img.alt, natural: [nw, nh], shown: [x, y, w, h],
          clip: [c.left + bl, c.top + bt, cell.clientWidth, cell.clientHeight],
          box: [b.left, b.top, b.width, b.height]};
})"""


def _inside(inner: list[float], outer: list[float], slack: float = 1.0) -> bool:
    x, y, w, h = inner
    ox, oy, ow, oh = outer
    return x >= ox - slack and y >= oy - slack and x + w <= ox + ow + slack and y + h <= oy + oh + slack


@pytest.mark.parametrize(("grid", "width", "height"), [(9, 1280, 720), (4, 1440, 900)])
def test_a_grid_page_fits_the_window_with_whole_images(make_user: MakeUser, data_dir: Path, server: str,
                                                       new_context: Any, grid: int, width: int,
                                                       height: int) -> None:
    folder = data_dir / "datasets" / unique("aspects")
    folder.mkdir(parents=True)
    for i, size in enumerate(SIZES[:grid]):
        Image.new("RGB", size, (40 + 20 * i, 90, 160)).save(folder / f"img{i}.png")
    owner, pid, _ = new_project(make_user, folder, "multiclass", TREE)
    labeler = make_user("labeler")
    owner.put(f"/api/v1/projects/{pid}/members", {"email": labeler.email, "role": "labeler"})
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200

    page = sign_in(new_context(), server, labeler)
    page.set_viewport_size({"width": width, "height": height})
    page.evaluate(f"localStorage.setItem('colabel.grid', '{grid}')")
    page.goto(f"{server}/#/p/{pid}/label")
    page.wait_for_function(
        f"() => {{ const imgs = [...document.querySelectorAll('[data-testid^=cell-] img')];"
        f" return imgs.length === {grid} && imgs.every((i) => i.complete && i.naturalWidth > 0) }}")
    shot(page, f"labeling-grid-{grid}-{width}x{height}")
    cells = page.evaluate(MEASURE)
    assert len(cells) == grid
    window = [0, 0, width, height]
    for cell in cells:
        nw, nh = cell["natural"]
        x, y, w, h = cell["shown"]
        # Inside the window (no scrolling to reach the last row) and inside its cell's clip.
        assert _inside(cell["box"], window), cell
        assert _inside(cell["shown"], cell["clip"]), cell
        # Not distorted either, and big enough to work on.
        assert abs((w / h) - (nw / nh)) / (nw / nh) < 0.02, cell
        assert max(w / cell["clip"][2], h / cell["clip"][3]) > 0.97, cell
    assert page.evaluate("document.scrollingElement.scrollHeight") <= height
