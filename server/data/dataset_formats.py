"""Reading labeled datasets made elsewhere (or exported here): COCO JSON and Azure ML AutoML
JSON Lines, into one record per image with normalized geometry and labels named by path.
Pure: no I/O beyond the parsed bytes; label and item resolution happen in the caller.

Every problem is reported with its position (`images[3]`, `annotations[17]`,
`categories[2]`, `line 5`) so the caller can refuse the file or import the rest.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Kind = Literal["coco", "jsonl"]
# A shape may overshoot the image by this much (pixels) from rounding; it is clamped.
EDGE_SLACK_PX = 0.5
EDGE_SLACK = 1e-6


class FileError(ValueError):
    """The file as a whole cannot be read (not JSON, wrong top-level shape)."""


@dataclass(frozen=True)
class Problem:
    position: str
    message: str


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

def _coco(data: bytes, task_type: str) -> ParsedFile:
    doc, annotations = _coco_document(data)
    problems: list[Problem] = []
    label_positions: dict[str, str] = {}
    categories = _coco_categories(doc["categories"], problems, label_positions)
    images = _coco_images(doc["images"], problems)
    bad_images = _coco_annotations(annotations, images, categories, task_type, problems)
    records = _coco_records(images, bad_images, task_type, problems)
    return ParsedFile(records, problems, len(doc["images"]), label_positions)


def _coco_document(data: bytes) -> tuple[dict[str, Any], list[Any]]:
    """The parsed file and its annotations; FileError unless it has a COCO file's shape."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FileError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "categories")):
        raise FileError('a COCO file is an object with "images" and "categories" lists')
    annotations = doc.get("annotations", [])
    if not isinstance(annotations, list):
        raise FileError('"annotations" must be a list')
    return doc, annotations


def _coco_categories(entries: list[Any], problems: list[Problem],
                     label_positions: dict[str, str]) -> dict[Any, str]:
    """Label paths by category id."""
    categories: dict[Any, str] = {}
    for i, cat in enumerate(entries):
        where = f"categories[{i}]"
        name = cat.get("name") if isinstance(cat, dict) else None
        if not isinstance(name, str) or not name.strip() or _id(cat.get("id")) is None:
            problems.append(Problem(where, 'needs an "id" and a non-empty "name"'))
            continue
        path = "/".join(part.strip() for part in name.strip().split("/"))
        categories[cat["id"]] = path
        label_positions.setdefault(path, where)
    return categories


def _coco_images(entries: list[Any], problems: list[Problem]) -> dict[Any, Parsed]:
    """An empty record per image id, to be filled by its annotations."""
    images: dict[Any, Parsed] = {}
    for i, img in enumerate(entries):
        where = f"images[{i}]"
        named = isinstance(img, dict) and isinstance(img.get("file_name"), str)
        if not named or _id(img.get("id")) is None:
            problems.append(Problem(where, 'needs an "id" and a "file_name"'))
            continue
        if img["id"] in images:
            problems.append(Problem(where, f"image id {img['id']!r} appears twice"))
            continue
        w, h = img.get("width"), img.get("height")
        sized = isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0
        images[img["id"]] = Parsed(f"{where} ({img['file_name']})", img["file_name"],
                                   w if sized else None, h if sized else None, empty=True)
    return images


def _coco_annotations(annotations: list[Any], images: dict[Any, Parsed],
                      categories: dict[Any, str], task_type: str,
                      problems: list[Problem]) -> set[Any]:
    """Add each annotation to its image's record; return the ids of images with a bad one."""
    bad_images: set[Any] = set()
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            problems.append(Problem(where, "must be an object"))
            continue
        record = images.get(_id(ann.get("image_id")))
        if record is None:
            problems.append(Problem(where, f"image_id {ann.get('image_id')!r} is not in images"))
            continue
        category = categories.get(_id(ann.get("category_id")))
        if category is None:
            problems.append(Problem(where, f"category_id {ann.get('category_id')!r} is not in categories"))
            bad_images.add(_id(ann.get("image_id")))
            continue
        try:
            _coco_annotation(record, ann, category, task_type)
        except ValueError as exc:
            problems.append(Problem(where, f"{exc} (image {record.image!r})"))
            bad_images.add(_id(ann.get("image_id")))
    return bad_images


def _coco_records(images: dict[Any, Parsed], bad_images: set[Any], task_type: str,
                  problems: list[Problem]) -> list[Parsed]:
    records = []
    for image_id, record in images.items():
        if image_id in bad_images:
            continue  # its other annotations alone would be a wrong label
        if task_type == "multiclass" and len(set(record.classes)) > 1:
            problems.append(Problem(record.position, "a multiclass image needs exactly one class; "
                                                     f"found {', '.join(sorted(set(record.classes)))}"))
            continue
        record.classes = list(dict.fromkeys(record.classes))
        records.append(record)
    return records


def _coco_annotation(record: Parsed, ann: dict[str, Any], path: str, task_type: str) -> None:
    record.empty = False
    if task_type in ("multiclass", "multilabel"):
        record.classes.append(path)
        return
    w, h = record.width, record.height
    if not (w and h):
        raise ValueError("its image has no width and height")
    if task_type == "bbox":
        box = ann.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
            raise ValueError('"bbox" must be [x, y, width, height]')
        x, y, bw, bh = box
        if bw <= 0 or bh <= 0:
            raise ValueError("box width and height must be positive")
        x0, y0 = _unit(x / w, EDGE_SLACK_PX / w), _unit(y / h, EDGE_SLACK_PX / h)
        x1, y1 = _unit((x + bw) / w, EDGE_SLACK_PX / w), _unit((y + bh) / h, EDGE_SLACK_PX / h)
        record.shapes.append({"kind": "box", "label": path, "x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0})
        return
    seg = ann.get("segmentation")
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

def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            yield number, line


def _jsonl(data: bytes, task_type: str) -> ParsedFile:
    records: list[Parsed] = []
    problems: list[Problem] = []
    label_positions: dict[str, str] = {}
    total = 0
    for number, line in _lines(data):
        total += 1
        where = f"line {number}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append(Problem(where, f"not valid JSON: {exc}"))
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("image_url"), str):
            problems.append(Problem(where, 'needs an "image_url"'))
            continue
        record = Parsed(where, obj["image_url"])
        try:
            _automl_label(record, obj.get("label"), task_type)
        except ValueError as exc:
            problems.append(Problem(where, str(exc)))
            continue
        for path in record.label_paths():
            label_positions.setdefault(path, where)
        if record.classes or record.shapes or record.empty:
            records.append(record)
    return ParsedFile(records, problems, total, label_positions)


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
