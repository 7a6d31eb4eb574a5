"""Threshold choice, box matching and average precision on hand-built tables with known answers."""

from __future__ import annotations

import pytest

from inference.calibration import Threshold, average_precision, choose_threshold, iou, match_boxes


def test_all_correct_keeps_everything_down_to_the_lowest_score() -> None:
    chosen = choose_threshold([0.3, 0.9, 0.6], [True, True, True], 0.9)
    assert chosen == Threshold(0.3, 1.0, 1.0, 3)


def test_unreachable_target_gives_no_threshold_and_reports_the_best_precision() -> None:
    # Precision of the kept set at 0.9, 0.8, 0.7, 0.6: 0, 1/2, 2/3, 1/2.
    chosen = choose_threshold([0.9, 0.8, 0.7, 0.6], [False, True, True, False], 0.95)
    assert chosen.value is None
    assert chosen.kept == 0 and chosen.coverage == 0.0
    assert chosen.precision == pytest.approx(2 / 3)
    chosen = choose_threshold([0.9, 0.8], [False, False], 0.5)
    assert chosen == Threshold(None, 0.0, 0.0, 0)


def test_ties_are_kept_or_dropped_together() -> None:
    scores = [0.9, 0.8, 0.8, 0.7]
    correct = [True, True, False, True]
    # Kept sets: {0.9} 1/1, {0.9, 0.8, 0.8} 2/3, everything 3/4; never {0.9, the right 0.8}.
    assert choose_threshold(scores, correct, 0.75) == Threshold(0.7, 0.75, 1.0, 4)
    assert choose_threshold(scores, correct, 0.8) == Threshold(0.9, 1.0, 0.25, 1)


def test_precision_dipping_at_the_top_then_recovering_picks_the_lowest_threshold_that_meets_it() -> None:
    scores = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.4, 0.3]
    correct = [False] + [True] * 9 + [False, False]
    chosen = choose_threshold(scores, correct, 0.9)
    # At 0.95 precision is 0, at 0.5 it is 9/10; at 0.4 it falls to 9/11.
    assert chosen.value == 0.5
    assert chosen.precision == pytest.approx(0.9)
    assert chosen.kept == 10
    assert chosen.coverage == pytest.approx(10 / 12)


def test_input_order_does_not_matter() -> None:
    scores = [0.2, 0.9, 0.5, 0.7]
    correct = [False, True, True, False]
    reordered = choose_threshold(scores[::-1], correct[::-1], 0.66)
    assert choose_threshold(scores, correct, 0.66) == reordered
    assert reordered.value == 0.5  # 2 of 3 kept are right


def test_empty_and_mismatched_inputs() -> None:
    assert choose_threshold([], [], 0.9) == Threshold(None, 0.0, 0.0, 0)
    with pytest.raises(ValueError):
        choose_threshold([0.5], [True, False], 0.9)


def test_iou() -> None:
    assert iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0
    assert iou((0, 0, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5)) == 0.0
    assert iou((0, 0, 0.5, 0.5), (0.25, 0, 0.5, 0.5)) == pytest.approx(1 / 3)


def test_iou_at_exactly_one_half_matches_just_below_does_not() -> None:
    truth = [(1, 0.0, 0.0, 0.5, 0.5)]
    # Inside the truth box, IoU is the area ratio: 0.5 * h / 0.25.
    assert match_boxes([(1, 0.0, 0.0, 0.5, 0.25, 0.9)], truth) == [True]
    assert match_boxes([(1, 0.0, 0.0, 0.5, 0.26, 0.9)], truth) == [True]
    assert match_boxes([(1, 0.0, 0.0, 0.5, 0.24, 0.9)], truth) == [False]


def test_a_duplicate_detection_is_wrong_and_the_higher_score_wins() -> None:
    truth = [(1, 0.1, 0.1, 0.3, 0.3)]
    detections = [(1, 0.1, 0.1, 0.3, 0.3, 0.6), (1, 0.11, 0.1, 0.3, 0.3, 0.8)]
    assert match_boxes(detections, truth) == [False, True]


def test_a_detection_with_the_wrong_label_never_matches() -> None:
    truth = [(1, 0.1, 0.1, 0.3, 0.3)]
    assert match_boxes([(2, 0.1, 0.1, 0.3, 0.3, 0.9)], truth) == [False]


def test_each_detection_claims_its_best_unclaimed_truth() -> None:
    truths = [(1, 0.0, 0.0, 0.4, 0.4), (1, 0.1, 0.0, 0.4, 0.4)]
    # The first detection overlaps both, the second truth more; the second detection gets the first.
    detections = [(1, 0.1, 0.0, 0.4, 0.4, 0.9), (1, 0.02, 0.0, 0.4, 0.4, 0.8)]
    assert match_boxes(detections, truths) == [True, True]
    assert match_boxes(detections, truths[:1]) == [True, False]


def test_average_precision() -> None:
    assert average_precision([0.9, 0.8], [True, True], 2) == 1.0
    assert average_precision([0.9, 0.8], [True, False], 2) == pytest.approx(0.5)
    # Right, wrong, right of 2 objects: recall 0.5 at precision 1, then 1.0 at precision 2/3.
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision([0.9], [False], 0) == 0.0
