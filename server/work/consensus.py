"""Consensus: do the submitted annotations of several labelers of one item agree, and on what? Pure: no I/O.

Each task type has one function taking the plain JSON annotations (collab.schema form) and ConsensusParams
and returning an Outcome(agreed, final, agreement, detail); decide() dispatches by task type. Every
function raises ValueError (a SchemaError included) on an empty list or an annotation that breaks the
schema; the result never depends on the order of the labelers. A single annotation agrees with itself.

Parameters (ConsensusParams):
  threshold      a side wins with MORE than this share of the n labelers (0.5 = strict majority); [0.5, 1).
  iou            bbox: two boxes can join one cluster when their IoU >= iou, whatever their labels; (0, 1].
  max_undecided  semantic: agreed when the share of undecided pixels is <= this; [0, 1].
  merge          bbox: "mean" (coordinate-wise mean of the cluster) or "medoid" (the member box with the
                 highest total IoU to the other members; ties go to the smallest (x, y, w, h)).

Rules. "Majority" below means a count k with k / n > threshold; a question where neither side has one is
a tie and blocks consensus.
  multiclass  each annotation votes for its one class, or for "no class" when it lists none (more than
              one class is a ValueError). Agreed iff one vote has a majority; final {"classes": [id]} or
              {"classes": []} for "no class".
  multilabel  per label chosen by anyone: present iff a majority chose it, absent iff a majority did not;
              a tie on any label means no consensus. Final {"classes": sorted present labels}.
  bbox        boxes from different labelers are clustered by place first, whatever their labels:
              greedily, the pair with the highest IoU first (ties in a canonical geometric order); two
              clusters merge only when no labeler is in both (one box per labeler per cluster) and every
              cross pair has IoU >= iou (complete linkage, so chains of overlaps do not drift). A cluster
              drawn by a majority of the n labelers is an object; one drawn by a minority is dropped (an
              extra box does not block); any other is a tie and blocks consensus. An object's label is
              the one held by a majority of the boxes in its cluster; without one there is no consensus
              (people who drew a box in the same place agree something is there: disagreeing on what
              it is goes to review, never to a final without that box). Each object becomes one box,
              merged from its cluster's boxes of that label: source "human", confidence = share of the
              n labelers who drew that label there, ids "consensus-1", ... in (label, x, y, w, h)
              order. Input ids, sources and confidences are ignored.
  polygon     polygon projects use a single labeler: agreed iff there is exactly one annotation, final =
              its shapes unchanged; several annotations raise ValueError (no polygon consensus).
  semantic    every labeler's tiles are decoded (a missing tile is all 0, unlabeled); tile_size must be
              the same in every annotation that has a mask. Per pixel, a value (0 included) held by a
              majority decides it; other pixels are undecided. Counted over every pixel of every tile
              present in any annotation, agreed iff undecided share <= max_undecided. Final mask: the
              majority value per pixel, undecided pixels 0, all-zero tiles omitted.

Agreement score (for statistics, also when not agreed): the mean, over the decision units of the item, of
the share of labelers on the larger side of that unit. Units: multiclass the one class question (share of
the most voted choice); multilabel each label anyone chose (max(chose, did not) / n); bbox each cluster
(max(in cluster, not in it) / n); semantic each pixel (share holding its most common value); polygon
1.0. With no units (no labels, no boxes, no tiles) it is 1.0. For bbox a cluster is a question with
the answers "nothing here" (the labelers without a box in it) and each label drawn in it, so three
labelers who put three different labels on one place agree 1/3, not fully.

Reason (Outcome.reason, for the people who review an item): the decision units laid out as plain JSON,
agreed or not, each with its verdict, so a reviewer sees which labels or places disagreed. Labelers are
named by their position in the input list (the only place where input order shows; the reason takes no
part in Outcome equality). Kinds:
  votes   multiclass: {"labelers", "needed", "votes": [{"label" (None: no class), "count", "labelers"}]},
          most votes first.
  labels  multilabel: {"labelers", "needed", "labels": [{"label", "count", "labelers",
          "verdict": present|absent|tied}]}, by label id.
  places  bbox: {"labelers", "needed", "places": [{"x", "y", "w", "h" (the box around the cluster),
          "drawn_by", "votes": [{"label", "count"}], "boxes": [{"labeler", "label", "x", "y", "w", "h"}],
          "verdict": object|dropped|tied|no_label}]}, in the canonical cluster order.
  pixels  semantic: {"undecided", "total", "share", "limit", "tile_size", "tiles": {"tx,ty": undecided
          pixels}} (only tiles with undecided pixels).
  single  polygon: {"labelers": 1}.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from collab.schema import DEFAULT_TILE_SIZE, TaskType, rle_decode, rle_encode, validate_annotation

BoxKey = tuple[int, float, float, float, float]


@dataclass(frozen=True)
class ConsensusParams:
    """How much agreement a project demands; see the module docstring."""

    threshold: float = 0.5
    iou: float = 0.5
    max_undecided: float = 0.05
    merge: Literal["mean", "medoid"] = "mean"

    def __post_init__(self) -> None:
        """Reject parameters outside their documented ranges."""
        if not 0.5 <= self.threshold < 1:
            raise ValueError("threshold must be within [0.5, 1)")
        if not 0 < self.iou <= 1:
            raise ValueError("iou must be within (0, 1]")
        if not 0 <= self.max_undecided <= 1:
            raise ValueError("max_undecided must be within [0, 1]")
        if self.merge not in ("mean", "medoid"):
            raise ValueError('merge must be "mean" or "medoid"')


@dataclass(frozen=True)
class Outcome:
    """The verdict for one item: agreed, the final plain JSON annotation when agreed, a score, a reason."""

    agreed: bool
    final: dict[str, Any] | None
    agreement: float
    detail: str
    # Why, unit by unit (module docstring, "Reason"); names labelers by input position, so it is
    # left out of equality: the verdict itself never depends on the order of the labelers.
    reason: dict[str, Any] | None = field(default=None, compare=False)


def _needed(n: int, threshold: float) -> int:
    """The fewest of n labelers whose share is more than threshold."""
    # Comparing k / n with threshold (not k with threshold * n) makes 3 / 5 > 0.6 exactly False.
    return next(k for k in range(1, n + 1) if k / n > threshold)


def _checked(annotations: Sequence[dict[str, Any]], task_type: TaskType) -> int:
    """Validate every annotation for task_type and return how many there are."""
    if not annotations:
        raise ValueError("consensus needs at least one annotation")
    for annotation in annotations:
        validate_annotation(annotation, task_type)
    return len(annotations)


def _mean(values: Sequence[float]) -> float:
    """An order-independent mean (fsum rounds exactly once), 1.0 for no values."""
    return math.fsum(values) / len(values) if values else 1.0


def _name(vote: int | None) -> str:
    """A vote as people read it."""
    return "no class" if vote is None else f"label {vote}"


def multiclass(annotations: Sequence[dict[str, Any]], params: ConsensusParams) -> Outcome:
    """One class (or none) backed by a majority of labelers, else no consensus."""
    n = _checked(annotations, "multiclass")
    votes: Counter[int | None] = Counter()
    voters: dict[int | None, list[int]] = {}
    for i, annotation in enumerate(annotations):
        classes = annotation.get("classes", [])
        if len(classes) > 1:
            raise ValueError("a multiclass annotation holds at most one class")
        choice = int(classes[0]) if classes else None
        votes[choice] += 1
        voters.setdefault(choice, []).append(i)
    # Sorting by (count desc, None first, id) keeps details independent of labeler order.
    ranked = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0] is not None, kv[0] or 0))
    vote, count = ranked[0]
    agreement = count / n
    need = _needed(n, params.threshold)
    reason = {"kind": "votes", "labelers": n, "needed": need,
              "votes": [{"label": v, "count": c, "labelers": voters[v]} for v, c in ranked]}
    if count >= need:
        final = {"classes": [] if vote is None else [vote]}
        return Outcome(True, final, agreement, f"{count} of {n} agree on {_name(vote)}", reason)
    tied = [_name(v) for v, c in ranked if c == count]
    if len(tied) > 1:
        return Outcome(False, None, agreement, f"tie between {', '.join(tied)} ({count} of {n} each)", reason)
    return Outcome(False, None, agreement, f"no majority: {_name(vote)} has {count} of {n}", reason)


def multilabel(annotations: Sequence[dict[str, Any]], params: ConsensusParams) -> Outcome:
    """Each label present or absent by majority; a tie on any label means no consensus."""
    n = _checked(annotations, "multilabel")
    need = _needed(n, params.threshold)
    chosen: Counter[int] = Counter()
    choosers: dict[int, list[int]] = {}
    for i, annotation in enumerate(annotations):
        mine = {int(c) for c in annotation.get("classes", [])}
        chosen.update(mine)
        for label in mine:
            choosers.setdefault(label, []).append(i)
    labels = sorted(chosen)
    present = [label for label in labels if chosen[label] >= need]
    ties = [label for label in labels if chosen[label] < need and n - chosen[label] < need]
    agreement = _mean([max(chosen[label], n - chosen[label]) / n for label in labels])
    verdicts = {label: "present" for label in present} | {label: "tied" for label in ties}
    reason = {"kind": "labels", "labelers": n, "needed": need,
              "labels": [{"label": label, "count": chosen[label], "labelers": choosers[label],
                          "verdict": verdicts.get(label, "absent")} for label in labels]}
    if ties:
        names = ", ".join(map(str, ties))
        return Outcome(False, None, agreement, f"tie on label{'s' if len(ties) > 1 else ''} {names}", reason)
    detail = f"{len(labels)} label(s) decided by {n} labeler(s), {len(present)} present"
    return Outcome(True, {"classes": present}, agreement, detail, reason)


def _box_key(shape: dict[str, Any]) -> BoxKey:
    """The label and geometry of a box, the only parts consensus looks at."""
    return int(shape["label"]), float(shape["x"]), float(shape["y"]), float(shape["w"]), float(shape["h"])


def _iou_matrix(keys: Sequence[BoxKey]) -> npt.NDArray[np.float64]:
    """Pairwise IoU of boxes, ignoring labels."""
    geo = np.array([k[1:] for k in keys], dtype=np.float64).reshape(-1, 4)
    x1, y1 = geo[:, 0], geo[:, 1]
    x2, y2 = x1 + geo[:, 2], y1 + geo[:, 3]
    iw = np.clip(np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]), 0, None)
    ih = np.clip(np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]), 0, None)
    inter = iw * ih
    area = geo[:, 2] * geo[:, 3]
    union = area[:, None] + area[None, :] - inter
    out: npt.NDArray[np.float64] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out


def _clusters(keys: list[BoxKey], owner: list[int], iou: npt.NDArray[np.float64],
              min_iou: float) -> list[list[int]]:
    """Greedy complete-linkage clusters of box indices by place (labels aside), at most one box
    per labeler each."""
    cluster_of = list(range(len(keys)))
    members: dict[int, list[int]] = {i: [i] for i in range(len(keys))}
    owners = np.array(owner)
    candidate = (iou >= min_iou) & (owners[:, None] != owners[None, :])
    rows, cols = np.nonzero(np.triu(candidate, 1))
    pairs = [(float(iou[i, j]), int(i), int(j)) for i, j in zip(rows, cols, strict=True)]
    # Box indices follow the canonical order, so (IoU desc, i, j) is a labeler-order-free tie-break.
    for _, i, j in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):
        a, b = cluster_of[i], cluster_of[j]
        if a == b or {owner[k] for k in members[a]} & {owner[k] for k in members[b]}:
            continue
        if all(iou[p, q] >= min_iou for p in members[a] for q in members[b]):
            for k in members[b]:
                cluster_of[k] = a
            members[a] = sorted(members[a] + members.pop(b))
    return sorted(members.values())


def _merge(cluster: list[int], keys: list[BoxKey], iou: npt.NDArray[np.float64], how: str) -> BoxKey:
    """One box standing for a cluster: coordinate-wise mean, or the medoid."""
    label = keys[cluster[0]][0]
    if how == "medoid":
        totals = [math.fsum(float(iou[i, j]) for j in cluster if j != i) for i in cluster]
        # max() keeps the first best; members are in canonical (smallest geometry first) order.
        return keys[cluster[max(range(len(cluster)), key=lambda m: totals[m])]]
    x, y, w, h = (math.fsum(keys[i][c] for i in cluster) / len(cluster) for c in range(1, 5))
    return label, x, y, w, h


def _where(cluster: list[int], keys: list[BoxKey]) -> str:
    """A cluster's place as people read it: the top-left corner of its first box."""
    _, x, y, _, _ = keys[cluster[0]]
    return f"({x:.2f}, {y:.2f})"


