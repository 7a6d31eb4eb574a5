"""Encoded image files (JPEG, PNG, BMP, TIFF) to the square tensors the networks read.

Images are resized to S x S *without* keeping the aspect ratio (no letterbox). A plain resize
scales x and y independently, so a box normalized to [0, 1] of the resized tensor is the very
same box normalized to [0, 1] of the original image: nothing needs undoing after prediction,
and no input pixels are spent on padding. The networks see stretched objects, but always
stretched the same way in training and prediction, which convolutional features tolerate well.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

__all__ = ["MAX_PIXELS", "ImageError", "augment", "decode", "load", "normalize", "pixels", "stack"]

# Larger images are refused before decoding: a few-kB file can claim gigapixels.
MAX_PIXELS = 100_000_000
# torchvision's ImageNet statistics, because transferred resnet18 weights expect them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
_FORMATS = ["JPEG", "PNG", "BMP", "TIFF"]
_SWAPS_AXES = frozenset({5, 6, 7, 8})
# Transparent areas become the mean colour, which reads as "no signal" after normalization.
_BACKGROUND = tuple(round(m * 255) for m in MEAN)


class ImageError(ValueError):
    """The bytes are not a decodable JPEG, PNG, BMP or TIFF image of an acceptable size."""


def decode(data: bytes, size: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """An RGB image as a browser shows it (EXIF orientation applied) and its display (width, height).

    With `size`, a JPEG is decoded at the smallest DCT scale still at least `size` on both sides,
    which is several times faster for photos that end up as small network inputs.
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; a warning must not decode a bomb.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(io.BytesIO(data), formats=_FORMATS)
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"the image has {width}x{height} pixels, more than {MAX_PIXELS}")
            orientation = _orientation(im)
            if orientation in _SWAPS_AXES:
                width, height = height, width
            if size is not None and im.format == "JPEG":
                im.draft("RGB", (size, size))
            im.load()
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            return _rgb(im), (width, height)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"cannot decode the image ({type(exc).__name__}: {exc})") from exc


def pixels(data: bytes, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The image resized to a uint8 tensor (3, size, size), and its display (width, height)."""
    im, original = decode(data, size)
    resized = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    array = np.asarray(resized, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), original


def stack(images: Sequence[bytes], size: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Several images as one uint8 batch (n, 3, size, size) and their display sizes.

    A batch stays uint8 until it reaches its device: a quarter of the bytes to move.
    """
    batch = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    sizes: list[tuple[int, int]] = []
    for index, data in enumerate(images):
        try:
            batch[index], original = pixels(data, size)
        except ImageError as exc:
            raise ImageError(f"image {index}: {exc}") from exc
        sizes.append(original)
    return batch, sizes


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """A uint8 batch (n, 3, S, S) as float32 standardized with the ImageNet statistics."""
    mean = torch.tensor(MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std


def load(data: bytes, size: int) -> torch.Tensor:
    """One image as a normalized float tensor (3, size, size)."""
    return normalize(pixels(data, size)[0].unsqueeze(0))[0]


def augment(batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time variation of a normalized batch: the batch and which images were mirrored.

    `generator` is a CPU generator, so a seed gives the same variation on any device.

    Only horizontal flips: photographs are rarely upside down, so vertical flips would teach
    the model views it never meets. Brightness, contrast and saturation vary by up to 25%.
    The caller mirrors the boxes of the flipped images (x -> 1 - x - w).
    """
    n = batch.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        values = torch.rand((n, 1, 1, 1), generator=generator)
        return (low + (high - low) * values).to(batch.device)

    mean = torch.tensor(MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=batch.device).view(1, 3, 1, 1)
    rgb = batch * std + mean
    rgb = rgb * uniform(0.75, 1.25)
    grey = rgb.mean(dim=(1, 2, 3), keepdim=True)
    rgb = (rgb - grey) * uniform(0.75, 1.25) + grey
    luma = (0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]).expand_as(rgb)
    rgb = (rgb - luma) * uniform(0.75, 1.25) + luma
    out = (rgb.clamp(0.0, 1.0) - mean) / std
    flipped = (torch.rand(n, generator=generator) < 0.5).to(batch.device)
    out = torch.where(flipped.view(n, 1, 1, 1), out.flip(3), out)
    return out, flipped


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag, 1 when absent or unreadable (broken EXIF must not lose the image)."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:
        log.info("ignoring unreadable EXIF", exc_info=True)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _rgb(im: Image.Image) -> Image.Image:
    """An RGB image; high bit depths are stretched from their own min/max rather than clipped."""
    if im.mode in ("I", "F") or im.mode.startswith("I;"):
        values = np.asarray(im, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        im = Image.fromarray(scaled.round().astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")
