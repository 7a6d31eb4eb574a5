"""Every DICOM file with pixel data among pydicom's test files, through the media endpoint.

The files are the ones pydicom ships and any of its data packages installed here
(nothing is downloaded). Each either renders or fails with the outcome written below,
so a decoder that stops reading a file, or an error that changes its meaning, shows.
"""

from __future__ import annotations

import io
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from PIL import Image
from pydicom.data.data_manager import external_data_sources

from tests.conftest import bind_folder
from tests.infra import Api, unique

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
# The files that do not render, and why; every other file with pixel data must.
NOT_RENDERED = {
    # A synthetic codestream 266 bytes long whose SIZ header names 4-billion-pixel rows
    # (the file tests fragment parsing): no decoder reads it.
    "JPEG2000-embedded-sequence-delimiter.dcm": "unsupported_encoding",
    "MR_truncated.dcm": "corrupt_media",            # the pixel data is cut short
    "badVR.dcm": "corrupt_media",                   # Number of Frames is '1A'
    "meta_missing_tsyntax.dcm": "corrupt_media",    # a 2-byte Pixel Data, no Rows/Columns
    "nested_priv_SQ.dcm": "corrupt_media",          # likewise
}


def offline_files() -> list[Path]:
    """pydicom's own test files and those of installed data packages (no download)."""
    found = [p for p in TEST_FILES.rglob("*") if p.is_file()]
    for source in external_data_sources().values():
        found += [Path(p) for p in source.get_paths("**/*", 0)]
    return sorted(found)


def has_pixel_data(path: Path) -> bool:
    try:
        with warnings.catch_warnings():  # odd files are the point; their complaints are not
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, specific_tags=["PixelData", "FloatPixelData",
                                                                   "DoubleFloatPixelData"])
    except Exception:  # noqa: BLE001 - not a DICOM file at all
        return False
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def stored_name(path: Path) -> str:
    rel = str(path.relative_to(TEST_FILES)) if path.is_relative_to(TEST_FILES) else path.name
    return rel if rel.lower().endswith((".dcm", ".dicom")) else rel + ".dcm"


PIXEL_FILES = [p for p in offline_files() if has_pixel_data(p)]


@pytest.fixture(scope="module")
def dicom_project(make_user: Callable[..., Api], data_dir: Path) -> tuple[Api, int, dict[str, int]]:
    owner = make_user("dicomfiles")
    pid = owner.post("/api/v1/projects", {"name": unique("dicom files"), "task_type": "bbox",
                                          "labels": [{"name": "x"}]}).json()["project"]["id"]
    root = data_dir / "datasets" / unique("pydicom")
    for path in PIXEL_FILES:
        target = root / stored_name(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    r = bind_folder(owner, pid, root)
    assert r.ok, r.text
    items = owner.get(f"/api/v1/projects/{pid}/items", params={"limit": 500}).json()["items"]
    return owner, pid, {i["key"]: i["id"] for i in items}


def test_the_files_are_there() -> None:
    names = {p.name for p in PIXEL_FILES}
    assert len(PIXEL_FILES) >= 60 and "JPEG-lossy.dcm" in names
    assert set(NOT_RENDERED) <= names


@pytest.mark.parametrize("path", PIXEL_FILES, ids=stored_name)
def test_every_pydicom_file_with_pixel_data_renders(
    dicom_project: tuple[Api, int, dict[str, int]], path: Path
) -> None:
    owner, pid, ids = dicom_project
    r = owner.get(f"/api/v1/projects/{pid}/items/{ids[stored_name(path)]}/media",
                  params={"size": "thumb"})
    expected = NOT_RENDERED.get(path.name)
    if expected is None:
        assert r.status_code == 200, r.text
        with Image.open(io.BytesIO(r.content)) as img:
            img.load()
            assert img.size[0] > 0 and img.size[1] > 0
    else:
        assert r.status_code == 422 and r.json()["error"]["code"] == expected, r.text


def test_jpeg_lossy_renders_in_full_and_an_unreadable_encoding_names_its_syntax(
    dicom_project: tuple[Api, int, dict[str, int]]
) -> None:
    owner, pid, ids = dicom_project
    r = owner.get(f"/api/v1/projects/{pid}/items/{ids['JPEG-lossy.dcm']}/media")
    assert r.status_code == 200, r.text
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.size == (256, 1024)
    r = owner.get(f"/api/v1/projects/{pid}/items/"
                  f"{ids['JPEG2000-embedded-sequence-delimiter.dcm']}/media")
    error = r.json()["error"]
    assert r.status_code == 422 and error["code"] == "unsupported_encoding"
    assert "1.2.840.10008.1.2.4.91" in error["message"] and "corrupt" not in error["message"]
    assert error["details"]["transfer_syntax"] == "1.2.840.10008.1.2.4.91"
