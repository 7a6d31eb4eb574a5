"""The annotation document contract: the root maps of one (item, annotator) Yjs document, its plain JSON
form, validation, and the run-length encoding of mask tiles. Pure: no I/O.

Mask tile RLE: a flat sequence of unsigned LEB128 varint pairs (run_length, value), rows top to bottom,
left to right; run_length >= 1, runs sum to tile_size * tile_size, value < 2**32. A pixel value is a label
id; 0 means unlabeled.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from pycrdt import Doc, Map

Origin = Literal["human", "model", "consensus", "import", "api"]
TaskType = Literal["multiclass", "multilabel", "bbox", "polygon", "semantic"]
Status = Literal["draft", "submitted"]

DEFAULT_TILE_SIZE = 256
MIN_TILE_SIZE, MAX_TILE_SIZE = 16, 4096
MAX_LABEL_ID = 2**32 - 1
MAX_SHAPE_ID_LENGTH = 128

_ROOTS = ("meta", "classes", "shapes", "mask")
_TASK_KEY = {"multiclass": "classes", "multilabel": "classes", "bbox": "shapes", "polygon": "shapes",
             "semantic": "mask"}
_TASK_KIND = {"bbox": "box", "polygon": "polygon"}
_BOX_FIELDS = ("x", "y", "w", "h")
_GEOMETRY_KEYS = {"box": set(_BOX_FIELDS), "polygon": {"points"}}
_SHAPE_KEYS = {kind: {"id", "kind", "label", "source", "confidence"} | geo
               for kind, geo in _GEOMETRY_KEYS.items()}
_SOURCES = ("human", "model")
_LABEL_KEY = re.compile(r"0|[1-9][0-9]*")
_TILE_KEY = re.compile(r"(0|[1-9][0-9]*),(0|[1-9][0-9]*)")
# Client-computed edges such as x + w carry float round-off; do not reject a box for that.
_EPS = 1e-9
# Five 7-bit groups hold any run length of a 4096 x 4096 tile and any uint32 label id.
_MAX_VARINT = 5


class SchemaError(ValueError):
    """An annotation that does not fit its task type or the document schema; `field` names the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def rle_encode(pixels: Sequence[int] | bytes | npt.NDArray[Any]) -> bytes:
    """Encode pixel values (flattened row-major) as LEB128 (run_length, value) pairs."""
    if isinstance(pixels, bytes | bytearray):
        arr: npt.NDArray[Any] = np.frombuffer(pixels, dtype=np.uint8)
    else:
        arr = np.asarray(pixels).ravel()
    if arr.size == 0:
        return b""
    if arr.dtype.kind not in "iub":
        raise ValueError("pixel values must be integers")
    if int(arr.min()) < 0 or int(arr.max()) > MAX_LABEL_ID:
        raise ValueError(f"pixel values must be within 0..{MAX_LABEL_ID}")
    starts = np.concatenate(([0], np.flatnonzero(arr[1:] != arr[:-1]) + 1))
    pairs = np.empty(2 * starts.size, dtype=np.uint64)
    pairs[0::2] = np.diff(np.append(starts, arr.size))
    pairs[1::2] = arr[starts]
    # One row per varint, one column per 7-bit group; keep each row's significant groups, in order.
    columns = np.arange(_MAX_VARINT)
    shifts = (7 * columns).astype(np.uint64)
    groups = (pairs[:, None] >> shifts[None, :]) & np.uint64(0x7F)
    nbytes = 1 + ((pairs[:, None] >> shifts[None, 1:]) > 0).sum(axis=1)
    groups |= np.where(columns[None, :] < (nbytes - 1)[:, None], np.uint64(0x80), np.uint64(0))
    return bytes(groups[columns[None, :] < nbytes[:, None]].astype(np.uint8).tobytes())


def rle_decode(data: bytes, n: int) -> npt.NDArray[np.uint32]:
    """Decode rle_encode output that must hold exactly n pixels; ValueError when it does not."""
    counts, labels = _runs(data, n)
    return np.repeat(labels.astype(np.uint32), counts.astype(np.int64))


