from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collab.schema import rle_decode, rle_encode, validate_annotation
from server.work.consensus import (
    ConsensusParams,
    Outcome,
    bbox,
    decide,
    multiclass,
    multilabel,
    polygon,
    semantic,
)

P = ConsensusParams()
TS = 16


def cls(*ids: int) -> dict[str, Any]:
    return {"classes": list(ids)}


def box(label: int, x: float, y: float, w: float = 0.2, h: float = 0.2, sid: str = "b") -> dict[str, Any]:
    return {"id": sid, "kind": "box", "label": label, "x": x, "y": y, "w": w, "h": h, "source": "human",
            "confidence": None}


def boxes(*shapes: dict[str, Any]) -> dict[str, Any]:
    return {"shapes": [{**s, "id": f"s{i}"} for i, s in enumerate(shapes)]}


def enc(pixels: npt.NDArray[Any]) -> str:
    return base64.b64encode(rle_encode(pixels.astype(np.uint32))).decode("ascii")


def mask(tiles: dict[str, npt.NDArray[Any]], size: int = TS) -> dict[str, Any]:
    return {"mask": {"tile_size": size, "tiles": {k: enc(v) for k, v in tiles.items()}}}


def pixels(outcome: Outcome, key: str = "0,0") -> npt.NDArray[np.uint32]:
    assert outcome.final is not None
    m = outcome.final["mask"]
    return rle_decode(base64.b64decode(m["tiles"][key]), m["tile_size"] ** 2).reshape(m["tile_size"], -1)


Decider = Callable[[list[dict[str, Any]], ConsensusParams], Outcome]


def assert_order_free(fn: Decider, annotations: list[dict[str, Any]], params: ConsensusParams = P) -> Outcome:
    first = fn(annotations, params)
    for perm in itertools.permutations(annotations):
        assert fn(list(perm), params) == first
    return first


# --- params ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"threshold": 0.49}, {"threshold": 1.0}, {"iou": 0.0}, {"iou": 1.1},
                                    {"max_undecided": -0.1}, {"merge": "median"}])
def test_params_out_of_range_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ConsensusParams(**kwargs)


@pytest.mark.parametrize("task_type", ["multiclass", "multilabel", "bbox", "polygon", "semantic"])
def test_empty_list_rejected(task_type: str) -> None:
    with pytest.raises(ValueError, match="at least one"):
        decide(task_type, [], P)


# --- multiclass -----------------------------------------------------------------------------------

def test_multiclass_two_of_three() -> None:
    out = assert_order_free(multiclass, [cls(12), cls(7), cls(12)])
    assert out == Outcome(True, {"classes": [12]}, 2 / 3, "2 of 3 agree on label 12")


def test_multiclass_one_one_tie() -> None:
    out = multiclass([cls(12), cls(7)], P)
    assert not out.agreed and out.final is None
    assert out.agreement == 0.5
    assert out.detail == "tie between label 7, label 12 (1 of 2 each)"


def test_multiclass_two_of_four_is_a_tie() -> None:
    out = assert_order_free(multiclass, [cls(3), cls(3), cls(4), cls(5)])
    assert not out.agreed and out.final is None and out.agreement == 0.5
    assert "no majority" in out.detail


def test_multiclass_threshold_needs_more_than_share() -> None:
    three_of_five = [cls(1), cls(1), cls(1), cls(2), cls(3)]
    assert multiclass(three_of_five, P).agreed
    assert not multiclass(three_of_five, ConsensusParams(threshold=0.6)).agreed
    four_of_five = [cls(1), cls(1), cls(1), cls(1), cls(3)]
    assert multiclass(four_of_five, ConsensusParams(threshold=0.6)).final == {"classes": [1]}


def test_multiclass_no_class_is_a_vote() -> None:
    out = multiclass([cls(), cls(), cls(4)], P)
    assert out == Outcome(True, {"classes": []}, 2 / 3, "2 of 3 agree on no class")
    assert not multiclass([cls(), cls(4)], P).agreed