def _place(cluster: list[int], keys: list[BoxKey], labeler: list[int], verdict: str) -> dict[str, Any]:
    """One cluster for the reason: the box around it, its votes, its boxes and what became of it."""
    x0 = min(keys[i][1] for i in cluster)
    y0 = min(keys[i][2] for i in cluster)
    x1 = max(keys[i][1] + keys[i][3] for i in cluster)
    y1 = max(keys[i][2] + keys[i][4] for i in cluster)
    votes = sorted(Counter(keys[i][0] for i in cluster).items(), key=lambda kv: (-kv[1], kv[0]))
    return {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, "drawn_by": len(cluster), "verdict": verdict,
            "votes": [{"label": label, "count": count} for label, count in votes],
            "boxes": [{"labeler": labeler[i], "label": keys[i][0], "x": keys[i][1], "y": keys[i][2],
                       "w": keys[i][3], "h": keys[i][4]} for i in cluster]}


def bbox(annotations: Sequence[dict[str, Any]], params: ConsensusParams) -> Outcome:
    """Cluster boxes across labelers by place; a majority cluster is an object whose label is
    its boxes' majority label (none: no consensus); a tied cluster blocks."""
    n = _checked(annotations, "bbox")
    need = _needed(n, params.threshold)
    # Canonical labeler and box order: the result then cannot depend on the order labelers came in
    # (a stable sort keeps equal box lists in input order; being equal, they decide alike).
    boxes_of = [sorted(_box_key(s) for s in a.get("shapes", [])) for a in annotations]
    order = sorted(range(n), key=lambda i: boxes_of[i])
    per_labeler = [boxes_of[i] for i in order]
    keys = [k for boxes in per_labeler for k in boxes]
    owner = [i for i, boxes in enumerate(per_labeler) for _ in boxes]
    iou = _iou_matrix(keys)
    clusters = _clusters(keys, owner, iou, params.iou)
    labels_in = [Counter(keys[i][0] for i in c) for c in clusters]
    agreement = _mean([max(n - len(c), *votes.values()) / n for c, votes in zip(clusters, labels_in,
                                                                                  strict=True)])
    verdicts: list[str] = []
    for c, votes in zip(clusters, labels_in, strict=True):
        if len(c) >= need:
            labelled = max(votes.values()) >= _needed(len(c), params.threshold)
            verdicts.append("object" if labelled else "no_label")
        else:
            verdicts.append("dropped" if n - len(c) >= need else "tied")
    labeler = [order[o] for o in owner]
    reason = {"kind": "places", "labelers": n, "needed": need,
              "places": [_place(c, keys, labeler, v) for c, v in zip(clusters, verdicts, strict=True)]}
    tied = [c for c in clusters if len(c) < need and n - len(c) < need]
    if tied:
        detail = f"tie on {len(tied)} box(es): {len(tied[0])} of {n} drew one at {_where(tied[0], keys)}"
        return Outcome(False, None, agreement, detail, reason)
    objects = [(c, votes) for c, votes in zip(clusters, labels_in, strict=True) if len(c) >= need]
    kept: list[tuple[BoxKey, float]] = []
    for cluster, votes in objects:
        # Sorted (count desc, label) so the detail does not depend on labeler order.
        (label, count), *others = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < _needed(len(cluster), params.threshold):
            drawn = ", ".join(f"{lab} ({k})" for lab, k in [(label, count), *others])
            detail = (f"{len(cluster)} of {n} drew a box at {_where(cluster, keys)} but no label has a "
                      f"majority: {drawn}")
            return Outcome(False, None, agreement, detail, reason)
        agreeing = [i for i in cluster if keys[i][0] == label]
        kept.append((_merge(agreeing, keys, iou, params.merge), count / n))
    kept.sort()
    shapes = [{"id": f"consensus-{i}", "kind": "box", "label": k[0], "x": k[1], "y": k[2], "w": k[3],
               "h": k[4], "source": "human", "confidence": share} for i, (k, share) in enumerate(kept, 1)]
    detail = f"{len(kept)} box(es) agreed by {n} labeler(s), {len(clusters) - len(kept)} minority dropped"
    return Outcome(True, {"shapes": shapes}, agreement, detail, reason)


