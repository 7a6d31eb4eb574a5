"""DICOM half of `server.media`: read headers and turn one frame into 8-bit display pixels."""

from __future__ import annotations

import logging
import math
import zlib
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    apply_voi_lut,
    convert_color_space,
)
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from server.errors import Unprocessable, UnsupportedMediaType
from server.media.dicom_decode import decode_frame
from server.media.pixels import check_pixels, min_max, to_uint8

log = logging.getLogger(__name__)

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
_META_GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"
_CHUNK = 1 << 20
# Per-frame values in enhanced multi-frame files live in functional groups, not at the top level.
_FRAME_GROUPS = (
    ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept")),
    ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth", "VOILUTFunction")),
)


def read_header(fp: BinaryIO, *, headerless: bool, max_pixels: int) -> tuple[int, int, int]:
    """Width, height and frame count from the elements before the pixel data."""
    ds = _read(fp, headerless=headerless, stop_before_pixels=True, max_pixels=max_pixels)
    rows, cols, frames, _ = _geometry(ds, max_pixels)
    return cols, rows, frames


def render_frame(
    fp: BinaryIO,
    *,
    headerless: bool,
    frame: int | None,
    wc: float | None,
    ww: float | None,
    max_pixels: int,
) -> Image.Image:
    """One frame as an 8-bit L or RGB image, after the modality LUT, windowing and colour conversion."""
    ds = _read(fp, headerless=headerless, stop_before_pixels=False, max_pixels=max_pixels)
    _, _, frames, samples = _geometry(ds, max_pixels)
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        raise Unprocessable("the DICOM file has no pixel data", code="corrupt_media")
    index = 0 if frame is None else frame
    if not 0 <= index < frames:
        raise Unprocessable(f"frame {index} does not exist; the file has {frames}", code="invalid_frame")
    window = _window_override(wc, ww)
    tsyntax = _transfer_syntax(ds)
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        decoder = None
    if decoder is None or not decoder.is_available:
        name = tsyntax.name if tsyntax.name != str(tsyntax) else "unknown transfer syntax"
        raise UnsupportedMediaType(
            f"cannot decode DICOM transfer syntax {tsyntax} ({name})", code="unsupported_transfer_syntax"
        )
    arr, changes = decode_frame(decoder, ds, index, frames, tsyntax)
    photometric = str(changes.get("photometric_interpretation", ds.get("PhotometricInterpretation", "")))
    if samples == 1 and photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return Image.fromarray(rgb if rgb.dtype == np.uint8 else to_uint8(rgb, 0, 65535))
    if samples == 1:
        return Image.fromarray(_monochrome(arr, ds, index, window, photometric == "MONOCHROME1"))
    return Image.fromarray(_colour(arr, ds, photometric))


def _read(fp: BinaryIO, *, headerless: bool, stop_before_pixels: bool, max_pixels: int) -> FileDataset:
    _refuse_deflate_bomb(fp, max_pixels)
    try:
        ds = dcmread(fp, stop_before_pixels=stop_before_pixels, force=headerless)
    except Exception as exc:
        if headerless:
            raise UnsupportedMediaType("the content is not a DICOM file", code="unsupported_format") from exc
        raise
    # force=True parses almost anything; a real preamble-less dataset starts with group 0002 or 0008.
    first = next(iter(ds.keys()), None)
    if headerless and not ds.file_meta and (first is None or first.group != 0x0008):
        raise UnsupportedMediaType("the content is not a DICOM file", code="unsupported_format")
    return ds


def _refuse_deflate_bomb(fp: BinaryIO, max_pixels: int) -> None:
    """pydicom inflates a deflated dataset whole and unbounded, so measure the inflated size first."""
    start = fp.tell()
    head = fp.read(4096)
    offset = 132 if head[128:132] == b"DICM" else 0
    if not head[offset:].startswith(_META_GROUP_LENGTH):
        fp.seek(start)
        if _DEFLATED_UID in head:  # without the (required) group length the dataset's start is unknown
            raise UnsupportedMediaType(
                "a deflated DICOM file must carry its File Meta group length", code="unsupported_format"
            )
        return
    body = offset + 12 + int.from_bytes(head[offset + 8 : offset + 12], "little")
    if _DEFLATED_UID not in head[offset:body]:
        fp.seek(start)
        return
    limit = 4 * max_pixels + (16 << 20)
    fp.seek(start + body)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    while (chunk := fp.read(_CHUNK)) and not inflater.eof:
        while chunk:
            total += len(inflater.decompress(chunk, _CHUNK))
            if total > limit:
                raise Unprocessable("the deflated DICOM dataset inflates too far", code="image_too_large")
            chunk = inflater.unconsumed_tail
    fp.seek(start)