def test_multiclass_single_labeler_and_bad_input() -> None:
    assert multiclass([cls(9)], P) == Outcome(True, {"classes": [9]}, 1.0, "1 of 1 agree on label 9")
    with pytest.raises(ValueError, match="at most one"):
        multiclass([cls(1, 2), cls(1)], P)
    with pytest.raises(ValueError):
        multiclass([{"classes": ["x"]}], P)


# --- multilabel -----------------------------------------------------------------------------------

def test_multilabel_majority_per_label() -> None:
    out = assert_order_free(multilabel, [cls(5, 1, 2), cls(1, 5), cls(1, 3)])
    assert out.agreed
    assert out.final == {"classes": [1, 5]}
    # labels 1 (3/3), 2 (2/3 absent), 3 (2/3 absent), 5 (2/3 present)
    assert out.agreement == pytest.approx((1 + 2 / 3 * 3) / 4)


def test_multilabel_tie_on_one_label_blocks() -> None:
    out = assert_order_free(multilabel, [cls(1, 2), cls(1)])
    assert not out.agreed and out.final is None
    assert out.detail == "tie on label 2"
    assert out.agreement == pytest.approx(0.75)


def test_multilabel_threshold_and_empty() -> None:
    three_of_five = [cls(1), cls(1), cls(1), cls(), cls()]
    assert multilabel(three_of_five, P).final == {"classes": [1]}
    assert not multilabel(three_of_five, ConsensusParams(threshold=0.6)).agreed
    assert multilabel([cls(), cls()], P) == Outcome(True, {"classes": []}, 1.0,
                                                    "0 label(s) decided by 2 labeler(s), 0 present")


# --- bbox -----------------------------------------------------------------------------------------

def test_bbox_extra_minority_box_dropped() -> None:
    a = boxes(box(1, 0.1, 0.1), box(2, 0.6, 0.6))
    b = boxes(box(2, 0.61, 0.6), box(1, 0.1, 0.11))
    c = boxes(box(3, 0.4, 0.0))
    out = assert_order_free(bbox, [a, b, c])
    assert out.agreed and out.final is not None
    shapes = out.final["shapes"]
    assert [(s["id"], s["label"]) for s in shapes] == [("consensus-1", 1), ("consensus-2", 2)]
    assert shapes[0]["x"] == pytest.approx(0.1) and shapes[0]["y"] == pytest.approx(0.105)
    assert shapes[1]["x"] == pytest.approx(0.605) and shapes[1]["y"] == pytest.approx(0.6)
    assert all(s["source"] == "human" and s["confidence"] == pytest.approx(2 / 3) for s in shapes)
    assert out.agreement == pytest.approx(2 / 3)
    for shape in shapes:
        validate_annotation({"shapes": [shape]}, "bbox", strict_submit=True)


def test_bbox_clusters_by_place_then_takes_the_majority_label() -> None:
    # Two of three drew label 1 where the third drew label 2: one object, label 1, its box
    # merged from the two label-1 boxes only.
    a, b = boxes(box(1, 0.10, 0.1)), boxes(box(1, 0.12, 0.1))
    out = assert_order_free(bbox, [a, b, boxes(box(2, 0.30, 0.1, 0.3, 0.2))])
    assert out.agreed and out.final is not None
    [shape] = out.final["shapes"]
    assert (shape["label"], shape["confidence"]) == (1, pytest.approx(2 / 3))
    assert (shape["x"], shape["w"]) == (pytest.approx(0.11), pytest.approx(0.2))
    assert out.agreement == pytest.approx(2 / 3)  # "label 1" is the larger side of the one question


def test_bbox_three_labels_on_one_place_is_no_consensus_never_an_empty_final() -> None:
    """The regression: boxes were clustered by label first, so three disagreeing labels made
    three minority clusters, all silently dropped: "agreed" with an empty final."""
    anns = [boxes(box(1, 0.1, 0.1)), boxes(box(2, 0.1, 0.1)), boxes(box(3, 0.11, 0.1))]
    out = assert_order_free(bbox, anns)
    assert not out.agreed and out.final is None
    assert "no label has a majority" in out.detail
    assert out.agreement == pytest.approx(1 / 3)


