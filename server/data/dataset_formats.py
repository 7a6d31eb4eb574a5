"""Reading labeled datasets made elsewhere (or exported here): COCO JSON and Azure ML AutoML
JSON Lines, into one record per image with normalized geometry and labels named by path.
Read incrementally from an open file (ijson for COCO, line by line for JSON Lines), so no
file is ever held whole; label and item resolution happen in the caller.

Every problem is reported with its position (`images[3]`, `annotations[17]`,
`categories[2]`, `line 5`) so the caller can refuse the file or import the rest.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

import ijson
import orjson

Kind = Literal["coco", "jsonl"]
# A shape may overshoot the image by this much (pixels) from rounding; it is clamped.
EDGE_SLACK_PX = 0.5
EDGE_SLACK = 1e-6


class FileError(ValueError):
    """The file as a whole cannot be read (not JSON, wrong top-level shape)."""


# Where a problem sorts among a file's problems, as (phase, index): a file's problems are
# listed in the order a whole-file read meets them, whichever pass finds them.
CATEGORIES, IMAGES, ANNOTATIONS, RECORDS = range(4)
LINES = ANNOTATIONS


@dataclass(frozen=True)
class Problem:
    position: str
    message: str
    order: tuple[int, int] | None = field(default=None, compare=False)


@dataclass
class Parsed:
    """One image's labels: label paths (not yet ids), geometry normalized to [0, 1]."""

    position: str
    image: str
    width: int | None = None
    height: int | None = None
    classes: list[str] = field(default_factory=list)
    shapes: list[dict[str, Any]] = field(default_factory=list)
    # Semantic masks: (label path, COCO segmentation) in drawing order; later ones win.
    masks: list[tuple[str, Any]] = field(default_factory=list)
    empty: bool = False  # the file says this image has no labels

    def label_paths(self) -> set[str]:
        return {*self.classes, *(s["label"] for s in self.shapes), *(m[0] for m in self.masks)}

    def dump(self) -> bytes:
        """The record as bytes, for a staging table; `load` reads it back."""
        return dump_json([self.position, self.image, self.width, self.height, self.classes,
                          self.shapes, self.masks, self.empty])

    @classmethod
    def load(cls, data: bytes) -> Parsed:
        position, image, width, height, classes, shapes, masks, empty = load_json(data)
        return cls(position, image, width, height, classes, shapes,
                   [(path, seg) for path, seg in masks], empty)


