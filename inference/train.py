"""Train a model on labeled items, then calibrate its prelabel threshold on held-out ones.

`train` is deterministic for a given seed on the CPU: every random choice (split, shuffling,
augmentation, initialisation) comes from generators seeded by it. On CUDA, cuDNN is pinned to
deterministic algorithms and the networks avoid layers with non-deterministic gradients.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from inference import calibration, nets
from inference import images as imaging
from inference.calibration import Box
from inference.predict import Model, SavedState, Task

log = logging.getLogger(__name__)

__all__ = ["Sample", "TrainConfig", "TrainResult", "TrainingError", "train"]

_WEIGHT_DECAY = 1e-4
_MAX_GRAD_NORM = 5.0
_WARMUP_SHARE = 0.05
# Box size errors are fractions of the image (~0.05); this puts them on par with the heatmap loss.
_SIZE_WEIGHT = 5.0
_EVAL_BATCH = 64


class TrainingError(ValueError):
    """A configuration or a set of samples that no model can be trained from."""


@dataclass
class Sample:
    """One labeled item: its encoded image and its labels (classification) or boxes (detection)."""

    image: bytes
    classes: list[int] = field(default_factory=list)
    # (label id, x, y, w, h), normalized to [0, 1] of the image.
    boxes: list[Box] = field(default_factory=list)


@dataclass
class TrainConfig:
    """What to train and how; `classes` are label ids in the model's output order."""

    task: Task
    classes: list[int]
    input_size: int = 224
    epochs: int = 12
    batch_size: int = 32
    lr: float = 1e-3
    test_fraction: float = 0.2
    precision_target: float = 0.9
    # A local torchvision resnet18 state dict; ignored when previous_state is given.
    backbone_weights: str | None = None
    # The project's earlier TrainResult.state, the closest starting point there is.
    previous_state: bytes | None = None
    seed: int = 0


@dataclass
class TrainResult:
    """The saved model, its calibrated threshold (None: never prelabel), test metrics, class counts.

    Metric keys that name a class are label ids as strings, so the dict serialises as JSON.
    """

    state: bytes
    threshold: float | None
    metrics: dict[str, Any]
    class_counts: dict[int, int]


