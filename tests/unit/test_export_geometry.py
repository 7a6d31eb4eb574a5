"""Pure geometry of exports: pixels from normalized shapes, masks from tiles and back."""

from __future__ import annotations

import numpy as np
import pytest

from server.data.label_import import key_candidates
from server.exports import geometry


def test_boxes_and_polygons_in_pixels() -> None:
    assert geometry.box_pixels({"x": 0.25, "y": 0.5, "w": 0.5, "h": 0.25}, 200, 100) == [50, 50, 100, 25]
    flat = geometry.polygon_pixels([0, 0, 1, 0, 1, 1, 0, 1], 30, 20)
    assert flat == [0, 0, 30, 0, 30, 20, 0, 20]
    assert geometry.polygon_area(flat) == 600
    assert geometry.polygon_bbox([5, 7, 9, 3, 6, 10]) == [5, 3, 4, 7]


def test_masks_survive_tiles_and_coco_rle() -> None:
    rng = np.random.default_rng(3)
    values = np.zeros((70, 45), dtype=np.uint32)
    values[10:50, 5:40] = 7
    values[rng.random(values.shape) < 0.05] = 123456
    tiles = geometry.tiles_from_mask(values, 32)
    assert set(tiles) <= {f"{x},{y}" for x in range(2) for y in range(3)}
    back = geometry.mask_from_tiles({"tile_size": 32, "tiles": tiles}, 45, 70)
    assert (back == values).all()
    rle = geometry.coco_rle(values == 7)
    area, bbox = geometry.rle_area_bbox(rle)
    assert area == (values == 7).sum() and bbox[2] > 0
    assert (geometry.decode_segmentation(rle, 45, 70) == (values == 7)).all()
    poly = geometry.decode_segmentation([[0, 0, 10, 0, 10, 10, 0, 10]], 45, 70)
    assert poly.shape == (70, 45) and 90 <= poly.sum() <= 121


def test_tiles_past_the_edge_are_cropped_or_ignored() -> None:
    values = np.ones((40, 40), dtype=np.uint32)
    tiles = geometry.tiles_from_mask(values, 32)
    tiles["9,9"] = tiles["0,0"]  # wholly outside a 40 x 40 image
    assert geometry.mask_from_tiles({"tile_size": 32, "tiles": tiles}, 40, 40).sum() == 1600


@pytest.mark.parametrize(("reference", "first"), [
    ("dir/a.png", "dir/a.png"),
    ("https://acct.blob.core.windows.net/box/pre%20fix/dir/a.png?sv=1", "box/pre fix/dir/a.png"),
    ("azureml://datastores/ws/paths/dir/a.png", "ws/paths/dir/a.png"),
    ("C:\\data\\dir\\a.png", "C:/data/dir/a.png"),
])
def test_image_references_offer_every_trailing_key(reference: str, first: str) -> None:
    got = key_candidates(reference)
    assert got[0] == first and "dir/a.png" in got and got[-1] == "a.png"