def dump_json(value: Any) -> bytes:
    """Parsed JSON back to bytes (for staging tables), numbers exactly as read."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # integers beyond 64 bits, which only the json module takes
        return json.dumps(value).encode()


def load_json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


@dataclass
class ParsedFile:
    records: list[Parsed]
    problems: list[Problem]
    total: int                      # images (COCO) or lines (JSON Lines) read
    # Where each label path is first defined or used, for "unknown label" problems.
    label_positions: dict[str, str] = field(default_factory=dict)


def detect(filename: str, given: str | None) -> Kind:
    if given in ("coco", "jsonl"):
        return given  # type: ignore[return-value]
    lower = filename.lower()
    if lower.endswith(".jsonl") or lower.endswith(".ndjson"):
        return "jsonl"
    if lower.endswith(".json"):
        return "coco"
    raise FileError("cannot tell the format from the file name; send format=coco or format=jsonl")


def parse(data: bytes, kind: Kind, task_type: str) -> ParsedFile:
    if task_type == "semantic" and kind == "jsonl":
        raise FileError("AutoML JSON Lines has no semantic masks; import a COCO file instead")
    return _coco(data, task_type) if kind == "coco" else _jsonl(data, task_type)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _id(value: Any) -> int | str | None:
    """A COCO id (int or string); None for anything else (lists, objects, booleans)."""
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None


def _unit(value: float, limit: float) -> float:
    """Clamp a coordinate that overshoots [0, 1] by no more than `limit`; ValueError beyond."""
    if -limit <= value < 0:
        return 0.0
    if 1 < value <= 1 + limit:
        return 1.0
    if not 0 <= value <= 1:
        raise ValueError("lies outside the image")
    return value


# --- COCO -----------------------------------------------------------------------------------
# A COCO file keeps images, categories and annotations in separate top-level lists, in any
# order, and annotations name their image by id. It is read in two passes so that neither
# pass holds more than one entry: `coco_images` reads the categories (kept: a label tree's
# worth) and yields the images; `coco_annotations` then yields the annotations with their
# category resolved. The caller pairs annotations with images (by `CocoImage.key`) however
# it can afford to, and `coco_record` turns one image and its annotations into a record.

_COCO_SHAPE = 'a COCO file is an object with "images" and "categories" lists'
_COCO_LISTS = ("images", "categories", "annotations")


@dataclass(frozen=True)
class CocoImage:
    index: int
    key: str                        # its id as written (repr), which annotations must match
    file_name: str
    width: int | None
    height: int | None

    @property
    def position(self) -> str:
        return f"images[{self.index}] ({self.file_name})"


@dataclass(frozen=True)
class CocoAnnotation:
    index: int
    image_key: str                  # its image_id as written (repr)
    category: str | None            # label path; None when category_id names no category
    category_ref: str               # its category_id as written (repr)
    geometry: Any = None            # "bbox" or "segmentation" as written; None for class tasks


@dataclass
class CocoHead:
    """What the first pass learns besides the images."""

    categories: dict[Any, str] = field(default_factory=dict)
    label_positions: dict[str, str] = field(default_factory=dict)
    images: int = 0                 # image entries, good or bad


def coco_images(f: BinaryIO, head: CocoHead) -> Iterator[CocoImage | Problem]:
    """First pass: fill `head` with the categories and yield each image (or its problem).
    FileError (after the last image) unless the file is JSON of a COCO file's shape."""
    lists: set[str] = set()
    keys: set[str] = set()
    builder: ijson.ObjectBuilder | None = None
    counts = {"images": 0, "categories": 0}
    try:
        events = ijson.parse(f, use_float=True)
        first = next(events, None)
        if first is None or first[:2] != ("", "start_map"):
            raise FileError(_COCO_SHAPE)
        for prefix, event, value in events:
            if builder is not None:
                builder.event(event, value)
                if builder.containers:
                    continue
                entry, builder = builder.value, None
            elif prefix == "images.item" or prefix == "categories.item":
                if event == "start_map" or event == "start_array":
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                    continue
                entry = value
            else:
                if event == "start_array" and prefix in _COCO_LISTS:
                    lists.add(prefix)
                elif prefix == "" and event == "map_key":
                    keys.add(value)
                continue
            array = prefix.partition(".")[0]
            index = counts[array]
            counts[array] += 1
            if array == "images":
                yield _coco_image(index, entry)
            elif (problem := _coco_category(index, entry, head)) is not None:
                yield problem
    except ijson.JSONError as exc:
        raise FileError(f"not valid JSON: {exc}") from None
    if not {"images", "categories"} <= lists:
        raise FileError(_COCO_SHAPE)
    if "annotations" in keys and "annotations" not in lists:
        raise FileError('"annotations" must be a list')
    head.images = counts["images"]


def coco_annotations(f: BinaryIO, head: CocoHead, task_type: str) -> Iterator[CocoAnnotation | Problem]:
    """Second pass: each annotation (or its problem), its category resolved."""
    geometry = {"bbox": "bbox", "polygon": "segmentation", "semantic": "segmentation"}.get(task_type)
    try:
        for index, ann in enumerate(ijson.items(f, "annotations.item", use_float=True)):
            if not isinstance(ann, dict):
                yield Problem(f"annotations[{index}]", "must be an object", (ANNOTATIONS, index))
                continue
            image_ref, category_ref = ann.get("image_id"), ann.get("category_id")
            yield CocoAnnotation(index, repr(image_ref), head.categories.get(_id(category_ref)),
                                 repr(category_ref), None if geometry is None else ann.get(geometry))
    except ijson.JSONError as exc:
        raise FileError(f"not valid JSON: {exc}") from None


def _coco_category(index: int, cat: Any, head: CocoHead) -> Problem | None:
    where = f"categories[{index}]"
    name = cat.get("name") if isinstance(cat, dict) else None
    if not isinstance(name, str) or not name.strip() or _id(cat.get("id")) is None:
        return Problem(where, 'needs an "id" and a non-empty "name"', (CATEGORIES, index))
    path = "/".join(part.strip() for part in name.strip().split("/"))
    head.categories[cat["id"]] = path
    head.label_positions.setdefault(path, where)
    return None


def _coco_image(index: int, img: Any) -> CocoImage | Problem:
    named = isinstance(img, dict) and isinstance(img.get("file_name"), str)
    if not named or _id(img.get("id")) is None:
        return Problem(f"images[{index}]", 'needs an "id" and a "file_name"', (IMAGES, index))
    w, h = img.get("width"), img.get("height")
    sized = isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0
    return CocoImage(index, repr(img["id"]), img["file_name"], w if sized else None,
                     h if sized else None)