def _geometry(ds: Dataset, max_pixels: int) -> tuple[int, int, int, int]:
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows < 1 or cols < 1:
        raise Unprocessable("the DICOM file holds no image (no Rows/Columns)", code="corrupt_media")
    frames, samples = int(ds.get("NumberOfFrames") or 1), int(ds.get("SamplesPerPixel") or 1)
    if frames < 1 or samples < 1:
        raise Unprocessable("the DICOM file declares no frames or samples", code="corrupt_media")
    check_pixels(rows * cols * frames * samples, max_pixels)
    return rows, cols, frames, samples


def _transfer_syntax(ds: FileDataset) -> UID:
    tsyntax = ds.file_meta.get("TransferSyntaxUID")
    if not tsyntax:
        # No file meta: the pixel data can only be native, encoded as the dataset itself was.
        implicit, little = ds.original_encoding
        tsyntax = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
        ds.file_meta.TransferSyntaxUID = tsyntax
    return UID(str(tsyntax))


def _window_override(wc: float | None, ww: float | None) -> tuple[float, float] | None:
    if wc is None and ww is None:
        return None
    if wc is None or ww is None or not (math.isfinite(wc) and math.isfinite(ww)) or ww < 1:
        raise Unprocessable("give both wc and ww, finite, with ww >= 1", code="invalid_window")
    return wc, ww


def _frame_values(ds: Dataset, index: int) -> None:
    """Copy this frame's functional-group rescale and window to the top level, where pydicom looks."""
    groups: list[Dataset] = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    if per_frame and index < len(per_frame):
        groups.append(per_frame[index])
    present = {keyword for _, keywords in _FRAME_GROUPS for keyword in keywords if keyword in ds}
    for group in groups:  # per-frame last, so it wins over shared
        for sequence, keywords in _FRAME_GROUPS:
            items = group.get(sequence)
            for keyword in keywords if items else ():
                if keyword in items[0] and keyword not in present:
                    setattr(ds, keyword, items[0][keyword].value)


def _monochrome(
    arr: NDArray[Any], ds: Dataset, index: int, window: tuple[float, float] | None, invert: bool
) -> NDArray[np.uint8]:
    _frame_values(ds, index)
    values = apply_modality_lut(arr, ds)
    out: NDArray[np.uint8] | None = None
    if window is not None:
        out = _linear_window(values, *window)
    elif _has_voi_lut(ds) or ("WindowCenter" in ds and "WindowWidth" in ds):
        try:
            if _has_voi_lut(ds) and values.dtype.kind == "f":
                values = np.rint(values).astype(np.int64)  # a LUT is indexed by integers
            out = to_uint8(apply_voi_lut(values, ds), *_voi_range(ds))
        except (ValueError, TypeError, IndexError, NotImplementedError) as exc:
            log.info("ignoring the DICOM file's unusable VOI LUT or window: %s", exc)
    if out is None:
        out = to_uint8(values, *min_max(values))
    return 255 - out if invert else out


def _linear_window(values: NDArray[Any], center: float, width: float) -> NDArray[np.uint8]:
    """PS3.3 C.11.2.1.2.1 LINEAR windowing onto 0..255."""
    x = np.asarray(values, dtype=np.float64)
    if width == 1:
        return np.where(x > center - 0.5, 255, 0).astype(np.uint8)
    return to_uint8(((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0, 0.0, 255.0)


def _has_voi_lut(ds: Dataset) -> bool:
    items = ds.get("VOILUTSequence")
    return bool(items) and "LUTDescriptor" in items[0] and "LUTData" in items[0]


def _voi_range(ds: Dataset) -> tuple[float, float]:
    """The output range of `apply_voi_lut`, which maps onto this rather than onto 8 bits."""
    if _has_voi_lut(ds):
        entries, first = ds.VOILUTSequence[0].LUTDescriptor[:2]
        lut = apply_voi(np.arange(first, first + (entries or 65536), dtype=np.int64), ds)
        return float(lut.min()), float(lut.max())
    bits = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif ds.get("PixelRepresentation", 0) == 1:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    else:
        lo, hi = 0.0, float(2**bits - 1)
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return lo, hi


def _colour(arr: NDArray[Any], ds: Dataset, photometric: str) -> NDArray[np.uint8]:
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        arr = convert_color_space(arr, photometric, "RGB")
    elif photometric not in ("RGB", "YBR_ICT", "YBR_RCT"):  # the JPEG 2000 codec already undid ICT/RCT
        raise UnsupportedMediaType(
            f"cannot display DICOM photometric interpretation {photometric!r}", code="unsupported_format"
        )
    if arr.dtype == np.uint8:
        return arr
    bits = int(ds.get("BitsStored") or arr.dtype.itemsize * 8)
    return to_uint8(arr, 0.0, float(2**bits - 1))