def _runs(data: bytes, n: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size == 0 and n == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64)
    ends = np.flatnonzero(raw < 0x80)
    if ends.size == 0 or ends[-1] != raw.size - 1:
        raise ValueError("empty, or ends inside a varint")
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if int(lengths.max()) > _MAX_VARINT:
        raise ValueError(f"varint longer than {_MAX_VARINT} bytes")
    shifts = (7 * (np.arange(raw.size) - np.repeat(starts, lengths))).astype(np.uint64)
    values = np.add.reduceat((raw & 0x7F).astype(np.uint64) << shifts, starts)
    if values.size % 2:
        raise ValueError("odd number of varints")
    counts, labels = values[0::2], values[1::2]
    if int(counts.min()) == 0:
        raise ValueError("zero-length run")
    if int(labels.max()) > MAX_LABEL_ID:
        raise ValueError(f"pixel value above {MAX_LABEL_ID}")
    # Bound each run before summing so a hostile count can neither overflow nor allocate.
    if int(counts.max()) > n or int(counts.sum()) != n:
        raise ValueError(f"runs do not sum to {n} pixels")
    return counts, labels


def _unit(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SchemaError(field, "must be a finite number")
    if not 0.0 <= value <= 1.0:
        raise SchemaError(field, "must be within [0, 1]")
    return float(value)


def _label(value: Any, field: str, label_ids: AbstractSet[int] | None) -> int:
    # The CRDT hands every number back as a float, so an integral float is a valid id.
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or not 0 <= value <= MAX_LABEL_ID:
        raise SchemaError(field, "must be a non-negative integer label id")
    if label_ids is not None and int(value) not in label_ids:
        raise SchemaError(field, f"unknown label id {int(value)}")
    return int(value)


def _tile_size(value: Any) -> int | None:
    valid = isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
    return int(value) if valid and MIN_TILE_SIZE <= value <= MAX_TILE_SIZE else None


def _shape(raw: Any, where: str, kind: str, label_ids: AbstractSet[int] | None,
           strict: bool) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise SchemaError(where, "must be an object")
    sid = raw.get("id")
    if not isinstance(sid, str) or not 0 < len(sid) <= MAX_SHAPE_ID_LENGTH:
        raise SchemaError(f"{where}.id", f"must be a string of 1..{MAX_SHAPE_ID_LENGTH} characters")
    if raw.get("kind") != kind:
        raise SchemaError(f"{where}.kind", f"must be {kind!r} for this task type")
    if strict and (extra := sorted(map(str, set(raw) - _SHAPE_KEYS[kind]))):
        raise SchemaError(f"{where}.{extra[0]}", f"not a field of a {kind}")
    label = _label(raw.get("label"), f"{where}.label", label_ids)
    out: dict[str, Any] = {"id": sid, "kind": kind, "label": label}
    if kind == "box":
        for name in _BOX_FIELDS:
            out[name] = _unit(raw.get(name), f"{where}.{name}")
        for pos, size in (("x", "w"), ("y", "h")):
            if out[size] <= 0:
                raise SchemaError(f"{where}.{size}", "must be > 0")
            if out[pos] + out[size] > 1 + _EPS:
                raise SchemaError(f"{where}.{size}", f"{pos} + {size} must be <= 1")
    else:
        points = raw.get("points")
        if not isinstance(points, list | tuple) or len(points) % 2 or len(points) < 6:
            raise SchemaError(f"{where}.points", "must be a flat list [x0, y0, x1, y1, ...] of >= 3 points")
        out["points"] = [_unit(p, f"{where}.points[{i}]") for i, p in enumerate(points)]
    if "source" in raw:
        if raw["source"] not in _SOURCES:
            raise SchemaError(f"{where}.source", f"must be one of {_SOURCES}")
        out["source"] = raw["source"]
    if "confidence" in raw:
        conf = raw["confidence"]
        out["confidence"] = None if conf is None else _unit(conf, f"{where}.confidence")
    return out


def _tile(data: bytes, tile_size: int, where: str, label_ids: AbstractSet[int] | None) -> None:
    try:
        # Checking runs, not pixels, keeps a 4096 x 4096 tile from allocating 64 MiB.
        labels = _runs(data, tile_size * tile_size)[1]
    except ValueError as exc:
        raise SchemaError(where, f"bad RLE: {exc}") from None
    if label_ids is not None and (unknown := {int(v) for v in np.unique(labels)} - label_ids - {0}):
        raise SchemaError(where, f"unknown label id {min(unknown)}")


def _mask(raw: Any, label_ids: AbstractSet[int] | None, strict: bool) -> tuple[int, dict[str, bytes]]:
    if not isinstance(raw, Mapping):
        raise SchemaError("mask", "must be an object")
    if strict and (extra := sorted(map(str, set(raw) - {"tile_size", "tiles"}))):
        raise SchemaError(f"mask.{extra[0]}", "not a field of a mask")
    size = raw.get("tile_size")
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_TILE_SIZE <= size <= MAX_TILE_SIZE:
        raise SchemaError("mask.tile_size", f"must be an integer in {MIN_TILE_SIZE}..{MAX_TILE_SIZE}")
    tiles = raw.get("tiles", {})
    if not isinstance(tiles, Mapping):
        raise SchemaError("mask.tiles", "must be an object")
    out: dict[str, bytes] = {}
    for key, text in tiles.items():
        where = f"mask.tiles[{key!r}]"
        if not isinstance(key, str) or not _TILE_KEY.fullmatch(key) or not isinstance(text, str):
            raise SchemaError(where, 'needs a "tx,ty" key of non-negative integers and a base64 string')
        try:
            data = base64.b64decode(text, validate=True)
        except ValueError:  # binascii.Error included
            raise SchemaError(where, "is not valid base64") from None
        _tile(data, size, where, label_ids)
        out[key] = data
    return size, out


def _task_key(task_type: str) -> str:
    if task_type not in _TASK_KEY:
        raise SchemaError("task_type", f"unknown task type {task_type!r}")
    return _TASK_KEY[task_type]


def _parse(annotation: Any, task_type: str, label_ids: AbstractSet[int] | None,
           strict: bool) -> dict[str, Any]:
    key = _task_key(task_type)
    if not isinstance(annotation, Mapping):
        raise SchemaError("annotation", "must be an object")
    if strict and (extra := sorted(map(str, set(annotation) - {key, "status"}))):
        raise SchemaError(extra[0], f"not used by {task_type} annotations")
    if strict and key not in annotation:
        raise SchemaError(key, "required")
    out: dict[str, Any] = {}
    if "status" in annotation:
        if annotation["status"] not in get_args(Status):
            raise SchemaError("status", f"must be one of {get_args(Status)}")
        out["status"] = annotation["status"]
    if key not in annotation:
        return out
    raw = annotation[key]
    if key == "mask":
        out[key] = _mask(raw, label_ids, strict)
    elif key == "classes":
        if not isinstance(raw, list | tuple):
            raise SchemaError("classes", "must be a list of label ids")
        classes = [_label(v, f"classes[{i}]", label_ids) for i, v in enumerate(raw)]
        if len(set(classes)) != len(classes):
            raise SchemaError("classes", "lists a label id twice")
        if strict and task_type == "multiclass" and len(classes) != 1:
            raise SchemaError("classes", "a multiclass annotation needs exactly one class")
        out[key] = classes
    else:
        if not isinstance(raw, list | tuple):
            raise SchemaError("shapes", "must be a list of shapes")
        kind = _TASK_KIND[task_type]
        out[key] = [_shape(s, f"shapes[{i}]", kind, label_ids, strict) for i, s in enumerate(raw)]
        if len({s["id"] for s in out[key]}) != len(raw):
            raise SchemaError("shapes", "repeats a shape id")
    return out


def validate_annotation(
    annotation: dict[str, Any], task_type: TaskType, *, label_ids: AbstractSet[int] | None = None,
    strict_submit: bool = False,
) -> None:
    """Raise SchemaError naming the first field of annotation that breaks the rules of task_type."""
    _parse(annotation, task_type, label_ids, strict_submit)


def _roots(doc: Doc[Any]) -> tuple[Map[Any], Map[Any], Map[Any], Map[Any]]:
    meta, classes, shapes, mask = (doc.get(name, type=Map) for name in _ROOTS)
    return meta, classes, shapes, mask


def ensure_roots(doc: Doc[Any]) -> None:
    """Get or create the meta, classes, shapes and mask root maps of doc."""
    _roots(doc)


def read_annotation(doc: Doc[Any], task_type: TaskType) -> dict[str, Any]:
    """The plain JSON form of doc for task_type, skipping entries that break the schema."""
    key = _task_key(task_type)
    _, classes, shapes, mask = _roots(doc)
    with doc.transaction():
        if key == "classes":
            ids = [int(k) for k, v in classes.items() if v is True and _LABEL_KEY.fullmatch(k)]
            return {"classes": sorted(i for i in ids if i <= MAX_LABEL_ID)}
        if key == "shapes":
            found = []
            for sid, value in shapes.items():
                if not isinstance(value, Map):
                    continue
                raw = {**(value.to_py() or {}), "id": sid}
                try:
                    shape = _shape(raw, "shape", _TASK_KIND[task_type], None, False)
                except SchemaError:
                    continue
                shape.setdefault("source", "human")
                found.append({**shape, "confidence": shape.get("confidence")})
            return {"shapes": sorted(found, key=lambda s: str(s["id"]))}
        size = _tile_size(mask.get("tile_size")) or DEFAULT_TILE_SIZE
        tiles: dict[str, str] = {}
        for tkey, value in mask.items():
            if _TILE_KEY.fullmatch(tkey) and isinstance(value, bytes | bytearray):
                try:
                    _tile(bytes(value), size, tkey, None)
                except SchemaError:
                    continue
                tiles[tkey] = base64.b64encode(value).decode("ascii")
        order = sorted(tiles, key=lambda t: tuple(int(c) for c in t.split(",")))
        return {"mask": {"tile_size": size, "tiles": {t: tiles[t] for t in order}}}


def _check_actor(origin: str, author: str) -> None:
    if origin not in get_args(Origin):
        raise SchemaError("origin", f"must be one of {get_args(Origin)}")
    if not isinstance(author, str) or not author:
        raise SchemaError("author", "must be a non-empty string")


def _touch(meta: Map[Any], author: str, status: str | None) -> None:
    meta["updated_by"] = author
    meta["updated_at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
    if status is not None and meta.get("status") != status:
        meta["status"] = status


def _sync(root: Map[Any], wanted: Mapping[str, Any], replace: bool, keep: str = "") -> None:
    """Set the keys of root that differ from wanted; with replace, delete the ones not wanted (but keep)."""
    if replace:
        for key in [k for k in root.keys() if k not in wanted and k != keep]:
            del root[key]
    for key, value in wanted.items():
        current = root.get(key)
        # Untouched keys stay untouched so concurrent edits to them survive; 1.0 == True must not pass.
        if key not in root or current != value or isinstance(current, bool) != isinstance(value, bool):
            root[key] = value


def _write_shapes(
    root: Map[Any], shapes: list[dict[str, Any]], replace: bool, origin: str, author: str,
) -> None:
    wanted = {shape.pop("id"): shape for shape in shapes}
    if replace:
        for sid in [sid for sid in root.keys() if sid not in wanted]:
            del root[sid]
    source = "model" if origin == "model" else "human"
    for sid, fields in wanted.items():
        current = root.get(sid)
        if not isinstance(current, Map):
            root[sid] = Map({"source": source, "confidence": None, **fields, "created_by": author})
            continue
        _sync(current, fields, False)
        for stale in _GEOMETRY_KEYS["polygon" if fields["kind"] == "box" else "box"]:
            if stale in current:
                del current[stale]
        if current.get("source") not in _SOURCES:
            current["source"] = source


def write_annotation(
    doc: Doc[Any], annotation: dict[str, Any], task_type: TaskType, *, origin: Origin, author: str,
    replace: bool = True,
) -> None:
    """Validate annotation, then write it into doc in one transaction tagged with origin.

    replace=True makes the task's root equal the annotation (a missing key counts as empty); replace=False
    adds or updates the given entries only. A shape's absent source or confidence keeps the stored value.
    """
    parsed = _parse(annotation, task_type, None, False)
    _check_actor(origin, author)
    key = _task_key(task_type)
    # Only the roots this task writes: getting a root costs as much as a small edit.
    meta, root = doc.get("meta", type=Map), doc.get(key, type=Map)
    size, tiles = parsed.get("mask", (None, {}))
    if key == "mask" and not replace:
        stored = _tile_size(root.get("tile_size"))
        if size not in (None, stored) and any(k != "tile_size" for k in root.keys()):
            raise SchemaError("mask.tile_size", f"differs from the document's {stored} while it holds tiles")
    with doc.transaction(origin=origin):
        if key == "classes" and (replace or key in parsed):
            _sync(root, {str(i): True for i in parsed.get("classes", [])}, replace)
        elif key == "shapes" and (replace or key in parsed):
            _write_shapes(root, parsed.get("shapes", []), replace, origin, author)
        elif key == "mask" and (replace or key in parsed):
            _sync(root, {**tiles, **({"tile_size": size} if size else {})}, replace, keep="tile_size")
        _touch(meta, author, parsed.get("status"))


def set_status(doc: Doc[Any], status: Status, *, origin: Origin, author: str) -> None:
    """Set meta.status (and who and when) in one transaction tagged with origin."""
    if status not in get_args(Status):
        raise SchemaError("status", f"must be one of {get_args(Status)}")
    _check_actor(origin, author)
    meta = _roots(doc)[0]
    with doc.transaction(origin=origin):
        _touch(meta, author, status)
