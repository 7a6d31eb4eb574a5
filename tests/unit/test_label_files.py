"""Reading COCO and AutoML JSON Lines files: positions of problems, normalization, clamping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

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


async def test_streaming_readers_yield_every_entry_of_a_file_larger_than_a_batch(tmp_path: Path) -> None:
    from server.data.dataset_formats import CocoHead, coco_annotations, coco_images
    from server.data.label_import import BATCH
    from server.data.progress import batches_in_thread

    count = 2 * BATCH + 17
    doc = {"annotations": [{"image_id": i % 3, "category_id": 1, "bbox": [1, 2, 3, 4]} for i in range(count)],
           "images": [{"id": i, "file_name": f"{i}.png", "width": 10, "height": 10} for i in range(3)],
           "categories": [{"id": 1, "name": "x"}]}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(doc))
    head = CocoHead()

    def images() -> Iterator[object]:
        with path.open("rb") as f:
            yield from coco_images(f, head)

    def annotations() -> Iterator[object]:
        with path.open("rb") as f:
            yield from coco_annotations(f, head, "bbox")

    assert [len(b) async for b in batches_in_thread(images, BATCH)] == [3]
    assert head.categories == {1: "x"} and head.images == 3  # categories come last in this file
    sizes: list[int] = []
    seen: list[int] = []
    async for batch in batches_in_thread(annotations, BATCH):
        sizes.append(len(batch))
        seen += [a.index for a in batch]  # type: ignore[attr-defined]
    assert sizes == [BATCH, BATCH, 17] and seen == list(range(count))


async def test_a_reading_error_reaches_the_consumer_and_stops_the_thread() -> None:
    from server.data.progress import batches_in_thread

    def failing() -> Iterator[int]:
        yield from range(10)
        raise FileError("broken")

    got: list[int] = []
    with pytest.raises(FileError, match="broken"):
        async for batch in batches_in_thread(failing, 4):
            got += batch
    assert got == list(range(8))
    # Leaving early does not wait for the rest of an endless reader.
    async for _ in batches_in_thread(lambda: iter(int, 1), 4):
        break


def test_json_lines_are_numbered_as_a_whole_file_read_numbers_them() -> None:
    lines = b'{"image_url": "a.png", "label": "x"}\r\n\r\nbad\r{"image_url": "b.png", "label": "y"}'
    got = parse(lines, "jsonl", "multiclass")
    assert [r.position for r in got.records] == ["line 1", "line 4"]
    assert [p.position for p in got.problems] == ["line 3"] and got.total == 3


def test_problem_log_keeps_the_first_problems_in_file_order() -> None:
    from server.data.dataset_formats import Problem
    from server.data.label_import import MAX_REPORTED, ProblemLog

    log = ProblemLog()
    for i in reversed(range(3 * MAX_REPORTED)):
        log.append(Problem(f"annotations[{i}]", "bad", (2, i)))
    log.append(Problem("categories[0]", "bad", (0, 0)))
    reported = log.reported()
    assert log.found == 3 * MAX_REPORTED + 1 and len(reported) == MAX_REPORTED
    assert reported[0]["position"] == "categories[0]"
    assert reported[1]["position"] == "annotations[0]"
    assert reported[-1]["position"] == f"annotations[{MAX_REPORTED - 2}]"
