"""The media endpoint: every format through HTTP, caching headers, DICOM windowing, refusals."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image

from tests.conftest import bind_folder
from tests.infra import Api, unique

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]
DICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".png": "PNG",
           ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def huge_png(width: int, height: int) -> bytes:
    """A tiny file whose header claims width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def media_project(make_user: Callable[..., Api], data_dir: Path) -> tuple[Api, int, dict[str, int]]:
    owner = make_user("media")
    pid = owner.post("/api/v1/projects", {"name": unique("media"), "task_type": "bbox",
                                          "labels": [{"name": "x"}]}).json()["project"]["id"]
    root = data_dir / "datasets" / unique("media")
    root.mkdir(parents=True)
    img = Image.new("RGB", (64, 48), (30, 140, 220))
    for ext, fmt in FORMATS.items():
        img.save(root / f"img{ext}", fmt)
    img.save(root / "UPPER.PNG", "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(root / "rotated.jpg", "JPEG", exif=exif.tobytes())
    pages = [Image.new("L", (20, 10), 50), Image.new("L", (20, 10), 200)]
    pages[0].save(root / "pages.tif", save_all=True, append_images=pages[1:])
    (root / "bomb.png").write_bytes(huge_png(40000, 40000))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm"):
        shutil.copy(DICOM_FILES / name, root / name)
    ds = pydicom.dcmread(DICOM_FILES / "CT_small.dcm")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData])
    ds.save_as(root / "mpeg.dcm", enforce_file_format=True)
    r = bind_folder(owner, pid, root)
    assert r.ok, r.text
    items = owner.get(f"/api/v1/projects/{pid}/items", params={"limit": 100}).json()["items"]
    return owner, pid, {i["key"]: i["id"] for i in items}


def get(api: Api, pid: int, iid: int, **params: Any) -> Any:
    return api.get(f"/api/v1/projects/{pid}/items/{iid}/media", params=params)


@pytest.mark.parametrize("ext", [*FORMATS, "UPPER.PNG"])
def test_every_extension_renders(media_project: tuple[Api, int, dict[str, int]], ext: str) -> None:
    owner, pid, ids = media_project
    key = ext if ext == "UPPER.PNG" else f"img{ext}"
    r = get(owner, pid, ids[key])
    assert r.status_code == 200, r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"] in ("image/jpeg", "image/png") and r.headers["etag"]
    assert "max-age" in r.headers["cache-control"]
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.size == (64, 48)
    if ext in (".png", ".jpg", ".jpeg"):
        stored = Path(owner.get(f"/api/v1/projects/{pid}").json()["project"]["dataset"]
                      ["datastore"]["path"]) / key
        assert r.content == stored.read_bytes()  # served as stored


def test_etag_revalidation_and_thumbnails(media_project: tuple[Api, int, dict[str, int]],
                                          data_dir: Path) -> None:
    owner, pid, ids = media_project
    first = get(owner, pid, ids["img.bmp"], size="thumb")
    assert first.status_code == 200
    again = owner.get(f"/api/v1/projects/{pid}/items/{ids['img.bmp']}/media",
                      params={"size": "thumb"}, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    cached = list((data_dir / "cache" / "media" / str(pid)).glob(f"{ids['img.bmp']}-*"))
    assert len(cached) == 1
    assert get(owner, pid, ids["img.bmp"], size="thumb").content == first.content
    assert get(owner, pid, ids["img.bmp"]).headers["etag"] != first.headers["etag"]


def test_exif_orientation_and_tiff_pages(media_project: tuple[Api, int, dict[str, int]]) -> None:
    owner, pid, ids = media_project
    with Image.open(io.BytesIO(get(owner, pid, ids["rotated.jpg"]).content)) as img:
        assert img.size == (48, 64)
    page0 = np.asarray(Image.open(io.BytesIO(get(owner, pid, ids["pages.tif"]).content)))
    page1 = np.asarray(Image.open(io.BytesIO(get(owner, pid, ids["pages.tif"], frame=1).content)))
    assert page0.mean() < page1.mean()
    assert get(owner, pid, ids["pages.tif"], frame=5).status_code == 422


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"])
def test_dicom_renders_and_windows(media_project: tuple[Api, int, dict[str, int]], name: str) -> None:
    owner, pid, ids = media_project
    default = get(owner, pid, ids[name])
    assert default.status_code == 200 and default.headers["content-type"] == "image/png"
    narrow = get(owner, pid, ids[name], wc=100, ww=10)
    assert narrow.status_code == 200 and narrow.content != default.content
    assert get(owner, pid, ids[name], size="thumb").headers["content-type"] == "image/jpeg"


def test_dicom_frames(media_project: tuple[Api, int, dict[str, int]]) -> None:
    owner, pid, ids = media_project
    a = get(owner, pid, ids["SC_rgb_rle_2frame.dcm"], frame=0)
    b = get(owner, pid, ids["SC_rgb_rle_2frame.dcm"], frame=1)
    assert a.status_code == b.status_code == 200 and a.content != b.content
    assert get(owner, pid, ids["SC_rgb_rle_2frame.dcm"], frame=2).status_code == 422


@pytest.mark.reliability(
    area='Input',
    attack='Asked for the media of a 40,000 x 40,000 PNG (a decompression bomb), a corrupt JPEG and an'
           ' unsupported DICOM transfer syntax.',
    promise='A clear 422/415 without decoding the bomb; the server stays up.')
def test_refusals(media_project: tuple[Api, int, dict[str, int]]) -> None:
    owner, pid, ids = media_project
    r = get(owner, pid, ids["mpeg.dcm"])
    assert r.status_code == 415 and "1.2.840.10008.1.2.4.100" in r.json()["error"]["message"]
    r = get(owner, pid, ids["bomb.png"])
    assert r.status_code == 422 and r.json()["error"]["code"] == "image_too_large"
    r = get(owner, pid, ids["broken.jpg"])
    assert r.status_code == 422 and r.json()["error"]["code"] == "corrupt_media"
    for params in ({"size": "huge"}, {"frame": "-1"}, {"wc": "abc"}, {"ww": "0", "wc": "1"}):
        assert get(owner, pid, ids["CT_small.dcm"], **params).status_code == 422
    assert owner.get(f"/api/v1/projects/{pid}/items/999999999/media").status_code == 404


def test_background_probe_fills_sizes(media_project: tuple[Api, int, dict[str, int]]) -> None:
    import time

    owner, pid, ids = media_project
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        item = owner.get(f"/api/v1/projects/{pid}/items/{ids['CT_small.dcm']}").json()["item"]
        bomb = owner.get(f"/api/v1/projects/{pid}/items/{ids['bomb.png']}").json()["item"]
        if item["width"] is not None and bomb["probe_error"] is not None:
            break
        time.sleep(0.3)
    assert (item["width"], item["height"], item["frames"]) == (128, 128, 1)
    assert "too" in bomb["probe_error"].lower()
    img = owner.get(f"/api/v1/projects/{pid}/items/{ids['img.png']}").json()["item"]
    assert (img["width"], img["height"]) == (64, 48)
