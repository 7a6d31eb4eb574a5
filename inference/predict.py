"""A trained model, loaded from its saved state, that predicts and embeds images.

The work is split so a serving layer can batch the expensive part alone:
`preprocess` (decode and resize, CPU) -> `forward` (the network and peak picking, on the device)
-> `postprocess` (plain dicts). `predict` and `embed` chain them for callers that do not care.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F

from inference import images as imaging
from inference import nets

__all__ = ["STATE_FORMAT", "Model", "ModelStateError", "Prediction", "SavedState", "Task"]

Task = Literal["multiclass", "multilabel", "bbox"]
Prediction = dict[str, Any]
STATE_FORMAT = 1
# Detections weaker than this are never worth sending: calibrated thresholds sit far above it.
MIN_BOX_CONFIDENCE = 0.01
MAX_BOXES = 100
_CHUNK = 64


class ModelStateError(ValueError):
    """Bytes that are not a saved model this code can rebuild."""


@dataclass(frozen=True)
class SavedState:
    """Everything needed to rebuild a trained network."""

    task: Task
    classes: list[int]
    input_size: int
    architecture: str
    state_dict: dict[str, torch.Tensor]

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(
            {
                "format": STATE_FORMAT,
                "task": self.task,
                "classes": list(self.classes),
                "input_size": self.input_size,
                "architecture": self.architecture,
                "state_dict": {name: t.detach().cpu() for name, t in self.state_dict.items()},
            },
            buffer,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, state: bytes) -> SavedState:
        try:
            # weights_only: a state is data, and must never be able to run code when loaded.
            raw = torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelStateError(f"cannot read the model state ({type(exc).__name__}: {exc})") from exc
        if not isinstance(raw, Mapping) or raw.get("format") != STATE_FORMAT:
            raise ModelStateError("the bytes are not a saved model of a known format")
        task, classes, size = raw.get("task"), raw.get("classes"), raw.get("input_size")
        weights = raw.get("state_dict")
        if (
            task not in ("multiclass", "multilabel", "bbox")
            or not isinstance(classes, list)
            or not all(isinstance(c, int) for c in classes)
            or not isinstance(size, int)
            or not isinstance(raw.get("architecture"), str)
            or not isinstance(weights, dict)
        ):
            raise ModelStateError("the saved model lacks its task, classes, input size or weights")
        return cls(cast(Task, task), classes, size, raw["architecture"], weights)


class Model:
    """A network in eval mode on one device, with its task, label ids (output order) and input size."""

    def __init__(self, net: nets.Net, saved: SavedState, device: torch.device) -> None:
        self.net = net
        self.task: Task = saved.task
        self.classes: list[int] = list(saved.classes)
        self.input_size: int = saved.input_size
        self.architecture = saved.architecture
        self.device = device

    @classmethod
    def load(cls, state: bytes, device: str | None = None) -> Model:
        """Rebuild a model from `TrainResult.state`; CUDA when available unless `device` says otherwise."""
        saved = SavedState.from_bytes(state)
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            net = nets.build(saved.architecture, len(saved.classes))
            net.load_state_dict(saved.state_dict)
        except (ValueError, RuntimeError) as exc:
            raise ModelStateError(f"the saved weights do not fit {saved.architecture}: {exc}") from exc
        net = net.to(target).eval()
        if target.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        return cls(net, saved, target)

    def preprocess(self, images: Sequence[bytes]) -> torch.Tensor:
        """Decode and resize to a uint8 CPU batch (n, 3, S, S); raises `ImageError` naming a bad image."""
        return imaging.stack(images, self.input_size)[0]

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network on a batch from `preprocess` (or an already normalized float batch).

        Returns CPU tensors: classification {"scores": (n, classes)} as softmax or sigmoid
        probabilities; detection {"boxes": (n, k, 4) normalized x, y, w, h, "scores": (n, k),
        "labels": (n, k) class indices}. Copying to the CPU waits for the device, so timing
        this call times the whole forward pass.
        """
        with self._autocast():
            x = self._input(batch)
            if self.task == "bbox":
                heatmap, size, offset = self.net(x)
                boxes, scores, labels = nets.decode_detections(heatmap, size, offset, MAX_BOXES)
                return {"boxes": boxes.cpu(), "scores": scores.cpu(), "labels": labels.cpu()}
            logits = self.net(x).float()
        probs = logits.softmax(dim=1) if self.task == "multiclass" else logits.sigmoid()
        return {"scores": probs.cpu()}

    def postprocess(
        self, outputs: Mapping[str, torch.Tensor], sizes: Sequence[tuple[int, int]] | None = None
    ) -> list[Prediction]:
        """Plain dicts, coordinates normalized to the original image.

        Images are resized without letterboxing, so normalized coordinates need no undoing;
        `sizes` (original width, height per image), when given, only drops boxes narrower than
        one original pixel, which a labeler could neither see nor edit.
        """
        if self.task != "bbox":
            return [
                {"classes": {label: float(score) for label, score in zip(self.classes, row, strict=True)}}
                for row in outputs["scores"].tolist()
            ]
        predictions: list[Prediction] = []
        rows = zip(
            outputs["boxes"].tolist(), outputs["scores"].tolist(), outputs["labels"].tolist(), strict=True
        )
        for index, (boxes, scores, labels) in enumerate(rows):
            size = sizes[index] if sizes is not None else None
            kept = [
                {
                    "label": self.classes[label],
                    "x": x,
                    "y": y,
                    "w": w,
                    "h": h,
                    "confidence": score,
                }
                for (x, y, w, h), score, label in zip(boxes, scores, labels, strict=True)
                if score >= MIN_BOX_CONFIDENCE and _visible(w, h, size)
            ]
            predictions.append({"boxes": kept})
        return predictions

    def predict(self, images: Sequence[bytes] | torch.Tensor) -> list[Prediction]:
        """Predictions for encoded images, or for a batch as `preprocess` returns it."""
        if isinstance(images, torch.Tensor):
            return self.postprocess(self.forward(images))
        predictions: list[Prediction] = []
        for chunk in _chunks(images):
            batch, sizes = imaging.stack(chunk, self.input_size)
            predictions += self.postprocess(self.forward(batch), sizes)
        return predictions

    def embed(self, images: Sequence[bytes] | torch.Tensor) -> np.ndarray:
        """L2-normalised features from the network truncated before its last layer, (n, d) float32."""
        if isinstance(images, torch.Tensor):
            return self._embed(images)
        parts = [self._embed(self.preprocess(chunk)) for chunk in _chunks(images)]
        return np.concatenate(parts) if parts else np.zeros((0, self.net.embedding_size), np.float32)

    @torch.inference_mode()
    def _embed(self, batch: torch.Tensor) -> np.ndarray:
        with self._autocast():
            features = self.net.embedding(self._input(batch)).float()
        return F.normalize(features, dim=1).cpu().numpy()

    def _input(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = imaging.normalize(x)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        # bf16 keeps fp32's range, so no loss scaling; CPUs run fp32, where bf16 is rarely faster.
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _visible(w: float, h: float, size: tuple[int, int] | None) -> bool:
    if size is None:
        return w > 0 and h > 0
    return w * size[0] >= 1 and h * size[1] >= 1


def _chunks(items: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
