"""The networks: a resnet18 classifier and a compact CenterNet-style detector on a resnet18 trunk.

Both keep torchvision's parameter names under `trunk.`, so a torchvision resnet18 state dict
loads into either, and a classifier's trunk can seed a detector and back. Weights only ever
come from a local file or an earlier model of the project; nothing is downloaded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

log = logging.getLogger(__name__)

__all__ = [
    "ARCHITECTURES",
    "Classifier",
    "Detector",
    "Net",
    "Transfer",
    "TransferError",
    "build",
    "decode_detections",
    "load_backbone",
    "load_previous",
]

CLASSIFIER = "resnet18-classifier"
DETECTOR = "resnet18-centernet"
ARCHITECTURES = {"multiclass": CLASSIFIER, "multilabel": CLASSIFIER, "bbox": DETECTOR}
# CenterNet's prior: every heatmap cell starts at p = 0.1, so the focal loss does not explode early.
_HEATMAP_PRIOR_BIAS = -math.log((1 - 0.1) / 0.1)


class TransferError(ValueError):
    """A weights file or earlier model that cannot seed the network."""


class Net(nn.Module):
    """What training and prediction need from a network besides `forward`."""

    # Parameters indexed by class along their first dimension, remapped by label id on transfer.
    class_params: tuple[str, ...] = ()
    embedding_size: int
    trunk: nn.Module

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The features before the last layer, one vector per image (n, d)."""
        raise NotImplementedError


class GlobalAveragePool(nn.Module):
    """Same result as resnet's AdaptiveAvgPool2d(1), but with a deterministic backward pass on CUDA."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class Classifier(Net):
    """torchvision's resnet18 with a fresh linear head for the project's classes."""

    class_params = ("head.weight", "head.bias")
    embedding_size = 512

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.trunk = resnet18(weights=None)
        self.trunk.avgpool = GlobalAveragePool()
        self.trunk.fc = nn.Identity()
        self.head = nn.Linear(512, num_classes)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.trunk(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (n, classes)."""
        logits: torch.Tensor = self.head(self.embedding(x))
        return logits


class Trunk(nn.Module):
    """resnet18 up to layer3, under torchvision's names; layer4 would add 8M parameters for little."""

    def __init__(self) -> None:
        super().__init__()
        base = resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = base.conv1, base.bn1, base.relu, base.maxpool
        self.layer1, self.layer2, self.layer3 = base.layer1, base.layer2, base.layer3

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stride-8 (128 channels) and stride-16 (256 channels) feature maps."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer2(self.layer1(x))
        return c3, self.layer3(c3)


