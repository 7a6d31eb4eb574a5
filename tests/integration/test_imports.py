"""Tabular imports with a column mapping, as final labels or prelabels."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import bind_folder
from tests.infra import Api, finished, unique

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]


def local_project(make_project: MakeProject, data_dir: Path, files: list[str],
                  **kw: Any) -> tuple[Api, int, Path]:
    owner, p = make_project(**kw)
    root = data_dir / "datasets" / unique("imp")
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    r = bind_folder(owner, p["id"], root, "nothing/**")
    assert r.ok and r.ingest["added"] == 0
    return owner, p["id"], root


def table(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def send(owner: Api, pid: int, data: bytes, name: str = "t.csv", **fields: Any) -> Any:
    form = {k: (json.dumps(v) if isinstance(v, dict) else str(v)) for k, v in fields.items()}
    return finished(owner, owner.post(f"/api/v1/projects/{pid}/imports", data=form,
                                      files=[("file", (name, data, "text/csv"))]))


def items(owner: Api, pid: int) -> dict[str, dict[str, Any]]:
    listing = owner.get(f"/api/v1/projects/{pid}/items", params={"limit": 1000}).json()["items"]
    return {i["key"]: owner.get(f"/api/v1/projects/{pid}/items/{i['id']}").json()["item"]
            for i in listing}


def label_ids(owner: Api, pid: int) -> dict[str, int]:
    out: dict[str, int] = {}

    def walk(nodes: list[dict[str, Any]]) -> None:
        for n in nodes:
            out[n["path"]] = n["id"]
            walk(n["children"])

    walk(owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"])
    return out


def test_classification_rows_become_final_labels(make_project: MakeProject, data_dir: Path) -> None:
    owner, pid, _ = local_project(make_project, data_dir, ["a.png", "b.png", "c/d.png"])
    data = table([{"img": "a.png", "label": "Animal/Cat", "conf": "0.9"},
                  {"img": "b.png", "label": "Dog", "conf": ""},
                  {"img": "c/d.png", "label": "", "conf": ""}])
    r = send(owner, pid, data, mapping={"image": "img", "category": "label", "confidence": "conf"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["rows"], body["imported"], body["labeled"], body["errors"]) == (3, 3, 2, [])
    ids = label_ids(owner, pid)
    got = items(owner, pid)
    assert got["a.png"]["final"] == {"classes": [ids["Animal/Cat"]]}
    assert got["a.png"]["status"] == "labeled" and got["a.png"]["decided_by"] == "imported"
    assert got["b.png"]["final"] == {"classes": [ids["Animal/Dog"]]}
    assert got["c/d.png"]["status"] == "unlabeled" and got["c/d.png"]["final"] is None
    tree = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    assert tree[0]["children"][0]["used"] is True  # Cat can no longer be deleted


def test_prelabels_keep_items_unlabeled(make_project: MakeProject, data_dir: Path) -> None:
    owner, pid, _ = local_project(make_project, data_dir, ["a.png"])
    r = send(owner, pid, table([{"img": "a.png", "label": "Color/Black", "conf": "0.7"}]),
             mapping={"image": "img", "category": "label", "confidence": "conf"},
             labels_as="prelabel")
    assert r.status_code == 200 and r.json()["prelabeled"] == 1
    item = items(owner, pid)["a.png"]
    assert item["status"] == "unlabeled" and item["final"] is None
    assert item["prelabel"] == {"classes": [label_ids(owner, pid)["Color/Black"]],
                                "confidence": 0.7}


def test_bad_rows_change_nothing_unless_partial_is_accepted(make_project: MakeProject,
                                                            data_dir: Path) -> None:
    owner, pid, _ = local_project(make_project, data_dir, ["a.png", "b.png"])
    data = table([{"img": "a.png", "label": "Animal/Cat"},
                  {"img": "missing.png", "label": "Animal/Cat"},
                  {"img": "b.png", "label": "Unicorn"},
                  {"img": "../../etc/passwd.png", "label": "Animal"},
                  {"img": "https://evil.example/x.png", "label": "Animal"}])
    r = send(owner, pid, data, mapping={"image": "img", "category": "label"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "rows_invalid"
    errors = r.json()["error"]["details"]["errors"]
    assert [e["row"] for e in errors] == [2, 3, 4, 5]
    assert errors[1]["column"] == "label" and "Unicorn" in errors[1]["message"]
    assert items(owner, pid) == {}
    r = send(owner, pid, data, mapping={"image": "img", "category": "label"}, accept_partial="true")
    assert r.status_code == 200 and r.json()["labeled"] == 1 and len(r.json()["errors"]) == 4
    assert list(items(owner, pid)) == ["a.png"]


def test_boxes_from_jsonl(make_project: MakeProject, data_dir: Path) -> None:
    owner, pid, _ = local_project(make_project, data_dir, ["a.png"], task_type="bbox")
    line = {"url": "a.png", "boxes": [{"label": "Animal/Dog", "topX": 0.1, "topY": 0.2,
                                        "bottomX": 0.5, "bottomY": 0.6}]}
    r = send(owner, pid, json.dumps(line).encode() + b"\n", name="t.jsonl",
             mapping={"image": "url", "category": "boxes"})
    assert r.status_code == 200, r.text
    shape = items(owner, pid)["a.png"]["final"]["shapes"][0]
    assert shape["kind"] == "box" and shape["label"] == label_ids(owner, pid)["Animal/Dog"]
    assert (shape["x"], shape["y"]) == (0.1, 0.2)
    assert abs(shape["w"] - 0.4) < 1e-9 and abs(shape["h"] - 0.4) < 1e-9


def test_mapping_and_file_errors(make_project: MakeProject, data_dir: Path) -> None:
    owner, pid, _ = local_project(make_project, data_dir, ["a.png"])
    good = table([{"img": "a.png"}])
    assert send(owner, pid, good, mapping={"image": "nope"}).json()["error"]["code"] == "bad_table"
    r = send(owner, pid, good, mapping={"image": "img", "extra": "x"})
    assert r.status_code == 422
    assert send(owner, pid, good, name="t.xlsx", mapping={"image": "img"}).status_code == 422
    r = send(owner, pid, good, mapping={"image": "img"}, labels_as="maybe")
    assert r.status_code == 422
    r = owner.post(f"/api/v1/projects/{pid}/imports", data={"mapping": '{"image": "img"}'})
    assert r.status_code in (400, 422)
    assert items(owner, pid) == {}
