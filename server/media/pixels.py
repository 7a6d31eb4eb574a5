"""Pixel arithmetic that images and DICOM share: the pixel limit, and mapping any range of
values onto 8 bits for display."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from server.errors import Unprocessable


def check_pixels(count: int, max_pixels: int) -> None:
    """Raise 422 image_too_large when `count` pixels exceed `max_pixels`."""
    if count > max_pixels:
        raise Unprocessable(
            f"the image has {count} pixels, more than the {max_pixels} allowed", code="image_too_large"
        )


def to_uint8(values: NDArray[Any], lo: float, hi: float) -> NDArray[np.uint8]:
    """Map `lo`..`hi` linearly onto 0..255, clipping what lies outside (and NaN to 0)."""
    scaled = np.asarray(values, dtype=np.float64)
    scaled = (scaled - lo) * (255.0 / (hi - lo)) if hi != lo else np.zeros_like(scaled)
    return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)


def min_max(values: NDArray[Any]) -> tuple[float, float]:
    """The smallest and largest finite values (0, 0 when there are none)."""
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size == 0:
        return 0.0, 0.0
    return float(finite.min()), float(finite.max())