def repeated_image(image: CocoImage) -> Problem:
    """The problem of an image whose id an earlier image has."""
    return Problem(f"images[{image.index}]", f"image id {image.key} appears twice", (IMAGES, image.index))


def unknown_image(ann: CocoAnnotation) -> Problem:
    """The problem of an annotation whose image_id names no image."""
    return Problem(f"annotations[{ann.index}]", f"image_id {ann.image_key} is not in images",
                   (ANNOTATIONS, ann.index))


def coco_record(image: CocoImage, annotations: Iterable[CocoAnnotation], task_type: str,
                problems: list[Problem]) -> Parsed | None:
    """The image's record from its annotations (in file order); None, with the problems
    added, when one of them is bad: its other annotations alone would be a wrong label."""
    record = Parsed(image.position, image.file_name, image.width, image.height, empty=True)
    bad = False
    for ann in annotations:
        where, order = f"annotations[{ann.index}]", (ANNOTATIONS, ann.index)
        if ann.category is None:
            problems.append(Problem(where, f"category_id {ann.category_ref} is not in categories", order))
            bad = True
            continue
        try:
            _coco_annotation(record, ann.geometry, ann.category, task_type)
        except ValueError as exc:
            problems.append(Problem(where, f"{exc} (image {record.image!r})", order))
            bad = True
    if bad:
        return None
    if task_type == "multiclass" and len(set(record.classes)) > 1:
        problems.append(Problem(record.position, "a multiclass image needs exactly one class; "
                                                 f"found {', '.join(sorted(set(record.classes)))}",
                                (RECORDS, image.index)))
        return None
    record.classes = list(dict.fromkeys(record.classes))
    return record


def _coco(data: bytes, task_type: str) -> ParsedFile:
    """A whole COCO file in memory, through the same two passes."""
    head = CocoHead()
    problems: list[Problem] = []
    images: dict[str, CocoImage] = {}
    for entry in coco_images(io.BytesIO(data), head):
        if isinstance(entry, Problem):
            problems.append(entry)
        elif entry.key in images:
            problems.append(repeated_image(entry))
        else:
            images[entry.key] = entry
    annotations: dict[str, list[CocoAnnotation]] = {key: [] for key in images}
    for ann in coco_annotations(io.BytesIO(data), head, task_type):
        if isinstance(ann, Problem):
            problems.append(ann)
        elif ann.image_key not in annotations:
            problems.append(unknown_image(ann))
        else:
            annotations[ann.image_key].append(ann)
    records = [r for key, image in images.items()
               if (r := coco_record(image, annotations[key], task_type, problems)) is not None]
    problems.sort(key=lambda p: p.order or (0, 0))
    return ParsedFile(records, problems, head.images, head.label_positions)


