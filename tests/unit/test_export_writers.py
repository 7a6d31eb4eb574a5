"""Export writers' fast paths against the plain computations they replace: vectorized
rounding, COCO boxes, VOC XML as text; batches read ahead; the collector relaxed during exports."""

from __future__ import annotations

import asyncio
import gc
import json
import posixpath
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from server.exports import geometry, source
from server.exports.coco import CocoWriter
from server.exports.source import Filters, Label, LabelTable, RawAnnotation, Record
from server.exports.voc import VocWriter
from server.exports.writer import Context, relaxed_gc

LABELS = LabelTable([Label(3, "animal"), Label(5, "animal/cat & <dog>"), Label(9, "car")])


def record(item_id: int, final: dict[str, Any] | None, key: str = "a/img.png",
           raw: list[RawAnnotation] | None = None) -> Record:
    return Record(item_id, key, 640, 480, "labeled", final, "single", ["a@x.test"], 0.75, None, raw or [])


def test_rounded_is_python_round_bit_for_bit() -> None:
    rng = random.Random(5)
    values = ([rng.uniform(-1e4, 1e4) for _ in range(20000)] + [k / 2000 for k in range(-4000, 4000)]
              + [round(rng.random(), 6) * rng.randint(1, 5000) for _ in range(20000)]
              + [0.0, -0.0, -0.0004, 2.675, 1.0005, 1e300, -1e300, float("inf"), float("-inf")])
    for digits in (3, 4, 9):
        got = geometry.rounded(np.array(values), digits).tolist()
        assert [repr(v) for v in got] == [repr(round(v, digits)) for v in values]


def _coco_annotations(writer_input: list[Record], tmp_path: Path, raw: bool = False) -> dict[str, Any]:
    ctx = Context("p", "bbox", LABELS, Filters(raw_annotations=raw), "")
    writer = CocoWriter(tmp_path / "coco.json", ctx)
    half = len(writer_input) // 2
    writer.write(writer_input[:half])
    writer.write(writer_input[half:])
    writer.close()
    doc: dict[str, Any] = json.loads((tmp_path / "coco.json").read_bytes())
    return doc


def _plain_box(image_id: int, s: dict[str, Any]) -> dict[str, Any]:
    bbox = geometry.box_pixels(s, 640, 480)
    return {"image_id": image_id, "category_id": s["label"], "bbox": bbox,
            "area": round(bbox[2] * bbox[3], geometry.DIGITS), "iscrowd": 0}


def test_coco_boxes_match_the_plain_computation_in_order(tmp_path: Path) -> None:
    rng = random.Random(2)
    records = []
    for i in range(1, 41):
        shapes: list[dict[str, Any]] = [
            {"kind": "box", "label": 5, "x": round(rng.random() / 2, 6), "y": round(rng.random() / 2, 6),
             "w": round(rng.random() / 2, 6), "h": round(rng.random() / 2, 6)} for _ in range(i % 4)]
        if i % 5 == 0:  # integers, as JSON writes 0 and 1, keep integer results
            shapes.append({"kind": "box", "label": 9, "x": 0, "y": 0, "w": 1, "h": 0.5})
        if i % 7 == 0:
            shapes.insert(0, {"kind": "polygon", "label": 3, "points": [0.1, 0.1, 0.6, 0.15, 0.4, 0.7]})
        raw = [RawAnnotation("b@x.test", {"shapes": shapes[:1]}, datetime(2024, 1, 2, tzinfo=UTC))]
        records.append(record(i, {"shapes": shapes}, raw=raw))
    doc = _coco_annotations(records, tmp_path, raw=True)
    expected, expected_raw, number = [], [], 1
    for r in records:
        for data, out in ((r.final, expected), *((a.data, expected_raw) for a in r.raw)):
            assert data is not None
            for s in data["shapes"]:
                if s["kind"] == "box":
                    row = _plain_box(r.item_id, s)
                else:
                    flat = geometry.polygon_pixels(s["points"], 640, 480)
                    row = {"image_id": r.item_id, "category_id": s["label"], "segmentation": [flat],
                           "bbox": geometry.polygon_bbox(flat),
                           "area": round(geometry.polygon_area(flat), geometry.DIGITS), "iscrowd": 0}
                row["id"] = number
                number += 1
                out.append(row if out is expected else {**row, "labeler": "b@x.test"})
    assert doc["annotations"] == expected
    assert [json.dumps(a) for a in doc["annotations"]] == [json.dumps(a) for a in expected]  # 0 stays 0
    assert doc["colabel_raw_annotations"] == expected_raw
    assert [i["id"] for i in doc["images"]] == list(range(1, 41))


