from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageCms, ImageFile
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import Decoder
from pydicom.sequence import Sequence
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from server.errors import ApiError, Unprocessable, UnsupportedMediaType
from server.media.dicom_decode import fix_sequential_scan
from server.media.render import Probe, Rendered, media_kind, probe, render, sniff

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DCM_FILES = sorted(TEST_FILES.rglob("*.dcm"))
MPEG2_MAIN = "1.2.840.10008.1.2.4.100"
# (status, code) pairs render may raise for a file it cannot show.
DOCUMENTED = {
    (415, "unsupported_format"),
    (415, "unsupported_transfer_syntax"),
    (422, "corrupt_media"),
    (422, "image_too_large"),
    (422, "invalid_frame"),
    (422, "unsupported_encoding"),
}


# ---------------------------------------------------------------- helpers


def gradient(mode: str, size: tuple[int, int] = (40, 30)) -> Image.Image:
    """A non-constant image in `mode`, so scaling and rotation are visible."""
    w, h = size
    ramp = np.add.outer(np.arange(h), np.arange(w)).astype(np.float64)
    ramp = ramp / ramp.max()
    if mode == "I;16":
        return Image.fromarray((1000 + ramp * 2000).astype(np.uint16))  # far from 0..65535
    if mode == "F":
        return Image.fromarray((ramp * 1e-3 - 5).astype(np.float32))
    base = Image.fromarray((ramp * 255).astype(np.uint8))
    rgb = Image.merge("RGB", (base, base.rotate(180), Image.new("L", size, 90)))
    if mode == "RGBA":
        out = rgb.copy()
        out.putalpha(base)
        return out
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return rgb.convert(mode)


def encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def decoded(rendered: Rendered) -> Image.Image:
    """The rendered body opened and fully decoded, checked against its content type."""
    im = Image.open(io.BytesIO(rendered.body))
    im.load()
    assert rendered.content_type == {"JPEG": "image/jpeg", "PNG": "image/png"}[im.format or ""]
    return im


def pixels(rendered: Rendered) -> NDArray[Any]:
    return np.asarray(decoded(rendered)).astype(np.int64)