def train(config: TrainConfig, samples: Sequence[Sample]) -> TrainResult:
    """Train on a split of `samples`, calibrate on the rest and return the saved model."""
    started = time.perf_counter()
    _check(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    usable, pixels = _prepare(config, samples)
    train_rows, test_rows = _split(config, usable)
    train_set = [usable[i] for i in train_rows]
    test_set = [usable[i] for i in test_rows]
    counts = _class_counts(config, train_set)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        net = nets.build(nets.ARCHITECTURES[config.task], len(config.classes))
    transfer = _transfer(config, net)
    net = net.to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        loss = _fit(config, net, pixels[train_rows], train_set, device)
    net.eval()

    saved = SavedState(
        config.task,
        list(config.classes),
        config.input_size,
        nets.ARCHITECTURES[config.task],
        net.state_dict(),
    )
    model = Model(net, saved, device)
    threshold, metrics = _evaluate(config, model, pixels[test_rows], test_set)
    metrics.update(
        train_size=len(train_set),
        test_size=len(test_set),
        skipped=len(samples) - len(usable),
        loss=loss,
        device=device.type,
        transfer=transfer.summary(),
        seconds=round(time.perf_counter() - started, 3),
    )
    log.info("trained %s on %d items: %s", config.task, len(train_set), metrics)
    return TrainResult(saved.to_bytes(), threshold, metrics, counts)


def _check(config: TrainConfig) -> None:
    problems = [
        (config.task not in nets.ARCHITECTURES, f"unknown task {config.task!r}"),
        (not config.classes, "at least one class is needed"),
        (len(set(config.classes)) != len(config.classes), "classes must be distinct"),
        (config.input_size < 32, "input_size must be at least 32"),
        (config.epochs < 1 or config.batch_size < 1, "epochs and batch_size must be positive"),
        (not config.lr > 0, "lr must be positive"),
        (not 0 <= config.test_fraction < 1, "test_fraction must be in [0, 1)"),
        (not 0 < config.precision_target <= 1, "precision_target must be in (0, 1]"),
    ]
    for failed, message in problems:
        if failed:
            raise TrainingError(message)


def _prepare(config: TrainConfig, samples: Sequence[Sample]) -> tuple[list[Sample], torch.Tensor]:
    """The samples a model can learn from, with labels outside `classes` removed, and their pixels.

    Every image is decoded once into a uint8 cache (n * 3 * S * S bytes: 150 kB an item at 224),
    since decoding again each epoch would cost more than the training steps on small inputs.
    """
    known = set(config.classes)
    usable: list[Sample] = []
    pixels: list[torch.Tensor] = []
    for sample in samples:
        cleaned = _clean(config.task, sample, known)
        if cleaned is None:
            continue
        try:
            tensor, _ = imaging.pixels(sample.image, config.input_size)
        except imaging.ImageError as exc:
            log.info("skipping an undecodable training image: %s", exc)
            continue
        usable.append(cleaned)
        pixels.append(tensor)
    if not usable:
        raise TrainingError("none of the samples has a decodable image with a label of this model")
    return usable, torch.stack(pixels)


def _clean(task: Task, sample: Sample, known: set[int]) -> Sample | None:
    """The sample restricted to known labels and valid boxes; None when it cannot be used."""
    classes = sorted({c for c in sample.classes if c in known})
    if task == "multiclass":
        return Sample(sample.image, classes) if len(classes) == 1 else None
    if task == "multilabel":
        return Sample(sample.image, classes)
    boxes: list[Box] = []
    for label, x, y, w, h in sample.boxes:
        x0, y0 = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
        x1, y1 = min(max(x + w, 0.0), 1.0), min(max(y + h, 0.0), 1.0)
        if label in known and x1 > x0 and y1 > y0:
            boxes.append((label, x0, y0, x1 - x0, y1 - y0))
    # An image without boxes still teaches what background looks like.
    return Sample(sample.image, boxes=boxes)


def _split(config: TrainConfig, samples: Sequence[Sample]) -> tuple[list[int], list[int]]:
    """Train and test row indices, stratified by each sample's rarest label.

    Each stratum keeps at least one item for training; the test split gets at least one item
    whenever there are two or more and the test fraction is not zero.
    """
    labels = [s.classes if config.task != "bbox" else [b[0] for b in s.boxes] for s in samples]
    frequency = Counter(label for row in labels for label in set(row))
    strata: dict[int, list[int]] = {}
    for row, present in enumerate(labels):
        key = min(present, key=lambda label: (frequency[label], label)) if present else -1
        strata.setdefault(key, []).append(row)
    rng = np.random.default_rng(config.seed)
    train_rows: list[int] = []
    test_rows: list[int] = []
    for key in sorted(strata):
        rows = [strata[key][i] for i in rng.permutation(len(strata[key]))]
        n_test = min(math.floor(len(rows) * config.test_fraction + 0.5), len(rows) - 1)
        test_rows += rows[:n_test]
        train_rows += rows[n_test:]
    if not test_rows and config.test_fraction > 0 and len(samples) >= 2:
        test_rows.append(train_rows.pop())
    return sorted(train_rows), sorted(test_rows)


def _class_counts(config: TrainConfig, samples: Sequence[Sample]) -> dict[int, int]:
    """Training examples per label id: items for classification, boxes for detection."""
    counts = dict.fromkeys(config.classes, 0)
    for sample in samples:
        for label in sample.classes if config.task != "bbox" else [b[0] for b in sample.boxes]:
            counts[label] += 1
    return counts


def _transfer(config: TrainConfig, net: nets.Net) -> nets.Transfer:
    if config.previous_state is not None:
        previous = SavedState.from_bytes(config.previous_state)
        return nets.load_previous(net, previous.state_dict, previous.classes, config.classes)
    if config.backbone_weights is not None:
        return nets.load_backbone(net, config.backbone_weights)
    return nets.Transfer("scratch", [], [])


def _fit(
    config: TrainConfig, net: nets.Net, pixels: torch.Tensor, samples: Sequence[Sample], device: torch.device
) -> float:
    """Optimise with AdamW, warmup then cosine decay; the mean loss of the last epoch."""
    generator = torch.Generator().manual_seed(config.seed)
    targets = _classification_targets(config, samples) if config.task != "bbox" else None
    n = len(samples)
    steps_per_epoch = max(1, math.ceil(n / config.batch_size))
    total = config.epochs * steps_per_epoch
    warmup = max(1, int(total * _WARMUP_SHARE))
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=_WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * step / total)),
    )
    net.train()
    last_epoch: list[float] = []
    for _ in range(config.epochs):
        last_epoch = []
        for rows in _batches(n, config.batch_size, generator):
            x, flipped = imaging.augment(imaging.normalize(pixels[rows].to(device)), generator)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                outputs = net(x)
            if targets is None:
                mirrored = flipped.tolist()
                boxes = [
                    _mirror(samples[r].boxes) if m else samples[r].boxes
                    for r, m in zip(rows, mirrored, strict=True)
                ]
                loss = _detection_loss(outputs, boxes, config.classes)
            elif config.task == "multiclass":
                loss = F.cross_entropy(outputs.float(), targets[rows].to(device))
            else:
                loss = F.binary_cross_entropy_with_logits(outputs.float(), targets[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            torch.nn.utils.clip_grad_norm_(net.parameters(), _MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
            last_epoch.append(float(loss.detach()))
    return round(sum(last_epoch) / len(last_epoch), 5)


def _batches(n: int, size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches; never a batch of one, which batch norm cannot normalise at 1x1 maps."""
    order = torch.randperm(n, generator=generator).tolist()
    batches = [order[i : i + size] for i in range(0, n, size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] += batches.pop()
    if len(batches[0]) == 1:
        batches[0] = batches[0] * 2  # augmented independently, the two copies still differ
    return batches


def _classification_targets(config: TrainConfig, samples: Sequence[Sample]) -> torch.Tensor:
    index = {label: i for i, label in enumerate(config.classes)}
    if config.task == "multiclass":
        return torch.tensor([index[s.classes[0]] for s in samples], dtype=torch.long)
    hot = torch.zeros((len(samples), len(config.classes)))
    for row, sample in enumerate(samples):
        for label in sample.classes:
            hot[row, index[label]] = 1.0
    return hot


def _mirror(boxes: Sequence[Box]) -> list[Box]:
    return [(label, 1.0 - x - w, y, w, h) for label, x, y, w, h in boxes]


def _detection_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    boxes: Sequence[Sequence[Box]],
    classes: list[int],
) -> torch.Tensor:
    """CenterNet's loss: penalty-reduced focal loss on the heatmap, L1 on size and offset at centres."""
    heatmap, size, offset = (o.float() for o in outputs)
    target, target_size, target_offset, mask = _heatmap_targets(boxes, classes, heatmap.shape, heatmap.device)
    positive = target.eq(1.0).float()
    objects = positive.sum().clamp(min=1.0)
    p = heatmap.sigmoid()
    # logsigmoid keeps log(p) and log(1 - p) finite however confident the logits get.
    pos = F.logsigmoid(heatmap) * (1 - p) ** 2 * positive
    neg = F.logsigmoid(-heatmap) * p**2 * (1 - target) ** 4 * (1 - positive)
    focal = -(pos.sum() + neg.sum()) / objects
    where = mask.unsqueeze(1)
    size_loss = ((size - target_size).abs() * where).sum() / objects
    offset_loss = ((offset - target_offset).abs() * where).sum() / objects
    return focal + _SIZE_WEIGHT * size_loss + offset_loss


def _heatmap_targets(
    boxes: Sequence[Sequence[Box]], classes: list[int], shape: torch.Size, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class Gaussian heatmaps peaking at 1 on box centres; size, offset and mask at the centres."""
    n, _, h, w = shape
    index = {label: i for i, label in enumerate(classes)}
    heat = torch.zeros(shape)
    size = torch.zeros((n, 2, h, w))
    offset = torch.zeros((n, 2, h, w))
    mask = torch.zeros((n, h, w))
    ys = torch.arange(h, dtype=torch.float32).view(h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, w)
    for row, image_boxes in enumerate(boxes):
        for label, x, y, bw, bh in image_boxes:
            cx, cy = (x + bw / 2) * w, (y + bh / 2) * h
            ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
            sigma = (2 * _gaussian_radius(bh * h, bw * w) + 1) / 6
            blob = torch.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma**2))
            c = index[label]
            heat[row, c] = torch.maximum(heat[row, c], blob)
            size[row, :, iy, ix] = torch.tensor([bw, bh])
            offset[row, :, iy, ix] = torch.tensor([cx - ix, cy - iy])
            mask[row, iy, ix] = 1.0
    return heat.to(device), size.to(device), offset.to(device), mask.to(device)


def _gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> int:
    """CenterNet's radius: the largest centre shift that keeps a box's IoU with itself >= min_overlap."""
    b1, c1 = height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return max(0, int(min(r1, r2, r3)))


def _evaluate(
    config: TrainConfig, model: Model, pixels: torch.Tensor, samples: Sequence[Sample]
) -> tuple[float | None, dict[str, Any]]:
    """The threshold and metrics on the test split, through the same code path as serving."""
    outputs = [model.forward(pixels[i : i + _EVAL_BATCH]) for i in range(0, len(samples), _EVAL_BATCH)]
    predictions = [p for chunk in outputs for p in model.postprocess(chunk)]
    if config.task == "bbox":
        return _box_metrics(config, predictions, samples)
    return _class_metrics(config, predictions, samples)


def _class_metrics(
    config: TrainConfig, predictions: Sequence[dict[str, Any]], samples: Sequence[Sample]
) -> tuple[float | None, dict[str, Any]]:
    """Accuracy and per-class precision/recall; the threshold from top-class (or per-label) scores."""
    scores: list[float] = []
    correct: list[bool] = []
    decided: list[tuple[set[int], set[int]]] = []  # (predicted, true) per item
    for prediction, sample in zip(predictions, samples, strict=True):
        probs: dict[int, float] = prediction["classes"]
        truth = set(sample.classes)
        if config.task == "multiclass":
            top = max(probs, key=lambda label: probs[label])
            scores.append(probs[top])
            correct.append(top in truth)
            decided.append(({top}, truth))
        else:
            scores += probs.values()
            correct += [label in truth for label in probs]
            decided.append(({label for label, p in probs.items() if p >= 0.5}, truth))
    chosen = calibration.choose_threshold(scores, correct, config.precision_target)
    if config.task == "multiclass":
        accuracy = sum(correct) / len(correct) if correct else None
    else:
        # Share of right (item, label) decisions at 0.5.
        pairs = [(label in p) == (label in t) for p, t in decided for label in config.classes]
        accuracy = sum(pairs) / len(pairs) if pairs else None
    if config.task == "multiclass" or chosen.value is None or not predictions:
        coverage = chosen.coverage
    else:
        limit = chosen.value
        shown = [any(p >= limit for p in pr["classes"].values()) for pr in predictions]
        coverage = sum(shown) / len(shown)
    per_class = {
        str(label): _precision_recall(
            sum(label in p and label in t for p, t in decided),
            sum(label in p for p, _ in decided),
            sum(label in t for _, t in decided),
        )
        for label in config.classes
    }
    return chosen.value, {
        "accuracy": accuracy,
        "per_class": per_class,
        **_calibrated(chosen),
        "coverage": coverage,
    }


def _box_metrics(
    config: TrainConfig, predictions: Sequence[dict[str, Any]], samples: Sequence[Sample]
) -> tuple[float | None, dict[str, Any]]:
    """AP at IoU 0.5 per class; precision, recall and image coverage at the calibrated threshold."""
    found: list[tuple[int, int, float, bool]] = []  # (image, label, score, matched)
    truths = Counter(label for s in samples for label, *_ in s.boxes)
    for image, (prediction, sample) in enumerate(zip(predictions, samples, strict=True)):
        detections = [
            (b["label"], b["x"], b["y"], b["w"], b["h"], b["confidence"]) for b in prediction["boxes"]
        ]
        matched = calibration.match_boxes(detections, sample.boxes)
        found += [(image, d[0], d[5], m) for d, m in zip(detections, matched, strict=True)]
    chosen = calibration.choose_threshold(
        [f[2] for f in found], [f[3] for f in found], config.precision_target
    )
    limit = chosen.value if chosen.value is not None else math.inf
    kept = [f for f in found if f[2] >= limit]
    ap = {
        str(label): calibration.average_precision(
            [f[2] for f in found if f[1] == label], [f[3] for f in found if f[1] == label], truths[label]
        )
        for label in config.classes
        if truths[label]
    }
    per_class = {
        str(label): _precision_recall(
            sum(f[3] for f in kept if f[1] == label), sum(f[1] == label for f in kept), truths[label]
        )
        for label in config.classes
    }
    total = sum(truths.values())
    return chosen.value, {
        "ap50": sum(ap.values()) / len(ap) if ap else None,
        "ap50_per_class": ap,
        "per_class": per_class,
        **_calibrated(chosen),
        "recall": sum(f[3] for f in kept) / total if total else None,
        "coverage": len({f[0] for f in kept}) / len(samples) if samples else 0.0,
    }


def _calibrated(chosen: calibration.Threshold) -> dict[str, float | int | None]:
    """The threshold, the precision of what it keeps and how many; without one, the best precision seen."""
    if chosen.value is None:
        return {"threshold": None, "precision": None, "kept": 0, "best_precision": chosen.precision}
    return {"threshold": chosen.value, "precision": chosen.precision, "kept": chosen.kept}


def _precision_recall(hits: int, predicted: int, actual: int) -> dict[str, float | int | None]:
    return {
        "precision": hits / predicted if predicted else None,
        "recall": hits / actual if actual else None,
        "support": actual,
    }