def _voc_reference(r: Record) -> bytes:
    """The XML as an ElementTree tree writes it."""
    def sub(parent: ET.Element, tag: str, text: str | int) -> ET.Element:
        node = ET.SubElement(parent, tag)
        node.text = str(text)
        return node

    assert r.width and r.height and r.final is not None
    root = ET.Element("annotation")
    folder, name = posixpath.split(r.key)
    sub(root, "folder", folder)
    sub(root, "filename", name)
    sub(root, "path", r.key)
    sub(sub(root, "source", ""), "database", "Colabel")
    size = ET.SubElement(root, "size")
    sub(size, "width", r.width)
    sub(size, "height", r.height)
    sub(size, "depth", 3)
    sub(root, "segmented", 0)
    for s in r.final.get("shapes", []):
        obj = ET.SubElement(root, "object")
        sub(obj, "name", LABELS.path(s["label"]))
        sub(obj, "pose", "Unspecified")
        sub(obj, "truncated", 0)
        sub(obj, "difficult", 0)
        box = ET.SubElement(obj, "bndbox")
        x0, y0 = round(s["x"] * r.width), round(s["y"] * r.height)
        x1, y1 = round((s["x"] + s["w"]) * r.width), round((s["y"] + s["h"]) * r.height)
        sub(box, "xmin", x0 + 1)
        sub(box, "ymin", y0 + 1)
        sub(box, "xmax", max(x1, x0 + 1))
        sub(box, "ymax", max(y1, y0 + 1))
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


@pytest.mark.parametrize("key", ["img.png", "a/b & <c>/café.png"])
def test_voc_xml_is_what_elementtree_writes(key: str, tmp_path: Path) -> None:
    writer = VocWriter(tmp_path / "voc.zip", Context("p", "bbox", LABELS, Filters(), ""))
    shapes = [{"kind": "box", "label": 5, "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.0001},
              {"kind": "box", "label": 9, "x": 0, "y": 0, "w": 1, "h": 1}]
    for final in ({"shapes": shapes}, {"shapes": []}):
        r = record(1, final, key)
        assert writer._xml(r) == _voc_reference(r)
    writer.close()


async def _numbers(count: int, fail_at: int | None = None) -> AsyncIterator[list[Record]]:
    for i in range(count):
        if i == fail_at:
            raise RuntimeError("read failed")
        await asyncio.sleep(0)
        yield [record(i, None)]


async def test_read_ahead_keeps_order_and_raises_the_readers_error() -> None:
    got = [b[0].item_id async for b in source.read_ahead(_numbers(5))]
    assert got == [0, 1, 2, 3, 4]
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="read failed"):
        async for batch in source.read_ahead(_numbers(5, fail_at=3)):
            seen.append(batch[0].item_id)
    assert seen == [0, 1, 2]


def test_relaxed_gc_is_restored_by_the_last_export() -> None:
    before = gc.get_threshold()
    with relaxed_gc():
        with relaxed_gc():
            assert gc.get_threshold()[0] >= 50_000
        assert gc.get_threshold()[0] >= 50_000
    assert gc.get_threshold() == before