def _head(out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(128, 64, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(64, out_channels, 1)
    )


class Detector(Net):
    """CenterNet on a stride-8 map: a heatmap per class, box size and centre offset per cell.

    The stride-16 map is upsampled into the stride-8 one, so each cell sees wide context while
    keeping the resolution small objects need. Sizes are predicted as fractions of the image,
    so a model transfers between input sizes unchanged.
    """

    stride = 8
    class_params = ("heatmap.2.weight", "heatmap.2.bias")
    embedding_size = 128

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.trunk = Trunk()
        self.lateral = nn.Conv2d(128, 128, 1)
        self.top = nn.Conv2d(256, 128, 1)
        self.smooth = nn.Sequential(
            nn.Conv2d(128, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True)
        )
        self.heatmap = _head(num_classes)
        self.size = _head(2)
        self.offset = _head(2)
        last = self.heatmap[2]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        nn.init.constant_(last.bias, _HEATMAP_PRIOR_BIAS)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The fused stride-8 map (n, 128, S/8, S/8)."""
        c3, c4 = self.trunk(x)
        top = _upsample2(self.top(c4))[:, :, : c3.shape[2], : c3.shape[3]]
        fused: torch.Tensor = self.smooth(self.lateral(c3) + top)
        return fused

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Heatmap logits (n, classes, h, w), box sizes (n, 2, h, w) and centre offsets (n, 2, h, w)."""
        fused = self.features(x)
        return self.heatmap(fused), self.size(fused), self.offset(fused)


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling by broadcasting: its backward is a plain sum, deterministic
    on CUDA, unlike F.interpolate's."""
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


def build(architecture: str, num_classes: int) -> Net:
    """A freshly initialised network (parameters drawn from torch's global generator)."""
    if num_classes < 1:
        raise ValueError("a model needs at least one class")
    if architecture == CLASSIFIER:
        return Classifier(num_classes)
    if architecture == DETECTOR:
        return Detector(num_classes)
    raise ValueError(f"unknown architecture {architecture!r}")


def decode_detections(
    heatmap: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, k: int = 100
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top-`k` peaks per image: boxes (n, k, 4) as normalized x, y, w, h; scores; class indices.

    A cell is a peak when it is the maximum of its 3x3 neighbourhood, which stands in for
    non-maximum suppression: a detector trained on centre heatmaps fires one blob per object.
    """
    n, classes, h, w = heatmap.shape
    heat = heatmap.float().sigmoid()
    peaks = F.max_pool2d(heat, kernel_size=3, stride=1, padding=1)
    heat = heat * (peaks == heat)
    k = min(k, classes * h * w)
    scores, index = heat.view(n, -1).topk(k)
    labels = index // (h * w)
    cell = index % (h * w)
    gather = cell.unsqueeze(1).expand(n, 2, k)
    off = offset.float().reshape(n, 2, h * w).gather(2, gather)
    wh = size.float().reshape(n, 2, h * w).gather(2, gather).clamp(0.0, 1.0)
    cx = ((cell % w).float() + off[:, 0]) / w
    cy = (torch.div(cell, w, rounding_mode="floor").float() + off[:, 1]) / h
    x0 = (cx - wh[:, 0] / 2).clamp(0.0, 1.0)
    y0 = (cy - wh[:, 1] / 2).clamp(0.0, 1.0)
    x1 = (cx + wh[:, 0] / 2).clamp(0.0, 1.0)
    y1 = (cy + wh[:, 1] / 2).clamp(0.0, 1.0)
    return torch.stack([x0, y0, x1 - x0, y1 - y0], dim=-1), scores, labels


@dataclass(frozen=True)
class Transfer:
    """Where a network's starting weights came from and which tensors were taken."""

    source: Literal["previous", "backbone", "scratch"]
    loaded: list[str]
    skipped: list[str]

    def summary(self) -> dict[str, object]:
        return {"source": self.source, "loaded": len(self.loaded), "skipped": self.skipped}


def load_backbone(net: Net, path: str) -> Transfer:
    """Load a local torchvision resnet18 state dict into the trunk (what fits; the rest is reported)."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises whatever its unpickler meets in a foreign file
        raise TransferError(f"cannot read backbone weights from {path}: {exc}") from exc
    weights = _unwrap(raw)
    loaded, skipped = _copy_fitting(net.trunk, weights)
    if not loaded:
        raise TransferError(f"no tensor in {path} fits a resnet18 trunk")
    log.info("backbone %s: %d tensors loaded, %d skipped", path, len(loaded), len(skipped))
    return Transfer("backbone", [f"trunk.{name}" for name in loaded], skipped)


def load_previous(
    net: Net, state_dict: Mapping[str, torch.Tensor], previous_classes: Sequence[int], classes: Sequence[int]
) -> Transfer:
    """Seed from an earlier model of the project: every tensor whose shape still fits.

    Class-indexed tensors (the last layer) are remapped by label id, so adding, removing or
    reordering labels keeps what was learnt for the labels that remain.
    """
    weights = dict(state_dict)
    own = net.state_dict()
    for name in net.class_params:
        old = weights.pop(name, None)
        if old is None or old.shape[1:] != own[name].shape[1:] or old.shape[0] != len(previous_classes):
            continue
        remapped = own[name].clone()
        rows = {label: row for row, label in enumerate(previous_classes)}
        for row, label in enumerate(classes):
            if label in rows:
                remapped[row] = old[rows[label]]
        weights[name] = remapped
    loaded, skipped = _copy_fitting(net, weights)
    log.info("previous model: %d tensors loaded, %d skipped", len(loaded), len(skipped))
    return Transfer("previous", loaded, skipped)


def _unwrap(raw: object) -> dict[str, torch.Tensor]:
    """The tensors of a state dict, also when wrapped as {"state_dict": ...} or saved from DataParallel."""
    if isinstance(raw, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(raw.get(key), Mapping):
                raw = raw[key]
                break
    if not isinstance(raw, Mapping):
        raise TransferError("the weights file does not hold a state dict")
    return {
        str(name).removeprefix("module."): tensor
        for name, tensor in raw.items()
        if isinstance(tensor, torch.Tensor)
    }


def _copy_fitting(module: nn.Module, weights: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Copy the tensors whose name and shape match; (loaded names, skipped names) with reasons."""
    own = module.state_dict()
    fitting = {name: t for name, t in weights.items() if name in own and own[name].shape == t.shape}
    skipped = sorted(
        f"{name} (shape {tuple(t.shape)} != {tuple(own[name].shape)})" if name in own else f"{name} (unused)"
        for name, t in weights.items()
        if name not in fitting
    )
    skipped += sorted(f"{name} (not in the weights)" for name in own if name not in weights)
    module.load_state_dict(fitting, strict=False)
    return sorted(fitting), skipped
