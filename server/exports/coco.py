"""COCO JSON: images, categories (the label tree flattened with full paths; ids are the
labels' own, stable across exports), annotations with pixel `bbox`, polygon `segmentation`,
`area` and `iscrowd`; semantic masks as one compressed RLE annotation per class.

Classification projects get annotations with only `category_id` (COCO has no image-level
class). Each image carries a `colabel` object saying how its label was decided and by
whom; with raw annotations on, every labeler's own annotations follow in
`colabel_raw_annotations` (same shape plus `labeler`), so `annotations` stays the final
label that evaluation tools read.

Written as a stream: images go straight to the file, annotations to a spill file that is
appended at the end, so memory holds one batch at a time.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from server.exports import geometry
from server.exports.source import Record
from server.exports.writer import Context, Warnings

NO_SIZE = "have no known size (not probed, or unreadable); their shapes were left out"


class CocoWriter:
    def __init__(self, path: Path, ctx: Context) -> None:
        self.ctx = ctx
        self.out = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.annotations: IO[bytes] = tempfile.TemporaryFile()
        self.raw: IO[bytes] | None = tempfile.TemporaryFile() if ctx.filters.raw_annotations else None
        self.next_id = 1
        self.first = {"images": True, "annotations": True, "raw": True}
        self.warnings = Warnings()
        now = datetime.now(UTC)
        info = {"description": ctx.project_name, "version": "1.0", "year": now.year,
                "contributor": "Colabel", "date_created": now.isoformat()}
        categories = [{"id": x.id, "name": x.path, "supercategory": x.path.rpartition("/")[0]}
                      for x in ctx.labels.labels]
        self.out.write(b'{"info":' + orjson.dumps(info) + b',"licenses":[],"categories":'
                       + orjson.dumps(categories) + b',"images":[')

    def write(self, records: list[Record]) -> None:
        images: list[dict[str, Any]] = []
        finals = _Annotations()
        raws = _Annotations()
        for r in records:
            images.append({"id": r.item_id, "file_name": r.key, "width": r.width, "height": r.height,
                           "colabel": r.provenance()})
            # Ids run through each image's final annotations, then its labelers' own.
            if r.final:
                self._annotations(finals, r, r.final, None)
            for a in r.raw:
                self._annotations(raws, r, a.data, a.labeler)
        self._append(self.out, "images", images)
        self._append(self.annotations, "annotations", finals.rows())
        if self.raw is not None:
            self._append(self.raw, "raw", raws.rows())

    def _append(self, fp: IO[bytes], part: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if not self.first[part]:
            fp.write(b",")
        self.first[part] = False
        fp.write(orjson.dumps(rows)[1:-1])

    def _annotations(self, out: _Annotations, r: Record, data: dict[str, Any], labeler: str | None) -> None:
        """Add one annotation's COCO annotations to `out`, numbering them."""
        for label in data.get("classes", []):
            out.add({"image_id": r.item_id, "category_id": label}, self._id(), labeler)
        shapes = data.get("shapes", [])
        mask = data.get("mask")
        if (shapes or (mask and mask.get("tiles"))) and not (r.width and r.height):
            self.warnings.add(NO_SIZE, r.key)
            shapes, mask = [], None
        w, h = r.width or 0, r.height or 0
        for s in shapes:
            if s["kind"] == "box":
                x, y, bw, bh = s["x"], s["y"], s["w"], s["h"]
                # Integers (JSON's 0 and 1) keep round()'s integer results: the slow path.
                if type(x) is type(y) is type(bw) is type(bh) is float:
                    out.box(r.item_id, s["label"], (x, y, bw, bh), (w, h), self._id(), labeler)
                    continue
                bbox = geometry.box_pixels(s, w, h)
                area = round(bbox[2] * bbox[3], geometry.DIGITS)
                out.add({"image_id": r.item_id, "category_id": s["label"], "bbox": bbox, "area": area,
                         "iscrowd": 0}, self._id(), labeler)
            else:
                flat = geometry.polygon_pixels(s["points"], w, h)
                out.add({"image_id": r.item_id, "category_id": s["label"], "segmentation": [flat],
                         "bbox": geometry.polygon_bbox(flat),
                         "area": round(geometry.polygon_area(flat), geometry.DIGITS), "iscrowd": 0},
                        self._id(), labeler)
        if mask and mask.get("tiles"):
            values = geometry.mask_from_tiles(mask, w, h)
            for label in (int(v) for v in np.unique(values) if v):
                rle = geometry.coco_rle(values == label)
                area, bbox = geometry.rle_area_bbox(rle)
                out.add({"image_id": r.item_id, "category_id": label, "segmentation": rle,
                         "bbox": bbox, "area": area, "iscrowd": 0}, self._id(), labeler)

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def close(self) -> list[str]:
        self.out.write(b'],"annotations":[')
        self.annotations.seek(0)
        shutil.copyfileobj(self.annotations, self.out, 1 << 20)
        self.annotations.close()
        self.out.write(b"]")
        if self.raw is not None:
            self.out.write(b',"colabel_raw_annotations":[')
            self.raw.seek(0)
            shutil.copyfileobj(self.raw, self.out, 1 << 20)
            self.raw.close()
            self.out.write(b"]")
        self.out.write(b"}")
        self.out.close()
        return self.warnings.sentences()


Box = tuple[float, float, float, float]


class _Annotations:
    """One batch's COCO annotations in id order. Boxes are kept as numbers and turned into
    pixels all at once (geometry.boxes_pixels) when the batch is written: per box, Python
    only copies four numbers and later fills in one dict."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any] | None] = []    # None: the next of the boxes
        self.heads: list[tuple[int, int, int, str | None]] = []  # image, category, id, labeler
        self.boxes: list[Box] = []
        self.sizes: list[tuple[int, int]] = []

    def add(self, annotation: dict[str, Any], number: int, labeler: str | None) -> None:
        annotation["id"] = number
        if labeler is not None:
            annotation["labeler"] = labeler
        self.items.append(annotation)

    def box(self, image_id: int, label: int, box: Box, size: tuple[int, int], number: int,
            labeler: str | None) -> None:
        self.items.append(None)
        self.heads.append((image_id, label, number, labeler))
        self.boxes.append(box)
        self.sizes.append(size)

    def rows(self) -> list[dict[str, Any]]:
        if not self.boxes:
            return self.items  # type: ignore[return-value]  # no placeholders without boxes
        pixels, areas = geometry.boxes_pixels(np.array(self.boxes, dtype=np.float64),
                                              np.array(self.sizes, dtype=np.float64))
        boxes = zip(self.heads, pixels.tolist(), areas.tolist(), strict=True)
        out: list[dict[str, Any]] = []
        for item in self.items:
            if item is not None:
                out.append(item)
                continue
            (image_id, label, number, labeler), bbox, area = next(boxes)
            a = {"image_id": image_id, "category_id": label, "bbox": bbox, "area": area,
                 "iscrowd": 0, "id": number}
            if labeler is not None:
                a["labeler"] = labeler
            out.append(a)
        return out
