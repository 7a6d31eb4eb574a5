"""Exports: COCO loads in pycocotools and scores AP 1.0 against itself; JSON Lines, CSV,
masks, VOC and YOLO carry the labels; filters, provenance, Range downloads and errors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import websockets
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from collab.schema import rle_encode
from server.services import Services
from tests.export_setup import MakeUser, export, labeled_project, new_project
from tests.infra import unique

ANIMALS = [{"name": "animal", "children": [{"name": "cat"}, {"name": "dog"}]}, {"name": "car"}]


def boxes(key: str, w: int, h: int, labels: dict[str, int]) -> dict[str, Any]:
    i = int(key.rsplit("img", 1)[1][:2])
    shapes = [{"id": "a", "kind": "box", "label": labels["animal/cat"],
               "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4}]
    if i % 2:  # a dog overlapping the cat, and a car
        shapes.append({"id": "b", "kind": "box", "label": labels["animal/dog"],
                       "x": 0.2, "y": 0.25, "w": 0.3, "h": 0.5})
        shapes.append({"id": "c", "kind": "box", "label": labels["car"],
                       "x": 0.5, "y": 0.5, "w": 0.5, "h": 0.5})
    return {"shapes": shapes}


def polygons(key: str, w: int, h: int, labels: dict[str, int]) -> dict[str, Any]:
    i = int(key.rsplit("img", 1)[1][:2])
    shapes = [{"id": "p", "kind": "polygon", "label": labels["animal/cat"],
               "points": [0.1, 0.1, 0.6, 0.15, 0.4, 0.7]}]
    if i % 2:
        shapes.append({"id": "q", "kind": "polygon", "label": labels["car"],
                       "points": [0.5, 0.5, 0.9, 0.5, 0.9, 0.9, 0.5, 0.9]})
    return {"shapes": shapes}


def _coco_eval(path: Path, iou_type: str) -> float:
    gt = COCO(str(path))
    results = [{**a, "score": 1.0} for a in gt.dataset["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_coco_boxes_load_in_pycocotools_and_score_ap_one(make_user: MakeUser, data_dir: Path,
                                                          tmp_path: Path) -> None:
    p = labeled_project(make_user, data_dir, "bbox", ANIMALS, boxes)
    meta, body = export(p.owner, p.pid, "coco")
    assert meta["done"] == meta["total"] == 6 and meta["warnings"] == []
    path = tmp_path / "coco.json"
    path.write_bytes(body)
    doc = json.loads(body)
    assert {c["name"]: c["id"] for c in doc["categories"]} == p.labels  # full paths, the labels' own ids
    assert {c["name"]: c["supercategory"] for c in doc["categories"]}["animal/dog"] == "animal"
    assert {i["file_name"]: (i["width"], i["height"]) for i in doc["images"]} == p.sizes
    first = next(i for i in doc["images"] if i["file_name"] == "img00.png")
    assert first["colabel"]["decided_by"] == "single"
    assert first["colabel"]["decided_by_users"] == [p.labeler.user["email"]]  # type: ignore[index]
    cat = next(a for a in doc["annotations"] if a["image_id"] == first["id"])
    assert cat["bbox"] == [4.0, 6.0, 12.0, 12.0] and cat["area"] == 144.0 and cat["iscrowd"] == 0
    assert len(doc["annotations"]) == 3 * 3 + 3
    assert _coco_eval(path, "bbox") == 1.0


def test_coco_polygons_score_ap_one(make_user: MakeUser, data_dir: Path, tmp_path: Path) -> None:
    p = labeled_project(make_user, data_dir, "polygon", ANIMALS, polygons)
    _, body = export(p.owner, p.pid, "coco")
    path = tmp_path / "coco.json"
    path.write_bytes(body)
    doc = json.loads(body)
    first = next(i for i in doc["images"] if i["file_name"] == "img00.png")
    tri = next(a for a in doc["annotations"] if a["image_id"] == first["id"])
    assert tri["segmentation"] == [[4.0, 3.0, 24.0, 4.5, 16.0, 21.0]]
    assert tri["bbox"] == [4.0, 3.0, 20.0, 18.0]
    assert tri["area"] == pytest.approx(abs((24 - 4) * (21 - 3) - (16 - 4) * (4.5 - 3)) / 2)
    assert _coco_eval(path, "segm") == 1.0


def test_jsonl_is_the_automl_schema(make_user: MakeUser, data_dir: Path) -> None:
    p = labeled_project(make_user, data_dir, "bbox", ANIMALS, boxes)
    _, body = export(p.owner, p.pid, "jsonl", image_url_prefix="azureml://datastores/ws/paths/")
    lines = [json.loads(x) for x in body.decode().splitlines()]
    assert len(lines) == 6
    one = next(x for x in lines if x["image_url"] == "azureml://datastores/ws/paths/img01.png")
    assert one["image_details"] == {"format": "png", "width": "50px", "height": "36px"}
    got = {(b["label"], b["topX"], b["topY"], b["bottomX"], b["bottomY"], b["isCrowd"]) for b in one["label"]}
    assert got == {("animal/cat", 0.1, 0.2, 0.4, 0.6, 0), ("animal/dog", 0.2, 0.25, 0.5, 0.75, 0),
                   ("car", 0.5, 0.5, 1.0, 1.0, 0)}
    assert one["colabel"]["decided_by"] == "single"


def test_csv_keeps_unicode_and_commas_in_label_names(make_user: MakeUser, data_dir: Path) -> None:
    tree = [{"name": "Café, crème"}, {"name": "日本", "children": [{"name": 'say "hi", ok'}]}]

    def pick(key: str, w: int, h: int, labels: dict[str, int]) -> dict[str, Any]:
        name = "Café, crème" if key.endswith(("0.png", "2.png", "4.png")) else '日本/say "hi", ok'
        return {"classes": [labels[name]]}

    p = labeled_project(make_user, data_dir, "multiclass", tree, pick)
    _, body = export(p.owner, p.pid, "csv")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    assert len(rows) == 6
    by_image = {r["image"]: r for r in rows}
    assert by_image["img00.png"]["label"] == "Café, crème"
    assert by_image["img01.png"]["label"] == '日本/say "hi", ok'
    assert by_image["img01.png"]["decided_by"] == "single" and by_image["img01.png"]["confidence"] == "1.0"
    assert json.loads(by_image["img01.png"]["decided_by_users"]) == [p.labeler.user["email"]]  # type: ignore[index]


def test_multilabel_csv_lists_labels_as_json(make_user: MakeUser, data_dir: Path) -> None:
    def both(key: str, w: int, h: int, labels: dict[str, int]) -> dict[str, Any]:
        return {"classes": [labels["animal/cat"], labels["car"]]}

    p = labeled_project(make_user, data_dir, "multilabel", ANIMALS, both, count=2)
    _, body = export(p.owner, p.pid, "csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [json.loads(r["labels"]) for r in rows] == [["animal/cat", "car"]] * 2


def _mask(w: int, h: int, labels: dict[str, int]) -> dict[str, Any]:
    """Left third cat, bottom-right quarter car, on a 32-pixel tile grid."""
    values = np.zeros((h, w), dtype=np.uint32)
    values[:, : w // 3] = labels["animal/cat"]
    values[h // 2:, w // 2:] = labels["car"]
    tiles = {}
    for ty in range(0, (h + 31) // 32):
        for tx in range(0, (w + 31) // 32):
            tile = np.zeros((32, 32), dtype=np.uint32)
            part = values[ty * 32:(ty + 1) * 32, tx * 32:(tx + 1) * 32]
            tile[:part.shape[0], :part.shape[1]] = part
            tiles[f"{tx},{ty}"] = base64.b64encode(rle_encode(tile)).decode()
    return {"mask": {"tile_size": 32, "tiles": tiles}}


def test_semantic_masks_as_coco_rle_and_indexed_pngs(make_user: MakeUser, data_dir: Path,
                                                     tmp_path: Path) -> None:
    p = labeled_project(make_user, data_dir, "semantic", ANIMALS,
                        lambda key, w, h, labels: _mask(w, h, labels), count=3)
    _, body = export(p.owner, p.pid, "coco")
    path = tmp_path / "coco.json"
    path.write_bytes(body)
    gt = COCO(str(path))
    img = next(i for i in gt.dataset["images"] if i["file_name"] == "img01.png")
    w, h = img["width"], img["height"]
    anns = {a["category_id"]: a for a in gt.dataset["annotations"] if a["image_id"] == img["id"]}
    assert set(anns) == {p.labels["animal/cat"], p.labels["car"]}
    car = gt.annToMask(anns[p.labels["car"]])
    expected = np.zeros((h, w), dtype=np.uint8)
    expected[h // 2:, w // 2:] = 1
    assert (car == expected).all() and anns[p.labels["car"]]["area"] == expected.sum()

    _, zipped = export(p.owner, p.pid, "masks")
    with zipfile.ZipFile(io.BytesIO(zipped)) as z:
        table = list(csv.DictReader(io.StringIO(z.read("classes.csv").decode())))
        index = {r["path"]: int(r["index"]) for r in table if r["path"]}
        png = Image.open(io.BytesIO(z.read("masks/img01.png")))
        assert png.mode == "P" and png.size == (w, h)
        arr = np.asarray(png)
        assert arr[0, 0] == index["animal/cat"] and arr[-1, -1] == index["car"] and arr[0, -1] == 0
        assert "masks/sub/img02.png" in z.namelist()
        prov = [json.loads(x) for x in z.read("provenance.jsonl").decode().splitlines()]
        assert {x["image"] for x in prov} == set(p.sizes)


def test_voc_and_yolo(make_user: MakeUser, data_dir: Path) -> None:
    p = labeled_project(make_user, data_dir, "bbox", ANIMALS, boxes)
    _, zipped = export(p.owner, p.pid, "voc")
    with zipfile.ZipFile(io.BytesIO(zipped)) as z:
        root = ET.fromstring(z.read("Annotations/img00.xml"))
        assert root.findtext("filename") == "img00.png" and root.findtext("size/width") == "40"
        obj = root.find("object")
        assert obj is not None and obj.findtext("name") == "animal/cat"
        corners = [obj.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
        assert corners == ["5", "7", "16", "18"]
        assert "Annotations/sub/img02.xml" in z.namelist()
        assert z.read("labels.txt").decode().splitlines() == ["animal", "animal/cat", "animal/dog", "car"]
    _, zipped = export(p.owner, p.pid, "yolo")
    with zipfile.ZipFile(io.BytesIO(zipped)) as z:
        names = z.read("classes.txt").decode().splitlines()
        lines = z.read("labels/img01.txt").decode().splitlines()
        assert len(lines) == 3
        cls, cx, cy, bw, bh = lines[0].split()
        assert names[int(cls)] == "animal/cat"
        assert [float(v) for v in (cx, cy, bw, bh)] == pytest.approx([0.25, 0.4, 0.3, 0.4])
        assert 'nc: 4' in z.read("data.yaml").decode()


def test_filters_and_provenance(make_user: MakeUser, data_dir: Path) -> None:
    folder = data_dir / "datasets" / unique("prov")
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (10, 10)).save(folder / f"{i}.png")
    owner, pid, labels = new_project(make_user, folder, "multiclass", ANIMALS,
                                     consensus={"enabled": True, "min": 2, "max": 2})
    a, b = make_user("labeler"), make_user("labeler")
    for person in (a, b):
        owner.put(f"/api/v1/projects/{pid}/members", {"email": person.email, "role": "labeler"})
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    votes = {"0.png": ("car", "car"), "1.png": ("car", "animal/cat"), "2.png": ("animal", "car")}
    for n, person in enumerate((a, b)):
        for lease in person.post(f"/api/v1/projects/{pid}/tasks/next", {"count": 4}).json()["leases"]:
            vote = labels[votes[lease["item"]["key"]][n]]
            r = person.post(f"/api/v1/leases/{lease['lease_id']}/submit", {"annotation": {"classes": [vote]}})
            assert r.status_code == 200, r.text
    items = {i["key"]: i for i in owner.get(f"/api/v1/projects/{pid}/items").json()["items"]}
    decided = owner.post(f"/api/v1/projects/{pid}/items/{items['1.png']['id']}/decide",
                         {"annotation": {"classes": [labels["animal/cat"]]}})
    assert decided.status_code == 200, decided.text

    _, body = export(owner, pid, "jsonl")
    lines = {x["image_url"]: x for x in map(json.loads, body.decode().splitlines())}
    assert set(lines) == {"0.png", "1.png"}  # labeled only by default
    assert lines["0.png"]["label"] == "car" and lines["0.png"]["label_confidence"] == [1.0]
    assert lines["0.png"]["colabel"]["decided_by"] == "consensus"
    assert sorted(lines["0.png"]["colabel"]["decided_by_users"]) == sorted([a.user["email"], b.user["email"]])  # type: ignore[index]
    assert lines["1.png"]["colabel"]["decided_by"] == "reviewer"
    assert lines["1.png"]["colabel"]["decided_by_users"] == [owner.user["email"]]  # type: ignore[index]
    assert "raw_annotations" not in lines["0.png"]["colabel"]

    _, body = export(owner, pid, "jsonl", filters={"needs_review": True, "raw_annotations": True})
    lines = {x["image_url"]: x for x in map(json.loads, body.decode().splitlines())}
    assert set(lines) == {"0.png", "1.png", "2.png"}
    review = lines["2.png"]
    assert review["label"] is None and review["colabel"]["status"] == "needs_review"
    raw = {(r["labeler"], r["label"]) for r in review["colabel"]["raw_annotations"]}
    assert raw == {(a.user["email"], "animal"), (b.user["email"], "car")}  # type: ignore[index]

    _, body = export(owner, pid, "coco", filters={"needs_review": True, "raw_annotations": True})
    doc = json.loads(body)
    review_image = next(i for i in doc["images"] if i["file_name"] == "2.png")
    assert not [x for x in doc["annotations"] if x["image_id"] == review_image["id"]]
    assert len([x for x in doc["colabel_raw_annotations"] if x["image_id"] == review_image["id"]]) == 2

    _, body = export(owner, pid, "csv", filters={"raw_annotations": True})
    row = next(r for r in csv.DictReader(io.StringIO(body.decode())) if r["image"] == "1.png")
    assert {x["labeler"]: x["labels"] for x in json.loads(row["labeler_annotations"])} == {
        a.user["email"]: ["car"], b.user["email"]: ["animal/cat"]}  # type: ignore[index]


def test_downloads_support_ranges_and_errors_are_clear(make_user: MakeUser, data_dir: Path) -> None:
    p = labeled_project(make_user, data_dir, "bbox", ANIMALS, boxes, count=2)
    meta, body = export(p.owner, p.pid, "coco")
    assert meta["size_bytes"] == len(body)
    part = p.owner.get(meta["download_url"], headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == body[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{len(body)}"
    tail = p.owner.get(meta["download_url"], headers={"Range": f"bytes={len(body) - 5}-"})
    assert tail.status_code == 206 and tail.content == body[-5:]
    bad = p.owner.get(meta["download_url"], headers={"Range": f"bytes={len(body) + 10}-"})
    assert bad.status_code == 416
    full = p.owner.get(meta["download_url"])
    assert 'filename="' in full.headers["content-disposition"]
    assert full.headers["content-type"] == "application/json"

    wrong = p.owner.post(f"/api/v1/projects/{p.pid}/exports", {"format": "csv"})
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "format_unsupported"
    assert "coco" in wrong.json()["error"]["details"]["formats"]
    unknown = p.owner.post(f"/api/v1/projects/{p.pid}/exports", {"format": "xml"})
    assert unknown.status_code == 422
    extra = p.owner.post(f"/api/v1/projects/{p.pid}/exports", {"format": "coco", "filters": {"all": True}})
    assert extra.status_code == 422
    assert p.labeler.post(f"/api/v1/projects/{p.pid}/exports", {"format": "coco"}).status_code == 403
    assert p.labeler.get(meta["download_url"]).status_code == 403
    stranger = make_user("stranger")
    assert stranger.get(f"/api/v1/exports/{meta['id']}").status_code == 404

    listed = p.owner.get(f"/api/v1/projects/{p.pid}/exports").json()["exports"]
    assert listed[0]["id"] == meta["id"]
    assert p.owner.delete(f"/api/v1/exports/{meta['id']}").status_code == 204
    assert p.owner.get(meta["download_url"]).status_code == 404


async def test_download_of_an_unfinished_export_is_refused(make_user: MakeUser, data_dir: Path,
                                                          services: Services) -> None:
    p = labeled_project(make_user, data_dir, "bbox", ANIMALS, boxes, count=1)
    eid = await services.db.fetchval(
        "INSERT INTO exports (project_id, format, filters, created_by, status, error) "
        "VALUES ($1, 'coco', '{}'::jsonb, $2, 'failed', 'disk full') RETURNING id", p.pid, p.owner.id)
    r = p.owner.get(f"/api/v1/exports/{eid}/download")
    assert r.status_code == 409 and r.json()["error"]["code"] == "export_not_ready"
    assert p.owner.get(f"/api/v1/exports/{eid}").json()["export"]["error"] == "disk full"


async def test_export_progress_reaches_the_live_events(make_user: MakeUser, data_dir: Path,
                                                       server: str) -> None:
    p = await asyncio.to_thread(labeled_project, make_user, data_dir, "bbox", ANIMALS, boxes, count=2)
    token = p.owner.post("/api/v1/tokens", {"name": "ev"}).json()["token"]
    async with websockets.connect(f"{server.replace('http://', 'ws://')}/events/{p.pid}?token={token}") as ws:
        r = await asyncio.to_thread(p.owner.post, f"/api/v1/projects/{p.pid}/exports", {"format": "yolo"})
        eid = r.json()["export"]["id"]
        seen: list[dict[str, Any]] = []
        while not any(e["type"] == "export" and e["status"] in ("done", "failed") for e in seen):
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
    mine = [e for e in seen if e["type"] == "export"]
    assert {e["export_id"] for e in mine} == {eid}
    assert mine[0]["status"] == "running" and mine[0]["total"] == 2
    assert mine[-1]["status"] == "done" and mine[-1]["done"] == 2 and mine[-1]["warnings"] == []