@pytest.mark.parametrize("others", [[], [{"shapes": []}]])
def test_bbox_two_labels_on_one_place_is_no_consensus(others: list[dict[str, Any]]) -> None:
    # Two labelers, same place, different labels (with or without a third who drew nothing):
    # they agree something is there, not on what.
    out = assert_order_free(bbox, [boxes(box(1, 0.1, 0.1)), boxes(box(2, 0.1, 0.1)), *others])
    assert not out.agreed and "no label has a majority" in out.detail


def test_bbox_label_majority_is_within_the_cluster() -> None:
    # Four labelers: three drew here (1, 1, 2), one drew nothing. Label 1 holds 2 of the 3 boxes.
    anns = [boxes(box(1, 0.1, 0.1)), boxes(box(1, 0.1, 0.1)), boxes(box(2, 0.1, 0.1)), {"shapes": []}]
    out = assert_order_free(bbox, anns)
    assert out.final is not None
    assert [(s["label"], s["confidence"]) for s in out.final["shapes"]] == [(1, 0.5)]
    assert out.agreement == pytest.approx(0.5)


@pytest.mark.parametrize(("dx", "agreed"), [(0.16, True), (0.17, False)])
def test_bbox_iou_threshold_edge(dx: float, agreed: bool) -> None:
    # IoU of two 0.5 x 0.5 boxes shifted by dx is (0.5 - dx) / (0.5 + dx): 0.515 vs 0.493.
    anns = [boxes(box(1, 0.0, 0.0, 0.5, 0.5)), boxes(box(1, dx, 0.0, 0.5, 0.5))]
    assert bbox(anns, P).agreed is agreed
    assert bbox(anns, ConsensusParams(iou=0.4)).agreed


def test_bbox_one_vs_one_disagreement_is_a_tie() -> None:
    out = assert_order_free(bbox, [boxes(box(1, 0.1, 0.1), box(1, 0.5, 0.5)), boxes(box(1, 0.1, 0.1))])
    assert not out.agreed and out.final is None
    assert "tie" in out.detail
    assert out.agreement == pytest.approx(0.75)


def test_bbox_one_box_per_labeler_per_cluster() -> None:
    a = boxes(box(1, 0.1, 0.1), box(1, 0.11, 0.1))
    out = assert_order_free(bbox, [a, boxes(box(1, 0.1, 0.1)), boxes(box(1, 0.1, 0.1))])
    assert out.final is not None
    assert [s["confidence"] for s in out.final["shapes"]] == [1.0]
    assert out.final["shapes"][0]["x"] == pytest.approx(0.1)


@pytest.mark.parametrize(("merge", "x"), [("mean", 0.14), ("medoid", 0.12)])
def test_bbox_merge_mean_vs_medoid(merge: Any, x: float) -> None:
    anns = [boxes(box(4, x0, 0.3, 0.4, 0.3)) for x0 in (0.10, 0.12, 0.20)]
    out = assert_order_free(bbox, anns, ConsensusParams(merge=merge))
    approx = {k: pytest.approx(v) for k, v in {"x": x, "y": 0.3, "w": 0.4, "h": 0.3}.items()}
    assert out.final == {"shapes": [{"id": "consensus-1", "kind": "box", "label": 4, **approx,
                                     "source": "human", "confidence": 1.0}]}


def test_bbox_complete_linkage_stops_chains() -> None:
    # IoU(0.0, 0.1) = IoU(0.1, 0.2) = 0.6 but IoU(0.0, 0.2) = 0.33: the three must not form one cluster.
    anns = [boxes(box(1, x0, 0.0, 0.4, 0.4)) for x0 in (0.0, 0.1, 0.2)]
    out = assert_order_free(bbox, anns)
    assert out.final is not None
    assert [s["confidence"] for s in out.final["shapes"]] == [pytest.approx(2 / 3)]


def test_bbox_best_overlap_pairs_first() -> None:
    # The 0.1 box pairs with the other labeler's closest box (0.09, IoU 0.95), not the first one (0.0).
    anns = [boxes(box(1, 0.1, 0.0, 0.4, 0.4)), boxes(box(1, 0.0, 0.0, 0.4, 0.4), box(1, 0.09, 0.0, 0.4, 0.4)),
            {"shapes": []}]
    out = assert_order_free(bbox, anns)
    assert out.final is not None
    assert [s["x"] for s in out.final["shapes"]] == [pytest.approx(0.095)]


