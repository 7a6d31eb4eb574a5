"""Turn the stored bytes of an image or DICOM file into something a browser can show, safely."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps

from server.data.datastores.base import ACCEPTED_EXTENSIONS, DICOM_EXTENSIONS, IMAGE_EXTENSIONS
from server.errors import ApiError, Unprocessable, UnsupportedMediaType
from server.media.pixels import check_pixels, min_max, to_uint8

log = logging.getLogger(__name__)

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "DICOM_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "Probe",
    "Rendered",
    "media_kind",
    "probe",
    "render",
    "sniff",
]

Kind = Literal["image", "dicom"]
SNIFF_BYTES = 512
# The only Pillow plugins ever used: what `sniff` recognised, never Pillow's own guess.
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "tiff": "TIFF"}
_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
_SWAPS_AXES = frozenset({5, 6, 7, 8})
# An ICC profile only stays valid across a conversion within one colour model.
_COLOUR_MODELS = {"1": "L", "LA": "L", "La": "L", "P": "RGB", "PA": "RGB", "RGBA": "RGB", "RGBa": "RGB"}
_FULL_JPEG_QUALITY = 90
_THUMB_JPEG_QUALITY = 85


@dataclass(frozen=True)
class Probe:
    """What a file holds, as read from its header: kind, display width and height, frame count."""

    kind: Kind
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class Rendered:
    """Bytes a browser can display, with their content type."""

    body: bytes
    content_type: str


def media_kind(ext: str) -> Kind:
    """Return "image" or "dicom" for an accepted extension (any case, dot optional); 415 for any other."""
    normal = ext.lower() if ext.startswith(".") else f".{ext.lower()}"
    if normal in IMAGE_EXTENSIONS:
        return "image"
    if normal in DICOM_EXTENSIONS:
        return "dicom"
    raise UnsupportedMediaType(f"files ending in {ext!r} are not supported", code="unsupported_format")


def sniff(head: bytes) -> str | None:
    """The format named by the magic numbers in the first bytes: jpeg, png, bmp, tiff, dicom or None."""
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


def probe(fp: BinaryIO, ext: str, max_pixels: int) -> Probe:
    """Kind, size and frame count from the header alone; 422 image_too_large past `max_pixels`.

    `fp` must be seekable and at the start of the file; it is left there afterwards.
    """
    kind = media_kind(ext)
    fmt = _content_format(fp.read(SNIFF_BYTES), kind, ext)
    fp.seek(0)
    try:
        with _guarded():
            if fmt is None or fmt == "dicom":
                from server.media import dicom as media_dicom

                width, height, frames = media_dicom.read_header(
                    fp, headerless=fmt is None, max_pixels=max_pixels
                )
                return Probe("dicom", width, height, frames)
            with Image.open(fp, formats=[_PIL_FORMATS[fmt]]) as im:
                width, height, frames = _dimensions(im)
                check_pixels(width * height * frames, max_pixels)
                return Probe("image", width, height, frames)
    finally:
        fp.seek(0)


def render(
    data: bytes,
    ext: str,
    *,
    size: Literal["full", "thumb"] = "full",
    frame: int | None = None,
    wc: float | None = None,
    ww: float | None = None,
    max_pixels: int = 100_000_000,
    thumb_px: int = 256,
) -> Rendered:
    """The file as a JPEG or PNG for the browser: full size, or a thumbnail of `thumb_px` at most."""
    if size not in ("full", "thumb") or thumb_px < 1 or max_pixels < 1:
        raise ValueError(f"bad render arguments: size={size!r} thumb_px={thumb_px} max_pixels={max_pixels}")
    kind = media_kind(ext)
    fmt = _content_format(data[:SNIFF_BYTES], kind, ext)
    with _guarded():
        if fmt is None or fmt == "dicom":
            from server.media import dicom as media_dicom

            im = media_dicom.render_frame(
                io.BytesIO(data), headerless=fmt is None, frame=frame, wc=wc, ww=ww, max_pixels=max_pixels
            )
            if size == "thumb":
                im.thumbnail((thumb_px, thumb_px))
                return _encode(im, "jpeg", _THUMB_JPEG_QUALITY)
            return _encode(im, "png")  # lossless: this may be read diagnostically
        return _render_image(data, fmt, size, frame, max_pixels, thumb_px)


def _content_format(head: bytes, kind: Kind, ext: str) -> str | None:
    """The sniffed format if it belongs to the extension's family (None: a DICOM without preamble)."""
    fmt = sniff(head)
    if kind == "image" and fmt in _PIL_FORMATS:
        return fmt
    if kind == "dicom" and fmt in ("dicom", None):
        return fmt
    expected = "DICOM" if kind == "dicom" else "JPEG, PNG, BMP or TIFF"
    raise UnsupportedMediaType(
        f"the content of this {ext} file is {fmt or 'not a recognised format'}, not {expected}",
        code="unsupported_format",
    )


