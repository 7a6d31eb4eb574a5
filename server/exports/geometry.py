"""Pure conversions between the document's normalized shapes and pixel geometry, and between
mask tiles and whole-image masks (COCO RLE through pycocotools)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pycocotools import mask as coco_mask

from collab.schema import rle_decode, rle_encode

DIGITS = 3  # pixel coordinates are written to a thousandth of a pixel


def box_pixels(shape: Mapping[str, Any], width: int, height: int) -> list[float]:
    """COCO [x, y, w, h] in pixels from a normalized box."""
    return [round(shape["x"] * width, DIGITS), round(shape["y"] * height, DIGITS),
            round(shape["w"] * width, DIGITS), round(shape["h"] * height, DIGITS)]


def rounded(values: npt.NDArray[np.float64], digits: int) -> npt.NDArray[np.float64]:
    """Python's round(v, digits) of every value, bit for bit, without a call per value.

    Python rounds the exact binary value half to even and returns the double nearest that
    decimal; k / 10**digits is that double whenever k = rint(v * 10**digits) is the right
    integer, which it is unless the product lies within its rounding error of a half (or is
    not finite, or too large to hold an exact integer): those few go through round() itself."""
    scale = 10.0 ** digits
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = values * scale
        out: npt.NDArray[np.float64] = np.rint(scaled) / scale
        near_half = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) <= 4 * np.spacing(np.abs(scaled))
        unsafe = near_half | ~(np.abs(scaled) < 2.0 ** 50)
    for i in np.flatnonzero(unsafe).tolist():
        out[i] = round(float(values[i]), digits)
    return out


def boxes_pixels(boxes: npt.NDArray[np.float64],
                 sizes: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """box_pixels and the COCO area (w * h, rounded alike) of many boxes at once: `boxes` is
    (n, 4) normalized x, y, w, h; `sizes` (n, 2) the images' width and height."""
    scale = np.concatenate([sizes, sizes], axis=1)
    pixels = rounded(boxes * scale, DIGITS)
    return pixels, rounded(pixels[:, 2] * pixels[:, 3], DIGITS)


def polygon_pixels(points: Sequence[float], width: int, height: int) -> list[float]:
    """A flat [x0, y0, x1, y1, ...] list in pixels from normalized points."""
    return [round(v * (width if i % 2 == 0 else height), DIGITS) for i, v in enumerate(points)]


def polygon_area(flat: Sequence[float]) -> float:
    """Shoelace area of a flat point list (any unit)."""
    xs, ys = np.asarray(flat[0::2], dtype=np.float64), np.asarray(flat[1::2], dtype=np.float64)
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2.0)


def polygon_bbox(flat: Sequence[float]) -> list[float]:
    xs, ys = flat[0::2], flat[1::2]
    x0, y0 = min(xs), min(ys)
    return [round(x0, DIGITS), round(y0, DIGITS), round(max(xs) - x0, DIGITS), round(max(ys) - y0, DIGITS)]


def mask_from_tiles(mask: Mapping[str, Any], width: int, height: int) -> npt.NDArray[np.uint32]:
    """The whole-image label-id mask (0 = unlabeled) from the document's tiles; tiles past
    the image's edge are cropped, tiles wholly outside it ignored."""
    size = int(mask["tile_size"])
    out = np.zeros((height, width), dtype=np.uint32)
    for key, text in mask.get("tiles", {}).items():
        tx, ty = (int(v) for v in key.split(","))
        x0, y0 = tx * size, ty * size
        if x0 >= width or y0 >= height:
            continue
        tile = rle_decode(base64.b64decode(text), size * size).reshape(size, size)
        h, w = min(size, height - y0), min(size, width - x0)
        out[y0:y0 + h, x0:x0 + w] = tile[:h, :w]
    return out


def tiles_from_mask(values: npt.NDArray[Any], tile_size: int) -> dict[str, str]:
    """The document's tiles (base64 RLE) of a whole-image mask; all-zero tiles are left out."""
    height, width = values.shape
    tiles: dict[str, str] = {}
    for ty in range(0, (height + tile_size - 1) // tile_size):
        for tx in range(0, (width + tile_size - 1) // tile_size):
            part = values[ty * tile_size:(ty + 1) * tile_size, tx * tile_size:(tx + 1) * tile_size]
            if not part.any():
                continue
            tile = np.zeros((tile_size, tile_size), dtype=np.uint32)
            tile[:part.shape[0], :part.shape[1]] = part
            tiles[f"{tx},{ty}"] = base64.b64encode(rle_encode(tile)).decode()
    return tiles


def coco_rle(binary: npt.NDArray[Any]) -> dict[str, Any]:
    """Compressed COCO RLE of a binary mask, JSON-ready."""
    rle = coco_mask.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_area_bbox(rle: Mapping[str, Any]) -> tuple[float, list[float]]:
    encoded = {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}
    area = float(coco_mask.area(encoded))
    bbox = [float(v) for v in coco_mask.toBbox(encoded)]
    return area, bbox


def decode_segmentation(segmentation: Any, width: int, height: int) -> npt.NDArray[np.uint8]:
    """A COCO segmentation (polygons, RLE or uncompressed RLE) as a binary mask."""
    if isinstance(segmentation, list):
        rles = coco_mask.frPyObjects(segmentation, height, width)
        return np.asarray(coco_mask.decode(coco_mask.merge(rles)), dtype=np.uint8)
    if isinstance(segmentation.get("counts"), list):
        rle = coco_mask.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        if isinstance(counts, str):
            counts = counts.encode("ascii")
        rle = {"size": segmentation["size"], "counts": counts}
    return np.asarray(coco_mask.decode(rle), dtype=np.uint8)
