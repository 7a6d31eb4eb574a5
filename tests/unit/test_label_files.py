"""Reading COCO and AutoML JSON Lines files: positions of problems, normalization, clamping."""

from __future__ import annotations

import json

import pytest

from server.data.dataset_formats import FileError, detect, parse


def test_detect_format() -> None:
    assert detect("a.JSON", None) == "coco" and detect("x.jsonl", None) == "jsonl"
    assert detect("x.txt", "jsonl") == "jsonl"
    with pytest.raises(FileError):
        detect("x.txt", None)


def test_coco_boxes_are_normalized_and_clamped_within_half_a_pixel() -> None:
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 50}],
           "categories": [{"id": 3, "name": " animal / cat "}],
           "annotations": [{"image_id": 1, "category_id": 3, "bbox": [-0.4, 10, 100.7, 20]}]}
    got = parse(json.dumps(doc).encode(), "coco", "bbox")
    assert got.problems == [] and got.total == 1
    shape = got.records[0].shapes[0]
    assert shape["label"] == "animal/cat" and shape["x"] == 0 and shape["w"] == 1 and shape["y"] == 0.2


def test_coco_problems_name_their_position() -> None:
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10},
                      {"id": 1, "file_name": "b"}],
           "categories": [{"id": 1, "name": "x"}, {"name": ""}],
           "annotations": [{"image_id": 1, "category_id": 1, "segmentation": {"counts": "x", "size": [1, 1]}},
                           {"image_id": 1, "category_id": 2}, "no"]}
    got = parse(json.dumps(doc).encode(), "coco", "polygon")
    assert {p.position for p in got.problems} == {
        "categories[1]", "images[1]", "annotations[0]", "annotations[1]", "annotations[2]"}
    assert got.records == []  # a.png's annotations were bad, so it is not imported half-labeled


def test_multiclass_needs_one_class_per_image() -> None:
    doc = {"images": [{"id": 1, "file_name": "a.png"}],
           "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}],
           "annotations": [{"image_id": 1, "category_id": 1}, {"image_id": 1, "category_id": 2}]}
    got = parse(json.dumps(doc).encode(), "coco", "multiclass")
    assert got.records == [] and "exactly one class" in got.problems[0].message


def test_automl_lines() -> None:
    lines = "\n".join([
        json.dumps({"image_url": "a.png", "label": [{"label": "car", "topX": 0.1, "topY": 0.2,
                                                      "bottomX": 0.5, "bottomY": 0.6, "isCrowd": 0}]}),
        "",
        json.dumps({"image_url": "b.png", "label": [{"label": "car", "topX": 0.5, "topY": 0.2,
                                                      "bottomX": 0.4, "bottomY": 0.6}]}),
        json.dumps({"image_url": "c.png", "label": []}),
        json.dumps({"image_url": "d.png", "label": None}),
    ]).encode()
    got = parse(lines, "jsonl", "bbox")
    assert [p.position for p in got.problems] == ["line 3"]
    assert [r.image for r in got.records] == ["a.png", "c.png"] and got.records[1].empty
    assert got.records[0].shapes[0]["w"] == pytest.approx(0.4) and got.total == 4
    with pytest.raises(FileError):
        parse(lines, "jsonl", "semantic")


def test_ids_that_are_not_ids_are_problems_not_crashes() -> None:
    doc = {"images": [{"id": [1], "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
           "categories": [{"id": {}, "name": "x"}, {"id": True, "name": "y"}],
           "annotations": [{"image_id": [1], "category_id": 1}, {"image_id": 2, "category_id": {"a": 1}}]}
    got = parse(json.dumps(doc).encode(), "coco", "multilabel")
    assert {p.position for p in got.problems} == {
        "images[0]", "categories[0]", "categories[1]", "annotations[0]", "annotations[1]"}
    assert got.records == []


def test_a_mask_larger_than_the_pixel_limit_is_refused_before_allocating() -> None:
    from server.data.dataset_formats import Parsed
    from server.data.label_import import build_annotation

    record = Parsed("images[0]", "a.png", 100_000, 100_000, masks=[("x", {"size": [1, 1], "counts": "1"})])
    with pytest.raises(ValueError, match="pixel limit"):
        build_annotation(record, {"x": 1}, "semantic", {"width": None, "height": None}, 100_000_000)
