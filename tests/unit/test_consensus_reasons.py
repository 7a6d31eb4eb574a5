"""Why annotations do or do not agree (Outcome.reason): the units the consensus rules decided, each
with its verdict, naming labelers by their position in the input."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from server.work.consensus import ConsensusParams, bbox, multiclass, multilabel, polygon, semantic
from tests.unit.test_consensus import TS, box, boxes, cls, mask

P = ConsensusParams()


def test_multiclass_reason_lists_the_votes_and_who_cast_them() -> None:
    out = multiclass([cls(3), cls(5), cls()], P)
    assert not out.agreed
    assert out.reason == {"kind": "votes", "labelers": 3, "needed": 2, "votes": [
        {"label": None, "count": 1, "labelers": [2]},
        {"label": 3, "count": 1, "labelers": [0]},
        {"label": 5, "count": 1, "labelers": [1]}]}
    agreed = multiclass([cls(3), cls(3), cls(5)], P)
    assert agreed.agreed and agreed.reason is not None
    assert agreed.reason["votes"][0] == {"label": 3, "count": 2, "labelers": [0, 1]}


def test_multilabel_reason_gives_each_label_its_verdict() -> None:
    out = multilabel([cls(1, 2), cls(1), cls(1, 2, 4), cls(2)], P)
    assert out.agreed
    assert out.reason is not None and out.reason["needed"] == 3
    assert out.reason["labels"] == [
        {"label": 1, "count": 3, "labelers": [0, 1, 2], "verdict": "present"},
        {"label": 2, "count": 3, "labelers": [0, 2, 3], "verdict": "present"},
        {"label": 4, "count": 1, "labelers": [2], "verdict": "absent"}]
    tied = multilabel([cls(1, 7), cls(1)], P)
    assert tied.reason is not None
    assert [x["verdict"] for x in tied.reason["labels"]] == ["present", "tied"]


def test_bbox_reason_shows_each_place_and_what_became_of_it() -> None:
    # Labeler 0 and 1 drew a box in one place with different labels; labeler 1 drew another alone.
    a = boxes(box(1, 0.1, 0.1))
    b = boxes(box(2, 0.11, 0.1), box(1, 0.6, 0.6))
    out = bbox([a, b], P)
    assert not out.agreed and out.reason is not None
    places = out.reason["places"]
    assert [p["verdict"] for p in places] == ["no_label", "tied"]
    first = places[0]
    assert first["drawn_by"] == 2 and first["votes"] == [{"label": 1, "count": 1}, {"label": 2, "count": 1}]
    assert sorted((x["labeler"], x["label"]) for x in first["boxes"]) == [(0, 1), (1, 2)]
    # The place is the box around its cluster's boxes.
    assert (first["x"], first["y"]) == (0.1, 0.1)
    assert abs(first["w"] - 0.21) < 1e-9 and abs(first["h"] - 0.2) < 1e-9
    assert places[1]["boxes"] == [{"labeler": 1, "label": 1, "x": 0.6, "y": 0.6, "w": 0.2, "h": 0.2}]


def test_bbox_reason_names_labelers_by_input_position_whatever_the_order() -> None:
    anns = [boxes(box(1, 0.1, 0.1)), boxes(box(1, 0.1, 0.1), box(3, 0.5, 0.5)), boxes(box(2, 0.12, 0.1))]
    for perm in itertools.permutations(range(3)):
        out = bbox([anns[i] for i in perm], P)
        assert out.agreed and out.reason is not None
        got = {(perm[x["labeler"]], x["label"]) for p in out.reason["places"] for x in p["boxes"]}
        assert got == {(0, 1), (1, 1), (1, 3), (2, 2)}
        assert sorted(p["verdict"] for p in out.reason["places"]) == ["dropped", "object"]


def test_semantic_reason_counts_undecided_pixels_by_tile() -> None:
    full = np.full((TS, TS), 4, dtype=np.uint32)
    other = full.copy()
    other.reshape(-1)[:10] = 7
    out = semantic([mask({"0,0": full, "1,0": full}), mask({"0,0": other})], P)
    assert not out.agreed and out.reason is not None
    reason: dict[str, Any] = out.reason
    assert reason["kind"] == "pixels" and reason["tile_size"] == TS
    assert reason["tiles"] == {"0,0": 10, "1,0": TS * TS}
    assert reason["undecided"] == 10 + TS * TS and reason["total"] == 2 * TS * TS
    assert reason["share"] == reason["undecided"] / reason["total"] and reason["limit"] == P.max_undecided


def test_polygon_reason_and_reason_left_out_of_equality() -> None:
    assert polygon([{"shapes": []}], P).reason == {"kind": "single", "labelers": 1}
    # Equal verdicts are equal outcomes even though their reasons name labelers differently.
    assert multiclass([cls(1), cls(2)], P) == multiclass([cls(2), cls(1)], P)
