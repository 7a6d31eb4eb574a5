"""DICOM in the labeling page: pydicom's JPEG-lossy.dcm (12-bit JPEG Extended, whose scan
header the JPEG decoders refuse as it stands) opens and shows its image."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pydicom
from playwright.sync_api import expect

from tests.e2e.conftest import shot, sign_in
from tests.e2e.helpers import stage_ready
from tests.export_setup import MakeUser, new_project
from tests.infra import unique

JPEG_LOSSY = Path(pydicom.__file__).parent / "data" / "test_files" / "JPEG-lossy.dcm"
# The brightest and the mean grey of the image as drawn, read back from a canvas.
PIXELS = """img => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let max = 0, sum = 0;
  for (let i = 0; i < d.length; i += 4) { max = Math.max(max, d[i]); sum += d[i]; }
  return [img.naturalWidth, img.naturalHeight, max, sum / (d.length / 4)];
}"""


def test_the_jpeg_lossy_file_opens_in_the_labeling_page(make_user: MakeUser, data_dir: Path,
                                                         server: str, new_context: Any) -> None:
    folder = data_dir / "datasets" / unique("dicom-e2e")
    folder.mkdir(parents=True)
    shutil.copy(JPEG_LOSSY, folder / "JPEG-lossy.dcm")
    owner, pid, _ = new_project(make_user, folder, "bbox", [{"name": "lesion"}])
    labeler = make_user("labeler")
    owner.put(f"/api/v1/projects/{pid}/members", {"email": labeler.email, "role": "labeler"})
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200

    page = sign_in(new_context(), server, labeler, f"#/p/{pid}/label")
    stage_ready(page)
    expect(page.locator(".side strong").first).to_have_text("JPEG-lossy.dcm")
    width, height, brightest, mean = page.locator("[data-testid=stage] img").evaluate(PIXELS)
    assert (width, height) == (256, 1024)
    assert brightest > 200 and 3 < mean < 60  # a bone scan: dark ground, bright bones
    shot(page, "dicom-jpeg-lossy")
