"""Labeled-dataset import (COCO, AutoML JSON Lines): export -> import into a fresh project ->
export gives the same labels; bad records are reported by position and change nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.export_setup import MakeUser, export, image_folder, import_labels, labeled_project, new_project
from tests.integration.test_exports import ANIMALS, _mask, boxes, polygons


def _coco_labels(doc: dict[str, Any]) -> dict[str, set[tuple[Any, ...]]]:
    """file name -> {(category path, geometry rounded)} from a COCO export."""
    names = {c["id"]: c["name"] for c in doc["categories"]}
    files = {i["id"]: i["file_name"] for i in doc["images"]}
    out: dict[str, set[tuple[Any, ...]]] = {f: set() for f in files.values()}
    for a in doc["annotations"]:
        geo: Any = None
        if isinstance(a.get("segmentation"), dict):
            geo = a["segmentation"]["counts"]
        elif a.get("segmentation"):
            geo = tuple(round(v, 2) for v in a["segmentation"][0])
        elif a.get("bbox"):
            geo = tuple(round(v, 2) for v in a["bbox"])
        out[files[a["image_id"]]].add((names[a["category_id"]], geo))
    return out


def _jsonl_labels(body: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in body.decode().splitlines():
        x = json.loads(line)
        label = x["label"]
        if isinstance(label, list) and label and isinstance(label[0], dict):
            label = sorted(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in b.items()},
                                      sort_keys=True) for b in label)
        out[x["image_url"]] = label
    return out


def _fresh(make_user: MakeUser, folder: Path, task_type: str, tree: list[dict[str, Any]]) -> tuple[Any, int]:
    owner, pid, _ = new_project(make_user, folder, task_type, tree)
    return owner, pid


def test_coco_round_trip_for_boxes_polygons_and_masks(make_user: MakeUser, data_dir: Path) -> None:
    for task_type, annotate in (("bbox", boxes), ("polygon", polygons),
                                ("semantic", lambda k, w, h, labels: _mask(w, h, labels))):
        src = labeled_project(make_user, data_dir, task_type, ANIMALS, annotate, count=4)
        _, first = export(src.owner, src.pid, "coco")
        # A fresh project on the same files, with no labels at all: the import creates them.
        owner, pid = _fresh(make_user, src.folder, task_type, [{"name": "other"}])
        refused = import_labels(owner, pid, "coco.json", first)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "records_invalid"
        assert "create_labels=true" in refused.json()["error"]["details"]["errors"][0]["message"]
        r = import_labels(owner, pid, "coco.json", first, create_labels="true")
        assert r.status_code == 200, r.text
        assert r.json()["labeled"] == 4 and r.json()["errors"] == []
        created = set(r.json()["created_labels"])
        assert {"animal/cat", "car"} <= created <= {"animal/cat", "animal/dog", "car"}
        _, second = export(owner, pid, "coco")
        assert _coco_labels(json.loads(second)) == _coco_labels(json.loads(first)), task_type
        decided = json.loads(second)["images"][0]["colabel"]
        assert decided["decided_by"] == "import" and decided["decided_by_users"] == [owner.user["email"]]


def test_jsonl_round_trip_for_classes_boxes_and_polygons(make_user: MakeUser, data_dir: Path) -> None:
    def classes(key: str, w: int, h: int, labels: dict[str, int]) -> dict[str, Any]:
        two = key.endswith("1.png")
        return {"classes": [labels["animal/dog"], labels["car"]] if two else [labels["car"]]}

    for task_type, annotate in (("multilabel", classes), ("bbox", boxes), ("polygon", polygons)):
        src = labeled_project(make_user, data_dir, task_type, ANIMALS, annotate, count=4)
        _, first = export(src.owner, src.pid, "jsonl", image_url_prefix="https://example.org/c/")
        owner, pid = _fresh(make_user, src.folder, task_type, ANIMALS)  # labels exist already
        r = import_labels(owner, pid, "labels.jsonl", first)
        assert r.status_code == 200, r.text
        assert r.json()["labeled"] == 4 and r.json()["created_labels"] == []
        _, second = export(owner, pid, "jsonl", image_url_prefix="https://example.org/c/")
        assert _jsonl_labels(second) == _jsonl_labels(first), task_type


def test_bad_records_are_reported_by_position_and_change_nothing(make_user: MakeUser,
                                                                 data_dir: Path) -> None:
    src = labeled_project(make_user, data_dir, "bbox", ANIMALS, boxes, count=3)
    owner, pid = _fresh(make_user, src.folder, "bbox", ANIMALS)
    doc = {
        "images": [{"id": 1, "file_name": "img00.png", "width": 40, "height": 30},
                   {"id": 2, "file_name": "/somewhere/else/img01.png", "width": 50, "height": 36},
                   {"id": 3, "file_name": "nope.png", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "animal/cat"}, {"id": 2, "name": "a/b/c/d/e/f/g"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [40, 1, 30, 10]},   # past the edge
            {"id": 3, "image_id": 3, "category_id": 1, "bbox": [1, 1, 2, 2]},      # unknown image
            {"id": 4, "image_id": 9, "category_id": 1, "bbox": [1, 1, 2, 2]},      # unknown image id
        ],
    }
    r = import_labels(owner, pid, "coco.json", json.dumps(doc).encode())
    assert r.status_code == 422
    where = {e["position"] for e in r.json()["error"]["details"]["errors"]}
    assert where == {"annotations[1]", "annotations[3]", "images[2] (nope.png)"}
    items = owner.get(f"/api/v1/projects/{pid}/items").json()["items"]
    assert all(i["status"] == "unlabeled" for i in items)  # nothing changed

    partial = import_labels(owner, pid, "coco.json", json.dumps(doc).encode(), accept_partial="true")
    assert partial.status_code == 200 and partial.json()["labeled"] == 1
    items = owner.get(f"/api/v1/projects/{pid}/items").json()["items"]
    labeled = [i for i in items if i["status"] == "labeled"]
    assert [i["key"] for i in labeled] == ["img00.png"]

    # A 7-level label cannot exist: it is reported and never created, whatever the caller allows.
    doc["annotations"] = [{"id": 9, "image_id": 2, "category_id": 2, "bbox": [1, 1, 5, 5]}]
    deep = import_labels(owner, pid, "coco.json", json.dumps(doc).encode(), create_labels="true")
    assert deep.status_code == 422
    assert any("7 levels deep" in e["message"] for e in deep.json()["error"]["details"]["errors"])
    tree = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    assert [n["name"] for n in tree] == ["animal", "car"]
    deep_ok = import_labels(owner, pid, "coco.json", json.dumps(doc).encode(), create_labels="true",
                            accept_partial="true")
    assert deep_ok.status_code == 200 and deep_ok.json()["created_labels"] == []
    tree = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    assert [n["name"] for n in tree] == ["animal", "car"]


def test_bad_files_and_options(make_user: MakeUser, data_dir: Path) -> None:
    src = labeled_project(make_user, data_dir, "multiclass", ANIMALS,
                          lambda k, w, h, labels: {"classes": [labels["car"]]}, count=2)
    owner = src.owner
    for name, data, code in (("x.json", b"{not json", "bad_file"), ("x.json", b"[]", "bad_file"),
                             ("x.txt", b"{}", "bad_file")):
        r = import_labels(owner, src.pid, name, data)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
    none = owner.post(f"/api/v1/projects/{src.pid}/label-imports", files=[("format", (None, "coco"))])
    assert none.status_code == 422 and none.json()["error"]["code"] == "no_file"
    r = import_labels(owner, src.pid, "x.jsonl", b'{"image_url": "img00.png", "label": "car"}\n', wat="1")
    assert r.status_code == 422
    lines = (b'{"image_url": "img00.png", "label": "animal/cat"}\nnot json\n'
             b'{"image_url": "img01.png", "label": 5}\n')
    r = import_labels(owner, src.pid, "x.jsonl", lines)
    assert r.status_code == 422
    assert {e["position"] for e in r.json()["error"]["details"]["errors"]} == {"line 2", "line 3"}
    # The labeler decided these items; an import never overwrites a person's decision.
    r = import_labels(owner, src.pid, "x.jsonl", lines, accept_partial="true")
    assert r.status_code == 200 and r.json()["kept_human_labels"] == 1 and r.json()["labeled"] == 0
    pre = import_labels(owner, src.pid, "x.jsonl", lines, accept_partial="true", labels_as="prelabel")
    assert pre.status_code == 200 and pre.json()["prelabeled"] == 1
    assert src.labeler.post(f"/api/v1/projects/{src.pid}/label-imports").status_code == 403


def test_coco_lists_in_any_order_import_the_same(make_user: MakeUser, data_dir: Path) -> None:
    folder, sizes = image_folder(data_dir, 4)
    keys = sorted(sizes)
    images = [{"id": n, "file_name": k, "width": sizes[k][0], "height": sizes[k][1]}
              for n, k in enumerate(keys, start=1)]
    categories = [{"id": 7, "name": "animal/cat"}, {"id": 8, "name": "car"}]
    annotations = [{"id": n, "image_id": 1 + n % 4, "category_id": 7 + n % 2, "bbox": [1, 2, 5 + n, 6]}
                   for n in range(10)]
    annotations.append({"id": 99, "image_id": 42, "category_id": 7, "bbox": [1, 1, 2, 2]})
    images.append({"id": 2, "file_name": "elsewhere.png"})
    usual = {"images": images, "categories": categories, "annotations": annotations}
    unusual = {"annotations": annotations, "info": {"images": []}, "images": images,
               "categories": categories}
    got = []
    for doc in (usual, unusual):
        owner, pid = _fresh(make_user, folder, "bbox", ANIMALS)
        r = import_labels(owner, pid, "coco.json", json.dumps(doc).encode(), accept_partial="true")
        assert r.status_code == 200, r.text
        _, exported = export(owner, pid, "coco")
        got.append((r.json(), _coco_labels(json.loads(exported))))
    assert got[0] == got[1]
    response, labels = got[0]
    assert response["labeled"] == 4 and response["records"] == 5
    assert response["errors"] == [{"position": "images[4]", "message": "image id 2 appears twice"},
                                  {"position": "annotations[10]", "message": "image_id 42 is not in images"}]
    # Image 1 has annotations 0, 4 and 8 (cats); image 2 has 1, 5 and 9 (cars).
    assert len(labels[keys[0]]) == 3 and {c for c, _ in labels[keys[0]]} == {"animal/cat"}
    assert len(labels[keys[1]]) == 3 and {c for c, _ in labels[keys[1]]} == {"car"}