def polygon(annotations: Sequence[dict[str, Any]], params: ConsensusParams) -> Outcome:
    """A single labeler's polygons are final; consensus over several is not offered."""
    n = _checked(annotations, "polygon")
    if n > 1:
        raise ValueError("consensus is not available for polygon projects (one labeler per item)")
    shapes = [dict(shape) for shape in annotations[0].get("shapes", [])]
    return Outcome(True, {"shapes": shapes}, 1.0, "single labeler decides", {"kind": "single", "labelers": 1})


def _tile_order(key: str) -> tuple[int, int]:
    """Sort "tx,ty" tile keys numerically."""
    tx, ty = key.split(",")
    return int(tx), int(ty)


def semantic(annotations: Sequence[dict[str, Any]], params: ConsensusParams) -> Outcome:
    """Per-pixel majority over all labelers' masks; agreed when few enough pixels are undecided."""
    n = _checked(annotations, "semantic")
    need = _needed(n, params.threshold)
    masks = [a.get("mask") or {} for a in annotations]
    sizes = {int(m["tile_size"]) for m in masks if "tile_size" in m}
    if len(sizes) > 1:
        raise ValueError(f"annotations disagree on tile_size: {sorted(sizes)}")
    size = sizes.pop() if sizes else DEFAULT_TILE_SIZE
    pixels = size * size
    keys = sorted({k for m in masks for k in m.get("tiles", {})}, key=_tile_order)
    tiles: dict[str, str] = {}
    undecided = backing = 0
    undecided_in: dict[str, int] = {}
    for key in keys:
        stack = np.zeros((n, pixels), dtype=np.uint32)
        for row, mask in zip(stack, masks, strict=True):
            if key in mask.get("tiles", {}):
                row[:] = rle_decode(base64.b64decode(mask["tiles"][key]), pixels)
        # Sorting each pixel's n values groups equal ones; the longest run is the most common value's
        # count, and a majority run always covers the middle row, so that row holds the majority value.
        stack.sort(axis=0)
        run = np.ones(pixels, dtype=np.int32)
        best = run.copy()
        for i in range(1, n):
            run = np.where(stack[i] == stack[i - 1], run + 1, 1)
            np.maximum(best, run, out=best)
        decided = best >= need
        open_here = pixels - int(np.count_nonzero(decided))
        undecided += open_here
        if open_here:
            undecided_in[key] = open_here
        backing += int(best.sum(dtype=np.int64))
        final = np.where(decided, stack[n // 2], 0).astype(np.uint32)
        if final.any():
            tiles[key] = base64.b64encode(rle_encode(final)).decode("ascii")
    total = len(keys) * pixels
    share = undecided / total if total else 0.0
    agreement = backing / (total * n) if total else 1.0
    detail = f"{undecided} of {total} pixels undecided ({share:.2%}, limit {params.max_undecided:.2%})"
    reason = {"kind": "pixels", "undecided": undecided, "total": total, "share": share,
              "limit": params.max_undecided, "tile_size": size, "tiles": undecided_in}
    if share > params.max_undecided:
        return Outcome(False, None, agreement, detail, reason)
    return Outcome(True, {"mask": {"tile_size": size, "tiles": tiles}}, agreement, detail, reason)


_BY_TYPE: dict[str, Callable[[Sequence[dict[str, Any]], ConsensusParams], Outcome]] = {
    "multiclass": multiclass, "multilabel": multilabel, "bbox": bbox, "polygon": polygon,
    "semantic": semantic,
}


def decide(task_type: str, annotations: Sequence[dict[str, Any]], params: ConsensusParams) -> Outcome:
    """The consensus outcome of annotations for task_type; ValueError for an unknown type."""
    if task_type not in _BY_TYPE:
        raise ValueError(f"unknown task type {task_type!r}")
    return _BY_TYPE[task_type](annotations, params)
