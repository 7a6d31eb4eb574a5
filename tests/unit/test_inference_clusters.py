"""Similar-items ordering: separable blobs come out page by page."""

from __future__ import annotations

import numpy as np
import pytest

from inference.clusters import similar_order


def _blobs(sizes: list[int], dimensions: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled points around well separated centres, and each point's blob."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dimensions)) * 20
    blob = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(blob)
    return centres[blob] + rng.normal(size=(len(blob), dimensions)), blob


@pytest.mark.parametrize("page", [4, 6, 9])
def test_blobs_of_whole_pages_give_pure_pages(page: int) -> None:
    points, blob = _blobs([page * 3, page * 2, page * 4, page])
    order = similar_order(points, page)
    assert sorted(order) == list(range(len(points)))
    pages = [blob[order[i : i + page]] for i in range(0, len(order), page)]
    assert all(len(set(p.tolist())) == 1 for p in pages)


def test_uneven_blobs_mix_only_where_a_blob_ends() -> None:
    points, blob = _blobs([13, 7, 22, 9])
    order = similar_order(points, 4)
    pages = [set(blob[order[i : i + 4]].tolist()) for i in range(0, len(order), 4)]
    mixed = sum(len(p) > 1 for p in pages)
    # Cuts move to page boundaries, so a blob's last few items share a page with a neighbour's:
    # about one mixed page per border between the four blobs, the rest pure.
    assert mixed <= 3
    assert len(pages) - mixed >= 10


def test_same_seed_same_order_and_edge_cases() -> None:
    points, _ = _blobs([10, 10])
    assert similar_order(points, 4, seed=3) == similar_order(points, 4, seed=3)
    assert similar_order(points[:3], 4) == [0, 1, 2]
    assert similar_order(np.zeros((0, 8)), 4) == []
    assert sorted(similar_order(np.zeros((7, 8)), 2)) == list(range(7))  # identical points still split
    assert sorted(similar_order(points, 1)) == list(range(20))
    with pytest.raises(ValueError):
        similar_order(points, 0)
    with pytest.raises(ValueError):
        similar_order(np.zeros(5), 4)