def _coco_annotation(record: Parsed, geometry: Any, path: str, task_type: str) -> None:
    record.empty = False
    if task_type in ("multiclass", "multilabel"):
        record.classes.append(path)
        return
    w, h = record.width, record.height
    if not (w and h):
        raise ValueError("its image has no width and height")
    if task_type == "bbox":
        box = geometry
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
            raise ValueError('"bbox" must be [x, y, width, height]')
        x, y, bw, bh = box
        if bw <= 0 or bh <= 0:
            raise ValueError("box width and height must be positive")
        x0, y0 = _unit(x / w, EDGE_SLACK_PX / w), _unit(y / h, EDGE_SLACK_PX / h)
        x1, y1 = _unit((x + bw) / w, EDGE_SLACK_PX / w), _unit((y + bh) / h, EDGE_SLACK_PX / h)
        record.shapes.append({"kind": "box", "label": path, "x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0})
        return
    seg = geometry
    if task_type == "polygon":
        if not isinstance(seg, list) or not seg:
            raise ValueError('"segmentation" must be a list of polygons (RLE masks cannot become polygons)')
        for ring in seg:
            if not (isinstance(ring, list) and len(ring) >= 6 and len(ring) % 2 == 0
                    and all(_number(v) for v in ring)):
                raise ValueError("each polygon needs at least 3 points as [x0, y0, x1, y1, ...]")
            points = [_unit(v / (w if j % 2 == 0 else h), EDGE_SLACK_PX / (w if j % 2 == 0 else h))
                      for j, v in enumerate(ring)]
            record.shapes.append({"kind": "polygon", "label": path, "points": points})
        return
    # semantic
    if isinstance(seg, dict):
        if seg.get("size") != [h, w] or not isinstance(seg.get("counts"), str | list):
            raise ValueError(f'an RLE "segmentation" needs "counts" and "size" [{h}, {w}]')
    elif not (isinstance(seg, list) and seg and all(
            isinstance(r, list) and len(r) >= 6 and all(_number(v) for v in r) for r in seg)):
        raise ValueError('"segmentation" must be polygons or an RLE mask')
    record.masks.append((path, seg))


# --- AutoML JSON Lines ----------------------------------------------------------------------

def jsonl_lines(f: BinaryIO, task_type: str) -> Iterator[Parsed | Problem]:
    """One record or problem per non-blank line, in file order (a record may be unlabeled:
    see `Parsed.labeled`)."""
    if task_type == "semantic":
        raise FileError("AutoML JSON Lines has no semantic masks; import a COCO file instead")
    number = 0
    for chunk in f:
        # Splitting each chunk again numbers lines as bytes.splitlines does (a lone \r ends one too).
        for line in chunk.splitlines():
            number += 1
            if line.strip():
                yield _jsonl_line(number, line, task_type)


def _jsonl_line(number: int, line: bytes, task_type: str) -> Parsed | Problem:
    where = f"line {number}"
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Problem(where, f"not valid JSON: {exc}", (LINES, number))
    if not isinstance(obj, dict) or not isinstance(obj.get("image_url"), str):
        return Problem(where, 'needs an "image_url"', (LINES, number))
    record = Parsed(where, obj["image_url"])
    try:
        _automl_label(record, obj.get("label"), task_type)
    except ValueError as exc:
        return Problem(where, str(exc), (LINES, number))
    return record


def labeled(record: Parsed) -> bool:
    """Whether a JSON Lines record says anything (an unlabeled line is skipped)."""
    return bool(record.classes or record.shapes or record.empty)


def _jsonl(data: bytes, task_type: str) -> ParsedFile:
    out = ParsedFile([], [], 0, {})
    for entry in jsonl_lines(io.BytesIO(data), task_type):
        out.total += 1
        if isinstance(entry, Problem):
            out.problems.append(entry)
            continue
        for path in entry.label_paths():
            out.label_positions.setdefault(path, entry.position)
        if labeled(entry):
            out.records.append(entry)
    return out


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("labels must be non-empty strings")
    return "/".join(part.strip() for part in value.strip().split("/"))


def _automl_label(record: Parsed, label: Any, task_type: str) -> None:
    if label is None:
        return  # not labeled (e.g. exported while in review)
    if task_type == "multiclass":
        if isinstance(label, list) and len(label) == 1:
            label = label[0]
        record.classes = [_path(label)]
        return
    if not isinstance(label, list):
        raise ValueError('"label" must be a list')
    if task_type == "multilabel":
        record.classes = list(dict.fromkeys(_path(v) for v in label))
        record.empty = not record.classes
        return
    record.empty = not label
    for j, obj in enumerate(label):
        if not isinstance(obj, dict):
            raise ValueError(f"label[{j}] must be an object")
        path = _path(obj.get("label"))
        if task_type == "bbox":
            corners: list[Any] = [obj.get(k) for k in ("topX", "topY", "bottomX", "bottomY")]
            if not all(_number(v) for v in corners):
                raise ValueError(f"label[{j}] needs numeric topX, topY, bottomX, bottomY")
            x0, y0, x1, y1 = (_unit(float(v), EDGE_SLACK) for v in corners)
            if x1 <= x0 or y1 <= y0:
                raise ValueError(f"label[{j}]: bottomX/bottomY must exceed topX/topY")
            record.shapes.append({"kind": "box", "label": path, "x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0})
        else:
            rings = obj.get("polygon")
            if not isinstance(rings, list) or not rings:
                raise ValueError(f'label[{j}] needs "polygon": [[x0, y0, x1, y1, ...]]')
            for ring in rings:
                if not (isinstance(ring, list) and len(ring) >= 6 and len(ring) % 2 == 0
                        and all(_number(v) for v in ring)):
                    raise ValueError(f"label[{j}]: each polygon needs at least 3 points")
                record.shapes.append({"kind": "polygon", "label": path,
                                      "points": [_unit(float(v), EDGE_SLACK) for v in ring]})