def png_declaring(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose IHDR claims `width` x `height` but holds almost no data."""

    def chunk(tag: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(tag + payload)
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def dicom_bytes(ds: Dataset, **params: Any) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, **params)
    return buffer.getvalue()


def read_test_file(name: str) -> FileDataset:
    return pydicom.dcmread(TEST_FILES / name)


def expect(error: type[ApiError], code: str, call: Callable[[], object]) -> ApiError:
    with pytest.raises(error) as exc:
        call()
    assert exc.value.code == code, exc.value
    return exc.value


@pytest.fixture
def no_pillow_decode(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) any attempt to decode pixels through Pillow's image plugins."""
    calls: list[str] = []

    def refuse(self: ImageFile.ImageFile) -> Any:
        calls.append(str(self.format))
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    return calls


@pytest.fixture
def no_dicom_decode(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record (and refuse) any attempt to decode DICOM pixel data."""
    calls: list[int] = []

    def refuse(self: Decoder, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(Decoder, "as_array", refuse)
    return calls


# ---------------------------------------------------------------- kinds and sniffing


@pytest.mark.parametrize(
    ("ext", "kind"),
    [(".jpg", "image"), (".JPEG", "image"), ("png", "image"), (".Tif", "image"), (".jfif", "image")]
    + [(".dcm", "dicom"), (".DICOM", "dicom")],
)
def test_media_kind_by_extension(ext: str, kind: str) -> None:
    assert media_kind(ext) == kind


@pytest.mark.parametrize("ext", [".gif", ".webp", ".txt", "", ".dcm.gz"])
def test_media_kind_refuses_other_extensions(ext: str) -> None:
    expect(UnsupportedMediaType, "unsupported_format", lambda: media_kind(ext))


def test_sniff_recognises_magic_numbers() -> None:
    im = gradient("RGB")
    assert sniff(encode(im, "JPEG")[:512]) == "jpeg"
    assert sniff(encode(im, "PNG")[:512]) == "png"
    assert sniff(encode(im, "BMP")[:512]) == "bmp"
    assert sniff(encode(im, "TIFF")[:512]) == "tiff"
    assert sniff(encode(im, "TIFF", compression="tiff_lzw")[:4]) == "tiff"
    assert sniff((TEST_FILES / "CT_small.dcm").read_bytes()[:512]) == "dicom"
    assert sniff(encode(im, "GIF")[:512]) is None
    assert sniff(b"plain text " * 60) is None
    assert sniff(b"") is None


# ---------------------------------------------------------------- ordinary images

IMAGE_CASES = [
    (".jpg", "JPEG", "RGB"),
    (".jpeg", "JPEG", "L"),
    (".JPG", "JPEG", "RGB"),
    (".jpe", "JPEG", "RGB"),
    (".jfif", "JPEG", "L"),
    (".jpg", "JPEG", "CMYK"),
    (".png", "PNG", "RGB"),
    (".PNG", "PNG", "L"),
    (".png", "PNG", "RGBA"),
    (".png", "PNG", "LA"),
    (".png", "PNG", "P"),
    (".png", "PNG", "I;16"),
    (".bmp", "BMP", "RGB"),
    (".BMP", "BMP", "L"),
    (".bmp", "BMP", "P"),
    (".bmp", "BMP", "1"),
    (".tif", "TIFF", "RGB"),
    (".tiff", "TIFF", "L"),
    (".TIFF", "TIFF", "RGBA"),
    (".tif", "TIFF", "CMYK"),
    (".tiff", "TIFF", "I;16"),
    (".tif", "TIFF", "F"),
]


@pytest.mark.parametrize(("ext", "fmt", "mode"), IMAGE_CASES, ids=str)
def test_every_extension_and_mode_renders(ext: str, fmt: str, mode: str) -> None:
    source = gradient(mode)
    data = encode(source, fmt)
    assert Image.open(io.BytesIO(data)).mode == mode  # the fixture really is in that mode

    full = render(data, ext)
    shown = decoded(full)
    assert shown.size == (40, 30)
    if fmt in ("JPEG", "PNG"):
        assert full.body == data  # served as stored, not re-encoded
    else:
        assert full.content_type == "image/png"
        assert shown.mode in ("L", "RGB", "RGBA")
        assert "A" in shown.mode if mode == "RGBA" else "A" not in shown.mode

    thumb = decoded(render(data, ext, size="thumb", thumb_px=20))
    assert max(thumb.size) == 20 and thumb.size == (20, 15)
    assert thumb.mode in ("L", "RGB", "RGBA")
    has_alpha = mode in ("RGBA", "LA")
    assert thumb.format == ("PNG" if has_alpha else "JPEG")


@pytest.mark.parametrize(("ext", "fmt", "mode"), IMAGE_CASES, ids=str)
def test_probe_reads_the_header_only(ext: str, fmt: str, mode: str, no_pillow_decode: list[str]) -> None:
    data = encode(gradient(mode, (41, 17)), fmt)
    assert probe(io.BytesIO(data), ext, max_pixels=10_000) == Probe("image", 41, 17, 1)
    assert no_pillow_decode == []


def test_probe_leaves_the_stream_at_the_start() -> None:
    for data, ext in [
        (encode(gradient("RGB"), "TIFF"), ".tif"),
        ((TEST_FILES / "MR_small.dcm").read_bytes(), ".dcm"),
    ]:
        fp = io.BytesIO(data)
        assert probe(fp, ext, 10_000).width in (40, 64)
        assert fp.tell() == 0


def test_sixteen_bit_is_stretched_from_min_max_not_clipped() -> None:
    data = encode(gradient("I;16"), "TIFF")  # values 1000..3000
    out = pixels(render(data, ".tiff"))
    assert out.min() == 0 and out.max() == 255
    assert 100 < out[15, 20] < 155  # the middle of the ramp lands mid-grey
    assert (np.diff(out[0]) >= 0).all()  # order kept along the ramp

    thumb = pixels(render(encode(gradient("I;16"), "PNG"), ".png", size="thumb"))
    assert thumb.min() <= 5 and thumb.max() >= 250


def test_float_tiff_is_stretched() -> None:
    out = pixels(render(encode(gradient("F"), "TIFF"), ".tif"))
    assert out.min() == 0 and out.max() == 255


def test_palette_with_transparency_keeps_alpha() -> None:
    source = gradient("P")
    data = encode(source, "PNG", transparency=0)
    thumb = decoded(render(data, ".png", size="thumb"))
    assert thumb.format == "PNG" and thumb.mode == "RGBA"
    assert np.asarray(thumb)[..., 3].min() == 0


def test_two_page_tiff_pages_and_frames() -> None:
    first, second = gradient("RGB", (40, 30)), gradient("L", (20, 10))
    data = encode(first, "TIFF", save_all=True, append_images=[second])
    assert probe(io.BytesIO(data), ".tif", 10_000) == Probe("image", 40, 30, 2)
    assert decoded(render(data, ".tif")).size == (40, 30)
    assert decoded(render(data, ".tif", frame=0)).size == (40, 30)
    page2 = decoded(render(data, ".tif", frame=1))
    assert page2.size == (20, 10) and page2.mode == "L"
    assert decoded(render(data, ".tif", frame=1, size="thumb", thumb_px=8)).size == (8, 4)
    expect(Unprocessable, "invalid_frame", lambda: render(data, ".tif", frame=2))
    expect(Unprocessable, "invalid_frame", lambda: render(data, ".tif", frame=-1))
    # Frames count towards the pixel budget: 2 x 1200 > 2000 although one page would fit.
    expect(Unprocessable, "image_too_large", lambda: render(data, ".tif", max_pixels=2000))
    expect(Unprocessable, "image_too_large", lambda: probe(io.BytesIO(data), ".tif", 2000))


def test_single_frame_png_frame_zero_is_served_as_stored() -> None:
    data = encode(gradient("RGB"), "PNG")
    assert render(data, ".png", frame=0).body == data
    expect(Unprocessable, "invalid_frame", lambda: render(data, ".png", frame=1))


def test_thumbnails_are_never_upscaled() -> None:
    small = encode(gradient("RGB", (40, 30)), "JPEG")
    assert decoded(render(small, ".jpg", size="thumb", thumb_px=256)).size == (40, 30)
    wide = encode(gradient("RGB", (600, 300)), "JPEG")
    thumb = decoded(render(wide, ".jpg", size="thumb"))
    assert thumb.size == (256, 128) and thumb.format == "JPEG"


def test_cmyk_jpeg_thumbnail_is_rgb() -> None:
    thumb = decoded(render(encode(gradient("CMYK"), "JPEG"), ".jpg", size="thumb"))
    assert thumb.mode == "RGB"


def test_icc_profile_kept_within_a_colour_model_and_dropped_across() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = encode(gradient("RGB", (300, 200)), "JPEG", icc_profile=srgb)
    assert decoded(render(rgb, ".jpg", size="thumb")).info.get("icc_profile") == srgb
    palette = encode(gradient("P"), "PNG", icc_profile=srgb)
    assert decoded(render(palette, ".png", size="thumb")).info.get("icc_profile") == srgb
    cmyk = encode(gradient("CMYK"), "JPEG", icc_profile=srgb)  # a CMYK file's profile is a CMYK one
    thumb = decoded(render(cmyk, ".jpg", size="thumb"))
    assert thumb.mode == "RGB" and "icc_profile" not in thumb.info


# ---------------------------------------------------------------- EXIF orientation


def oriented_jpeg(orientation: int, size: tuple[int, int] = (40, 30)) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(gradient("RGB", size), "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_orientation_6_is_applied_and_re_encoded() -> None:
    data = oriented_jpeg(6)
    full = render(data, ".jpg")
    assert full.body != data
    shown = decoded(full)
    assert shown.format == "JPEG" and shown.size == (30, 40)
    assert shown.getexif().get(0x0112) in (None, 1)  # not rotated a second time by the browser
    assert decoded(render(data, ".jpg", size="thumb", thumb_px=20)).size == (15, 20)
    assert probe(io.BytesIO(data), ".jpg", 10_000) == Probe("image", 30, 40, 1)
    # The re-encoded pixels are the source rotated 90 degrees clockwise.
    expected = np.asarray(gradient("RGB").transpose(Image.Transpose.ROTATE_270)).astype(np.int64)
    assert np.abs(pixels(full) - expected).mean() < 8


def test_exif_orientation_1_is_served_as_stored() -> None:
    data = oriented_jpeg(1)
    assert render(data, ".jpg").body == data
    assert probe(io.BytesIO(data), ".jpg", 10_000) == Probe("image", 40, 30, 1)


def test_exif_orientation_3_keeps_size_but_is_re_encoded() -> None:
    data = oriented_jpeg(3)
    full = render(data, ".jpeg")
    assert full.body != data and decoded(full).size == (40, 30)


# ---------------------------------------------------------------- bombs and limits


@pytest.mark.parametrize(("width", "height"), [(30_000, 30_000), (5_000, 5_000)])
def test_declared_huge_png_is_refused_without_decoding(
    width: int, height: int, no_pillow_decode: list[str]
) -> None:
    data = png_declaring(width, height)
    assert Image.MAX_IMAGE_PIXELS is not None
    expect(Unprocessable, "image_too_large", lambda: probe(io.BytesIO(data), ".png", 1_000_000))
    expect(Unprocessable, "image_too_large", lambda: render(data, ".png", max_pixels=1_000_000))
    expect(Unprocessable, "image_too_large", lambda: render(data, ".png", size="thumb", max_pixels=1_000_000))
    assert no_pillow_decode == []


def test_pillow_bomb_warning_becomes_image_too_large(no_pillow_decode: list[str]) -> None:
    # Over Pillow's warning threshold but within our own budget: Pillow's warning still refuses it.
    data = png_declaring(10_000, 10_000)
    expect(Unprocessable, "image_too_large", lambda: render(data, ".png", max_pixels=200_000_000))
    assert no_pillow_decode == []


def test_real_image_over_max_pixels() -> None:
    data = encode(gradient("RGB"), "JPEG")  # 40 x 30 = 1200 pixels
    expect(Unprocessable, "image_too_large", lambda: render(data, ".jpg", max_pixels=1199))
    expect(Unprocessable, "image_too_large", lambda: probe(io.BytesIO(data), ".jpg", 1199))
    assert render(data, ".jpg", max_pixels=1200).body == data


def test_no_global_state_leaks() -> None:
    before_limit = Image.MAX_IMAGE_PIXELS
    before_filters = list(warnings.filters)
    before_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    render(encode(gradient("RGB"), "BMP"), ".bmp")
    with pytest.raises(Unprocessable):
        render(png_declaring(30_000, 30_000), ".png")
    render((TEST_FILES / "CT_small.dcm").read_bytes(), ".dcm")
    assert Image.MAX_IMAGE_PIXELS == before_limit
    assert warnings.filters == before_filters
    assert ImageFile.LOAD_TRUNCATED_IMAGES == before_truncated


# ---------------------------------------------------------------- mismatches and corruption


@pytest.mark.parametrize(
    ("data", "ext"),
    [
        (encode(gradient("RGB"), "PNG"), ".dcm"),
        (b"this is not an image at all\n" * 40, ".jpg"),
        (encode(gradient("RGB"), "GIF"), ".png"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 100, ".jpeg"),
        ((TEST_FILES / "CT_small.dcm").read_bytes(), ".png"),
        (b"this is not DICOM either\n" * 40, ".dcm"),
        (b"", ".tif"),
    ],
    ids=["png-as-dcm", "text-as-jpg", "gif-as-png", "webp-as-jpeg", "dicom-as-png", "text-as-dcm", "empty"],
)
def test_content_that_does_not_match_the_extension(data: bytes, ext: str) -> None:
    expect(UnsupportedMediaType, "unsupported_format", lambda: render(data, ext))
    expect(UnsupportedMediaType, "unsupported_format", lambda: probe(io.BytesIO(data), ext, 10**8))


def test_jpeg_named_png_is_within_the_family_and_served_as_jpeg() -> None:
    data = encode(gradient("RGB"), "JPEG")
    rendered = render(data, ".png")
    assert rendered.content_type == "image/jpeg" and rendered.body == data


@pytest.mark.parametrize(
    ("fmt", "ext"), [("JPEG", ".jpg"), ("PNG", ".png"), ("BMP", ".bmp"), ("TIFF", ".tif")]
)
@pytest.mark.parametrize("size", ["full", "thumb"])
def test_truncated_files_are_corrupt_media(fmt: str, ext: str, size: str) -> None:
    data = encode(gradient("RGB", (200, 150)), fmt)
    cut = data[: len(data) * 2 // 3]
    error = expect(Unprocessable, "corrupt_media", lambda: render(cut, ext, size=size))  # type: ignore[arg-type]
    assert error.status == 422 and isinstance(error.__cause__, Exception)


def test_garbage_after_a_jpeg_signature_is_corrupt_media() -> None:
    data = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
    expect(Unprocessable, "corrupt_media", lambda: render(data, ".jpg"))
    expect(Unprocessable, "corrupt_media", lambda: probe(io.BytesIO(data), ".jpg", 10**8))


def test_bad_arguments_are_programming_errors() -> None:
    data = encode(gradient("RGB"), "PNG")
    with pytest.raises(ValueError):
        render(data, ".png", size="huge")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        render(data, ".png", thumb_px=0)


# ---------------------------------------------------------------- DICOM: every shipped file


@pytest.mark.parametrize("path", DCM_FILES, ids=lambda p: str(p.relative_to(TEST_FILES)))
def test_every_shipped_dicom_renders_or_fails_as_documented(path: Path) -> None:
    data = path.read_bytes()
    try:
        shown = decoded(render(data, ".dcm"))
    except ApiError as exc:
        assert (exc.status, exc.code) in DOCUMENTED, exc
        return
    header = probe(io.BytesIO(data), ".dcm", 100_000_000)
    assert header.kind == "dicom"
    assert shown.format == "PNG" and shown.mode in ("L", "RGB")
    assert shown.size == (header.width, header.height)
    thumb = decoded(render(data, ".dcm", size="thumb", thumb_px=32))
    assert thumb.format == "JPEG" and max(thumb.size) <= 32
    if header.frames > 1:
        assert decoded(render(data, ".dcm", frame=1)).size == shown.size
        last = header.frames
        expect(Unprocessable, "invalid_frame", lambda: render(data, ".dcm", frame=last))


def test_jpeg_lossy_with_a_non_sequential_scan_header_renders() -> None:
    """pydicom's JPEG-lossy.dcm (12-bit JPEG Extended) says Se=0 in its scan header; the
    decoders refuse it as is and read it once the header says what a sequential scan means."""
    data = (TEST_FILES / "JPEG-lossy.dcm").read_bytes()
    shown = decoded(render(data, ".dcm"))
    assert shown.size == (256, 1024) and shown.mode == "L"
    values = np.asarray(shown)
    assert values.max() == 255 and values.min() == 0 and 5 < values.mean() < 40  # a bone scan


def test_sequential_scan_repair_only_touches_sequential_scan_headers() -> None:
    ds = read_test_file("JPEG-lossy.dcm")
    frame = pydicom.encaps.get_frame(ds.PixelData, 0, number_of_frames=1)
    fixed = fix_sequential_scan(frame)
    assert fixed is not None and len(fixed) == len(frame)
    assert [i for i in range(len(frame)) if frame[i] != fixed[i]] == [frame.find(b"\xff\xda") + 8]
    assert fix_sequential_scan(fixed) is None  # already sequential: nothing to do
    progressive = frame.replace(b"\xff\xc1", b"\xff\xc2", 1)
    assert fix_sequential_scan(progressive) is None  # Ss/Se mean something there
    assert fix_sequential_scan(b"not a jpeg") is None
    assert fix_sequential_scan(frame[:100]) is None  # header cut before the scan


def test_compressed_pixel_data_no_decoder_reads_is_unsupported_encoding() -> None:
    ds = read_test_file("JPEG2000.dcm")
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 200])
    error = expect(Unprocessable, "unsupported_encoding", lambda: render(dicom_bytes(ds), ".dcm"))
    assert error.status == 422
    assert str(ds.file_meta.TransferSyntaxUID) in error.message and "JPEG 2000" in error.message
    assert error.details["transfer_syntax"] == str(ds.file_meta.TransferSyntaxUID)


GOOD_DICOM = [
    ("CT_small.dcm", 128, 128, "L"),
    ("MR_small.dcm", 64, 64, "L"),
    ("MR_small_RLE.dcm", 64, 64, "L"),
    ("MR_small_bigendian.dcm", 64, 64, "L"),
    ("MR_small_jp2klossless.dcm", 64, 64, "L"),
    ("JPEG2000.dcm", 256, 1024, "L"),
    ("JPGExtended.dcm", 256, 1024, "L"),
    ("MR_small_jpeg_ls_lossless.dcm", 64, 64, "L"),
    ("JPEGLSNearLossless_16.dcm", 10, 50, "L"),
    ("SC_rgb_jls_lossy_line.dcm", 100, 100, "RGB"),
    ("SC_rgb_jpeg_gdcm.dcm", 100, 100, "RGB"),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", 100, 100, "RGB"),
    ("SC_ybr_full_422_uncompressed.dcm", 100, 100, "RGB"),
    ("examples_jpeg2k.dcm", 640, 480, "RGB"),
    ("examples_palette.dcm", 800, 350, "RGB"),
    ("SC_rgb_rle_16bit.dcm", 100, 100, "RGB"),
    ("image_dfl.dcm", 512, 512, "L"),
    ("liver_1frame.dcm", 512, 512, "L"),
    ("rtdose.dcm", 10, 10, "L"),
]


@pytest.mark.parametrize(("name", "width", "height", "mode"), GOOD_DICOM, ids=str)
def test_known_good_dicom_renders(name: str, width: int, height: int, mode: str) -> None:
    data = (TEST_FILES / name).read_bytes()
    shown = decoded(render(data, ".dcm"))
    assert (shown.size, shown.mode) == ((width, height), mode)
    values = np.asarray(shown)
    assert int(values.max()) - int(values.min()) > 100  # real contrast, not a blank frame
    assert probe(io.BytesIO(data), ".dcm", 10**8) == Probe(
        "dicom", width, height, 1 if name != "rtdose.dcm" else 15
    )


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_rle.dcm",
    ],
)
def test_colour_bars_come_out_as_rgb(name: str) -> None:
    # These files are the same colour bars: a red band at the top, then a light red one, green, ...
    assert read_test_file(name).PhotometricInterpretation.startswith(("YBR", "RGB"))
    out = pixels(render((TEST_FILES / name).read_bytes(), ".dcm"))
    assert np.abs(out[5, 50] - [255, 0, 0]).max() <= 8
    assert np.abs(out[25, 50] - [0, 255, 0]).max() <= 8
    assert np.abs(out[55, 50] - [128, 128, 255]).max() <= 8


def test_ybr_left_by_the_decoder_is_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Decoder.as_array

    def leave_ybr(self: Decoder, src: Any, **kwargs: Any) -> Any:
        arr, changes = original(self, src, **{**kwargs, "as_rgb": False})
        assert str(changes.get("photometric_interpretation", "YBR")).startswith("YBR")  # really left as YBR
        return arr, changes

    monkeypatch.setattr(Decoder, "as_array", leave_ybr)
    out = pixels(render((TEST_FILES / "SC_ybr_full_422_uncompressed.dcm").read_bytes(), ".dcm"))
    assert np.abs(out[5, 50] - [255, 0, 0]).max() <= 8
    assert np.abs(out[25, 50] - [0, 255, 0]).max() <= 8


def test_broken_exif_does_not_block_the_image() -> None:
    source = encode(gradient("RGB"), "JPEG")
    # An APP1 "Exif" segment whose first IFD lies past its end, inserted right after SOI.
    payload = b"Exif\x00\x00" + b"II*\x00\xff\xff\x00\x00"
    data = source[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + source[2:]
    assert probe(io.BytesIO(data), ".jpg", 10_000) == Probe("image", 40, 30, 1)
    assert render(data, ".jpg").body == data
    assert decoded(render(data, ".jpg", size="thumb")).size == (40, 30)


def test_multi_frame_selects_the_frame() -> None:
    data = (TEST_FILES / "SC_rgb_rle_2frame.dcm").read_bytes()
    assert probe(io.BytesIO(data), ".dcm", 10**8) == Probe("dicom", 100, 100, 2)
    first, second = pixels(render(data, ".dcm")), pixels(render(data, ".dcm", frame=1))
    assert np.abs(first[5, 50] - [255, 0, 0]).max() <= 2
    assert np.abs(second[5, 50] - [0, 255, 255]).max() <= 2  # the second frame is the inverse
    assert (pixels(render(data, ".dcm", frame=0)) == first).all()
    expect(Unprocessable, "invalid_frame", lambda: render(data, ".dcm", frame=2))
    expect(Unprocessable, "invalid_frame", lambda: render(data, ".dcm", frame=-1))


def test_window_override_follows_the_linear_formula() -> None:
    data = (TEST_FILES / "CT_small.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    center, width = 40.0, 400.0
    expected = np.clip(((hu - (center - 0.5)) / (width - 1) + 0.5) * 255, 0, 255)
    windowed = pixels(render(data, ".dcm", wc=center, ww=width))
    default = pixels(render(data, ".dcm"))
    assert np.abs(windowed - expected).max() <= 1
    assert (windowed != default).mean() > 0.5
    narrow = pixels(render(data, ".dcm", wc=center, ww=1))
    assert set(np.unique(narrow)) <= {0, 255}


@pytest.mark.parametrize(("wc", "ww"), [(40.0, None), (None, 400.0), (40.0, 0.5), (float("nan"), 10.0)])
def test_incomplete_or_invalid_window_is_refused(wc: float | None, ww: float | None) -> None:
    data = (TEST_FILES / "CT_small.dcm").read_bytes()
    expect(Unprocessable, "invalid_window", lambda: render(data, ".dcm", wc=wc, ww=ww))


def test_file_window_is_used_by_default() -> None:
    # MR_small carries WindowCenter 600 / WindowWidth 1600; min/max stretching would differ.
    data = (TEST_FILES / "MR_small.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (600.0, 1600.0)
    default = pixels(render(data, ".dcm"))
    by_hand = pixels(render(data, ".dcm", wc=600, ww=1600))
    assert np.abs(default - by_hand).max() <= 1
    del ds.WindowCenter, ds.WindowWidth
    stretched = pixels(render(dicom_bytes(ds), ".dcm"))
    assert stretched.min() == 0 and stretched.max() == 255
    assert (stretched != default).mean() > 0.5


def test_enhanced_functional_group_values_are_used() -> None:
    ds = read_test_file("CT_small.dcm")
    flat = pixels(render(dicom_bytes(ds), ".dcm", wc=40, ww=400))
    ds.WindowCenter, ds.WindowWidth = 40, 400
    top_level = pixels(render(dicom_bytes(ds), ".dcm"))
    assert (top_level == flat).all()

    slope, intercept = ds.RescaleSlope, ds.RescaleIntercept
    del ds.WindowCenter, ds.WindowWidth, ds.RescaleSlope, ds.RescaleIntercept
    transform, voi, group = Dataset(), Dataset(), Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = slope, intercept, "HU"
    voi.WindowCenter, voi.WindowWidth = 40, 400
    group.PixelValueTransformationSequence = Sequence([transform])
    group.FrameVOILUTSequence = Sequence([voi])
    ds.SharedFunctionalGroupsSequence = Sequence([group])
    assert (pixels(render(dicom_bytes(ds), ".dcm")) == flat).all()


def monochrome1_file() -> Path:
    for path in sorted(p for p in TEST_FILES.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not every shipped file is DICOM
            continue
        if ds.get("PhotometricInterpretation") == "MONOCHROME1" and ds.get("SamplesPerPixel", 1) == 1:
            return path
    # pydicom is locked, so a lock refresh that drops the file fails here instead of skipping.
    pytest.fail("no MONOCHROME1 file ships with this pydicom")


def test_monochrome1_is_inverted_after_windowing() -> None:
    path = monochrome1_file()
    ds = pydicom.dcmread(path)
    as_mono1 = pixels(render(path.read_bytes(), ".dcm"))
    ds.PhotometricInterpretation = "MONOCHROME2"
    as_mono2 = pixels(render(dicom_bytes(ds), ".dcm"))
    assert (as_mono1 == 255 - as_mono2).all()
    assert as_mono2.min() != as_mono2.max()  # the comparison is not between two blank frames
    windowed1 = pixels(render(path.read_bytes(), ".dcm", wc=1000, ww=500))
    windowed2 = pixels(render(dicom_bytes(ds), ".dcm", wc=1000, ww=500))
    assert (windowed1 == 255 - windowed2).all()


def test_dicom_over_max_pixels_is_refused_before_decoding(no_dicom_decode: list[int]) -> None:
    data = (TEST_FILES / "CT_small.dcm").read_bytes()  # 128 x 128 = 16384
    expect(Unprocessable, "image_too_large", lambda: render(data, ".dcm", max_pixels=16383))
    expect(Unprocessable, "image_too_large", lambda: probe(io.BytesIO(data), ".dcm", 16383))
    assert no_dicom_decode == []
    multi = (TEST_FILES / "SC_rgb_rle_2frame.dcm").read_bytes()  # 100 x 100 x 2 frames x 3 samples
    expect(Unprocessable, "image_too_large", lambda: render(multi, ".dcm", max_pixels=59_999))
    assert no_dicom_decode == []


def test_dicom_probe_does_not_decode(no_dicom_decode: list[int]) -> None:
    data = (TEST_FILES / "examples_ybr_color.dcm").read_bytes()
    assert probe(io.BytesIO(data), ".dicom", 10**8) == Probe("dicom", 320, 240, 30)
    assert no_dicom_decode == []


def test_undecodable_transfer_syntax_is_415_naming_it() -> None:
    ds = read_test_file("CT_small.dcm")
    ds.file_meta.TransferSyntaxUID = UID(MPEG2_MAIN)
    ds.PixelData = encapsulate([ds.PixelData])  # pydicom refuses to write native data under MPEG2
    data = dicom_bytes(ds)
    error = expect(UnsupportedMediaType, "unsupported_transfer_syntax", lambda: render(data, ".dcm"))
    assert error.status == 415
    assert MPEG2_MAIN in error.message and "MPEG2" in error.message
    assert probe(io.BytesIO(data), ".dcm", 10**8) == Probe("dicom", 128, 128, 1)  # header is fine


def test_unknown_transfer_syntax_is_415() -> None:
    ds = read_test_file("CT_small.dcm")
    ds.file_meta.TransferSyntaxUID = UID("1.2.3.4.5.6")
    error = expect(
        UnsupportedMediaType, "unsupported_transfer_syntax", lambda: render(dicom_bytes(ds), ".dcm")
    )
    assert "1.2.3.4.5.6" in error.message


def test_dicom_without_pixel_data_is_corrupt_media() -> None:
    ds = read_test_file("CT_small.dcm")
    del ds.PixelData
    expect(Unprocessable, "corrupt_media", lambda: render(dicom_bytes(ds), ".dcm"))
    expect(Unprocessable, "corrupt_media", lambda: render((TEST_FILES / "rtplan.dcm").read_bytes(), ".dcm"))


def test_truncated_dicom_is_corrupt_media() -> None:
    data = (TEST_FILES / "CT_small.dcm").read_bytes()
    expect(Unprocessable, "corrupt_media", lambda: render(data[: len(data) - 4000], ".dcm"))


def test_dicom_without_preamble_renders_the_same() -> None:
    data = (TEST_FILES / "CT_small.dcm").read_bytes()
    reference = pixels(render(data, ".dcm"))
    assert sniff(data[132:]) is None
    assert (pixels(render(data[132:], ".dcm")) == reference).all()  # file meta, no preamble

    ds = pydicom.dcmread(io.BytesIO(data))
    bare = FileDataset("", Dataset(ds), preamble=None, file_meta=FileMetaDataset())
    raw = dicom_bytes(bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert raw[:2] == b"\x08\x00"  # no preamble, no file meta: starts at group 0008
    assert (pixels(render(raw, ".dcm")) == reference).all()
    assert probe(io.BytesIO(raw), ".dcm", 10**8) == Probe("dicom", 128, 128, 1)


def test_deflated_dicom_renders_and_a_deflate_bomb_is_refused() -> None:
    ds = read_test_file("CT_small.dcm")
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    plain = pixels(render((TEST_FILES / "CT_small.dcm").read_bytes(), ".dcm"))
    deflated = dicom_bytes(ds)
    assert (pixels(render(deflated, ".dcm")) == plain).all()

    assert deflated[132:140] == b"\x02\x00\x00\x00UL\x04\x00"
    no_group_length = deflated[:132] + deflated[144:]  # where the inflated dataset starts is unknown
    expect(UnsupportedMediaType, "unsupported_format", lambda: render(no_group_length, ".dcm"))

    ds.add_new(0x00091010, "OB", b"\x00" * (24 << 20))  # private padding: inflates to 24 MiB
    bomb = dicom_bytes(ds)
    assert len(bomb) < 1 << 20
    expect(Unprocessable, "image_too_large", lambda: render(bomb, ".dcm", max_pixels=1_000_000))
    expect(Unprocessable, "image_too_large", lambda: probe(io.BytesIO(bomb), ".dcm", 1_000_000))
    assert decoded(render(bomb, ".dcm", max_pixels=10_000_000)).size == (128, 128)


def test_dicom_thumbnail_is_jpeg_and_not_upscaled() -> None:
    data = (TEST_FILES / "MR_small.dcm").read_bytes()
    assert decoded(render(data, ".dcm", size="thumb")).size == (64, 64)
    big = (TEST_FILES / "JPEG2000.dcm").read_bytes()
    thumb = decoded(render(big, ".dcm", size="thumb", thumb_px=100))
    assert thumb.format == "JPEG" and thumb.size == (25, 100)


def test_no_raw_library_exception_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise struct.error("boom")

    monkeypatch.setattr(Decoder, "as_array", explode)
    error = expect(
        Unprocessable, "corrupt_media", lambda: render((TEST_FILES / "MR_small.dcm").read_bytes(), ".dcm")
    )
    assert isinstance(error.__cause__, struct.error)
    monkeypatch.setattr(Image, "open", explode)
    expect(Unprocessable, "corrupt_media", lambda: render(encode(gradient("RGB"), "BMP"), ".bmp"))
