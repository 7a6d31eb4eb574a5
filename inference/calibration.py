"""Choosing the confidence above which predictions are shown, and the box matching it relies on.

A prediction is *kept* when its score is at least the threshold. Precision is the share of
kept predictions that are right. Precision is not monotonic in the threshold (a confident
mistake makes it dip at the top, then it recovers), so `choose_threshold` does not look for
a point after which precision stays above the target: it returns the LOWEST threshold whose
kept set, taken as a whole, meets the target. That keeps the promise users see ("of the
prelabels shown, at least `target` are right") while showing as many prelabels as possible.

What the scores and verdicts are per task:
- multiclass: one per item, the top class's probability; right when it is the true class.
- multilabel: one per (item, label) pair, the label's probability; right when the item has
  the label. A label is prelabelled when its probability is at least the threshold.
- boxes: one per detection, its score; right when `match_boxes` pairs it with a ground-truth box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Box", "Detection", "Threshold", "average_precision", "choose_threshold", "iou", "match_boxes"]

# (label id, x, y, w, h), normalized to [0, 1] of the image.
Box = tuple[int, float, float, float, float]
# (label id, x, y, w, h, score).
Detection = tuple[int, float, float, float, float, float]


@dataclass(frozen=True)
class Threshold:
    """A chosen threshold and what it keeps on the calibration set.

    `value` is None when no threshold reaches the target; then `kept` and `coverage` are 0
    and `precision` is the best any threshold reaches, to show how far off the model is.
    `coverage` is the share of all scored predictions that are kept.
    """

    value: float | None
    precision: float
    coverage: float
    kept: int


def choose_threshold(scores: Sequence[float], correct: Sequence[bool], target: float) -> Threshold:
    """The lowest score s such that predictions with score >= s are right at least `target` of the time.

    Only observed scores are candidates: between two of them the kept set does not change,
    and the observed score is the largest value keeping that set, the safest for unseen data.
    Equal scores are kept or dropped together, so a tie is never split.
    """
    if len(scores) != len(correct):
        raise ValueError("scores and correct must have the same length")
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    best = Threshold(None, 0.0, 0.0, 0)
    best_precision = 0.0
    right = 0
    for position, index in enumerate(order):
        right += bool(correct[index])
        is_group_end = position + 1 == len(order) or scores[order[position + 1]] != scores[index]
        if not is_group_end:
            continue
        kept = position + 1
        precision = right / kept
        best_precision = max(best_precision, precision)
        if precision >= target:
            best = Threshold(float(scores[index]), precision, kept / len(order), kept)
    if best.value is None:
        return Threshold(None, best_precision, 0.0, 0)
    return best


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    overlap_w = min(ax + aw, bx + bw) - max(ax, bx)
    overlap_h = min(ay + ah, by + bh) - max(ay, by)
    if overlap_w <= 0 or overlap_h <= 0:
        return 0.0
    inter = overlap_w * overlap_h
    return inter / (aw * ah + bw * bh - inter)


def match_boxes(detections: Sequence[Detection], truths: Sequence[Box], min_iou: float = 0.5) -> list[bool]:
    """Which detections of one image are right, in the order given.

    As COCO: detections are taken by descending score (ties in the order given); each claims
    the still unmatched ground-truth box of its label with the highest IoU, if that IoU is at
    least `min_iou`. A second detection of an already claimed object is therefore wrong.
    """
    claimed = [False] * len(truths)
    verdicts = [False] * len(detections)
    for index in sorted(range(len(detections)), key=lambda i: -detections[i][5]):
        label, *box, _score = detections[index]
        best, best_iou = -1, -1.0
        for t, (truth_label, *truth_box) in enumerate(truths):
            if claimed[t] or truth_label != label:
                continue
            overlap = iou(box, truth_box)
            if overlap >= min_iou and overlap > best_iou:
                best, best_iou = t, overlap
        if best >= 0:
            claimed[best] = True
            verdicts[index] = True
    return verdicts


def average_precision(scores: Sequence[float], correct: Sequence[bool], truths: int) -> float:
    """Area under the precision-recall curve (all points, precision made monotone, as VOC 2010+).

    `truths` is the number of ground-truth objects, matched or not; 0 gives 0.0.
    """
    if truths == 0:
        return 0.0
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    precisions: list[float] = []
    recalls: list[float] = []
    right = 0
    for kept, index in enumerate(order, start=1):
        right += bool(correct[index])
        precisions.append(right / kept)
        recalls.append(right / truths)
    # Interpolate: precision at recall r is the best precision at any recall >= r.
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    area, previous_recall = 0.0, 0.0
    for precision, recall in zip(precisions, recalls, strict=True):
        area += (recall - previous_recall) * precision
        previous_recall = recall
    return area