def test_bbox_single_labeler_and_nobody_drew() -> None:
    out = bbox([boxes(box(2, 0.5, 0.5), box(1, 0.1, 0.1))], P)
    assert out.final is not None
    assert [(s["id"], s["label"], s["x"]) for s in out.final["shapes"]] == [("consensus-1", 1, 0.1),
                                                                           ("consensus-2", 2, 0.5)]
    assert bbox([{"shapes": []}, {}], P) == Outcome(True, {"shapes": []}, 1.0,
                                                   "0 box(es) agreed by 2 labeler(s), 0 minority dropped")


_grid = st.sampled_from([0.0, 0.05, 0.1, 0.4])
_box = st.builds(lambda lab, x, y, s: box(lab, x, y, s, s), st.integers(1, 2), _grid, _grid,
                 st.sampled_from([0.2, 0.25, 0.5]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_box, max_size=4), min_size=1, max_size=4),
       st.sampled_from(["mean", "medoid"]))
def test_bbox_order_free_property(labelers: list[list[dict[str, Any]]], merge: Any) -> None:
    anns = [boxes(*shapes) for shapes in labelers]
    out = assert_order_free(bbox, anns, ConsensusParams(merge=merge))
    if out.final is not None:
        assert all(0 < s["confidence"] <= 1 for s in out.final["shapes"])
    assert 0 < out.agreement <= 1


def _iou(a: dict[str, Any], b: dict[str, Any]) -> float:
    iw = max(0.0, min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"]))
    ih = max(0.0, min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"]))
    inter = iw * ih
    return inter / (a["w"] * a["h"] + b["w"] * b["h"] - inter)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 5), data=st.data())