@contextmanager
def _guarded() -> Iterator[None]:
    """Map whatever Pillow, pydicom, numpy or zlib raise onto the API's errors."""
    with warnings.catch_warnings():
        # Pillow's own bomb check only warns below 2x its global limit; make it refuse here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # Per-file complaints (bad EXIF, odd VRs) from a server's point of view are noise, and pydicom
        # logs its own anyway; ignoring them also makes the outcome independent of warning filters.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(PIL|pydicom)(\.|$)")
        try:
            yield
        except ApiError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError) as exc:
            raise Unprocessable(f"the image is too large to process: {exc}", code="image_too_large") from exc
        except Exception as exc:
            log.info("cannot decode media: %r", exc)
            raise Unprocessable(
                f"the file is corrupt, truncated or cannot be decoded ({type(exc).__name__})",
                code="corrupt_media",
            ) from exc


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation, read without decoding (PNG's getexif() would load the pixels)."""
    try:
        if im.format == "PNG":
            exif = Image.Exif()
            exif.load(im.info.get("exif") or b"")
        else:
            exif = im.getexif()
        value = exif.get(0x0112, 1)
    except Exception:
        # Broken EXIF should not make an otherwise good image unviewable.
        log.info("ignoring unreadable EXIF", exc_info=True)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _dimensions(im: Image.Image) -> tuple[int, int, int]:
    """Display width and height (after EXIF rotation) and frame count."""
    width, height = im.size
    if _orientation(im) in _SWAPS_AXES:
        width, height = height, width
    return width, height, int(getattr(im, "n_frames", 1))


def _render_image(
    data: bytes, fmt: str, size: str, frame: int | None, max_pixels: int, thumb_px: int
) -> Rendered:
    with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]]) as im:
        width, height, frames = _dimensions(im)
        check_pixels(width * height * frames, max_pixels)
        orientation = _orientation(im)
        if frame is not None:
            if not 0 <= frame < frames:
                raise Unprocessable(
                    f"frame {frame} does not exist; the file has {frames}", code="invalid_frame"
                )
            im.seek(frame)
            check_pixels(im.size[0] * im.size[1], max_pixels)  # pages may differ in size
        if size == "full" and fmt in _CONTENT_TYPES and orientation == 1 and (frame is None or frames == 1):
            _validate(im)
            return Rendered(data, _CONTENT_TYPES[fmt])
        if size == "thumb" and fmt == "jpeg":
            im.draft(None, (thumb_px, thumb_px))  # DCT scaling: decode no more than the thumbnail needs
        im.load()
        shown = ImageOps.exif_transpose(im) if orientation != 1 else im
        out = _display(shown)
        icc = shown.info.get("icc_profile") if _model(out.mode) == _model(shown.mode) else None
        if size == "thumb":
            out.thumbnail((thumb_px, thumb_px))
            return _encode(out, "png" if "A" in out.mode else "jpeg", _THUMB_JPEG_QUALITY, icc)
        if fmt == "jpeg":
            return _encode(out, "jpeg", _FULL_JPEG_QUALITY, icc)
        return _encode(out, "png", icc=icc)


def _validate(im: Image.Image) -> None:
    """Check bytes served as stored are whole, as cheaply as the format allows."""
    if im.format == "PNG":
        im.verify()  # walks every chunk's CRC up to IEND without inflating
        return
    # A 1/8-scale decode still reads every entropy-coded byte, so truncation shows.
    im.draft(None, (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
    im.load()


def _display(im: Image.Image) -> Image.Image:
    """An L, RGB or RGBA image; high bit depths are stretched from their min/max, not clipped."""
    if im.mode in ("I", "F") or im.mode.startswith("I;"):
        values = np.asarray(im)
        return Image.fromarray(to_uint8(values, *min_max(values)))
    if im.mode == "RGBA":
        return im
    if im.has_transparency_data:
        return im.convert("RGBA")
    if im.mode in ("L", "RGB"):
        return im
    return im.convert("L" if im.mode == "1" else "RGB")


def _model(mode: str) -> str:
    return _COLOUR_MODELS.get(mode, mode)


def _encode(
    im: Image.Image, fmt: str, quality: int = _FULL_JPEG_QUALITY, icc: bytes | None = None
) -> Rendered:
    buffer = io.BytesIO()
    if fmt == "jpeg":
        im.save(buffer, "JPEG", quality=quality, icc_profile=icc)
    else:
        im.save(buffer, "PNG", icc_profile=icc)
    return Rendered(buffer.getvalue(), _CONTENT_TYPES[fmt])