def test_bbox_a_place_a_majority_marked_is_in_the_final_or_nothing_is_agreed(n: int, data: Any) -> None:
    """If a majority drew a box on one place (whatever labels they gave it), the final has a
    box there, or the item is not agreed: never an agreed final without it."""
    place = {"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.3}
    marked = data.draw(st.integers(n // 2 + 1, n), label="labelers who marked the place")
    jitter = st.sampled_from([0.0, 0.01, 0.02])
    anns = []
    for k in range(n):
        shapes = []
        if k < marked:  # near the place: IoU with it >= 0.8
            shapes.append(box(data.draw(st.integers(1, 3)), place["x"] + data.draw(jitter),
                              place["y"] + data.draw(jitter), 0.3, 0.3))
        # Other boxes only in the right half, away from the place.
        for _ in range(data.draw(st.integers(0, 2))):
            shapes.append(box(data.draw(st.integers(1, 3)), data.draw(st.sampled_from([0.55, 0.6, 0.7])),
                              data.draw(st.sampled_from([0.1, 0.5])), 0.2, 0.2))
        anns.append(boxes(*shapes))
    out = bbox(anns, P)
    if out.agreed:
        assert out.final is not None
        assert any(_iou(s, place) >= 0.5 for s in out.final["shapes"]), (anns, out)


# --- polygon --------------------------------------------------------------------------------------

def test_polygon_single_vs_several() -> None:
    shape = {"id": "p1", "kind": "polygon", "label": 3, "points": [0.1, 0.1, 0.5, 0.1, 0.3, 0.4],
             "source": "human", "confidence": None}
    assert polygon([{"shapes": [shape]}], P) == Outcome(True, {"shapes": [shape]}, 1.0,
                                                        "single labeler decides")
    with pytest.raises(ValueError, match="not available"):
        polygon([{"shapes": [shape]}, {"shapes": [shape]}], P)


# --- semantic -------------------------------------------------------------------------------------

def test_semantic_three_labelers_two_agree_per_pixel() -> None:
    truth = np.ones((TS, TS), dtype=np.uint32)
    truth[:, 8:] = 7
    b, c = truth.copy(), truth.copy()
    b[0:2] = 3  # 32 px where a and c outvote b
    c[10:12] = 0  # 32 px where a and b outvote c
    out = assert_order_free(semantic, [mask({"0,0": truth}), mask({"0,0": b}), mask({"0,0": c})])
    assert out.agreed
    assert np.array_equal(pixels(out), truth)
    assert out.agreement == pytest.approx((192 + 64 * 2 / 3) / 256)
    assert out.detail.startswith("0 of 256 pixels undecided")


@pytest.mark.parametrize(("disputed", "agreed"), [(12, True), (13, False)])
def test_semantic_disputed_region_vs_max_undecided(disputed: int, agreed: bool) -> None:
    a = np.full((TS, TS), 2, dtype=np.uint32)
    b = a.copy()
    b.reshape(-1)[:disputed] = 5  # 12 / 256 = 4.7% <= 5%, 13 / 256 = 5.1% > 5%
    out = semantic([mask({"0,0": a}), mask({"0,0": b})], P)
    assert out.agreed is agreed
    if agreed:
        expected = a.copy()
        expected.reshape(-1)[:disputed] = 0
        assert np.array_equal(pixels(out), expected)
    else:
        assert out.final is None
    assert out.agreement == pytest.approx(1 - disputed / 512)


def test_semantic_missing_tiles_are_unlabeled() -> None:
    full = np.full((TS, TS), 4, dtype=np.uint32)
    anns = [mask({"0,0": full, "1,0": full}), mask({"0,0": full}), mask({"0,0": full, "1,0": full}),
            mask({"0,0": full, "2,0": full})]
    out = assert_order_free(semantic, anns)
    # "1,0": 2 of 4 draw it, a tie on every pixel; "2,0": 3 of 4 say unlabeled; 256 of 768 undecided.
    assert not out.agreed
    out = semantic(anns, ConsensusParams(max_undecided=0.34))
    assert out.agreed and out.final is not None
    assert list(out.final["mask"]["tiles"]) == ["0,0"]
    assert np.array_equal(pixels(out), full)
    assert semantic(anns[1:], P).final == {"mask": {"tile_size": TS, "tiles": {"0,0": enc(full)}}}


def test_semantic_tile_size_mismatch_and_single() -> None:
    a = np.zeros((TS, TS), dtype=np.uint32)
    b = np.zeros((32, 32), dtype=np.uint32)
    with pytest.raises(ValueError, match="tile_size"):
        semantic([mask({"0,0": a}), mask({"0,0": b}, 32)], P)
    one = mask({"0,0": a + 3})
    assert semantic([one], P) == Outcome(True, one, 1.0, "0 of 256 pixels undecided (0.00%, limit 5.00%)")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), min_size=TS * TS, max_size=TS * TS), min_size=1, max_size=4))
def test_semantic_order_free_and_majority_property(flat: list[list[int]]) -> None:
    stack = np.array(flat, dtype=np.uint32)
    anns = [mask({"0,0": row.reshape(TS, TS)}) for row in stack]
    out = assert_order_free(semantic, anns, ConsensusParams(max_undecided=1.0))
    counts = np.stack([(stack == v).sum(axis=0) for v in range(3)])
    winner = np.where(counts.max(axis=0) * 2 > len(flat), counts.argmax(axis=0), 0)
    tiles = out.final["mask"]["tiles"] if out.final else {}
    got = pixels(out).reshape(-1) if tiles else np.zeros(TS * TS, dtype=np.uint32)
    assert np.array_equal(got, winner)


# --- dispatch -------------------------------------------------------------------------------------

def test_decide_dispatches() -> None:
    anns = [cls(1, 2), cls(1), cls(2, 1)]
    assert decide("multilabel", anns, P) == multilabel(anns, P)
    assert decide("multilabel", anns, P).final == {"classes": [1, 2]}
    assert decide("multiclass", [cls(3)], P).final == {"classes": [3]}
    assert decide("bbox", [boxes(box(1, 0.1, 0.1))], P).agreed
    with pytest.raises(ValueError, match="unknown task type"):
        decide("keypoints", anns, P)
