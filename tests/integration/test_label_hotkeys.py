"""Owner-chosen label hotkeys: a label node may carry its key (a digit, or a letter that no
labeling screen uses), unique in the project; the other labels get the keys left, leaves
first. Bad keys are refused with a clear error and change nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import project_body
from tests.export_setup import MakeUser, image_folder, import_labels, new_project
from tests.infra import Api

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]


def _keys(tree: list[dict[str, Any]]) -> dict[str, tuple[str | None, str | None]]:
    """path -> (hotkey, assigned_hotkey), for every node."""
    out: dict[str, tuple[str | None, str | None]] = {}

    def walk(nodes: list[dict[str, Any]]) -> None:
        for n in nodes:
            out[n["path"]] = (n["hotkey"], n["assigned_hotkey"])
            walk(n["children"])

    walk(tree)
    return out


def test_chosen_keys_are_kept_and_the_rest_filled_leaves_first(make_project: MakeProject) -> None:
    labels = [{"name": "Animal", "hotkey": "Q", "children": [
                  {"name": "Cat"}, {"name": "Dog", "hotkey": "1"}]},
              {"name": "Car"}]
    owner, p = make_project(labels=labels)
    keys = _keys(owner.get(f"/api/v1/projects/{p['id']}/labels").json()["labels"])
    # "Q" is stored as q; 1 is Dog's, so Cat (the first leaf left) gets 2 and Car 3.
    assert keys == {"Animal": ("q", "q"), "Animal/Dog": ("1", "1"), "Animal/Cat": ("2", None),
                    "Car": ("3", None)}


def test_keys_can_be_swapped_moved_and_cleared(make_project: MakeProject) -> None:
    owner, p = make_project(labels=[{"name": "Cat", "hotkey": "1"}, {"name": "Dog", "hotkey": "2"}])
    pid = p["id"]
    cat, dog = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    r = owner.patch(f"/api/v1/projects/{pid}/labels", {"labels": [
        {"id": cat["id"], "name": "Cat", "hotkey": "2"}, {"id": dog["id"], "name": "Dog", "hotkey": "1"}]})
    assert r.status_code == 200, r.text
    assert _keys(r.json()["labels"]) == {"Cat": ("2", "2"), "Dog": ("1", "1")}
    r = owner.patch(f"/api/v1/projects/{pid}/labels", {"labels": [
        {"id": cat["id"], "name": "Cat", "hotkey": "z"}, {"id": dog["id"], "name": "Dog"}]})
    assert r.status_code == 200, r.text
    assert _keys(r.json()["labels"]) == {"Cat": ("z", "z"), "Dog": ("1", None)}


def test_bad_keys_are_refused_and_change_nothing(make_project: MakeProject,
                                                 make_user: Callable[..., Api]) -> None:
    owner, p = make_project(labels=[{"name": "Cat", "hotkey": "1"}, {"name": "Dog"}])
    pid = p["id"]
    before = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    cat, dog = before
    cases = [
        ("b", "invalid_hotkey"),     # the box tool's key
        ("é", "invalid_hotkey"),
        ("11", "invalid_hotkey"),
        ("1", "duplicate_hotkey"),   # Cat has it
    ]
    for key, code in cases:
        r = owner.patch(f"/api/v1/projects/{pid}/labels", {"labels": [
            {"id": cat["id"], "name": "Cat", "hotkey": "1"},
            {"id": dog["id"], "name": "Dog", "hotkey": key}]})
        assert r.status_code == 422, (key, r.text)
        error = r.json()["error"]
        assert error["code"] == code, (key, error)
        assert error["details"][0]["loc"] == ["labels", 1, "hotkey"]
        assert "Dog" in error["message"] or "allowed" in error["message"]
    assert owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"] == before
    # At creation too: nothing is created, the name stays free.
    body = project_body(labels=[{"name": "A", "hotkey": "x"}, {"name": "B", "hotkey": "X"}])
    r = owner.post("/api/v1/projects", body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "duplicate_hotkey", r.text
    r = owner.post("/api/v1/projects", {**body, "labels": [{"name": "A", "hotkey": "x"}]})
    assert r.status_code == 201, r.text


def test_labels_created_by_an_import_leave_chosen_keys_alone(make_user: MakeUser, data_dir: Path) -> None:
    folder, _ = image_folder(data_dir, 1)
    owner, pid, _ = new_project(make_user, folder, "bbox", [{"name": "cat", "hotkey": "z"}, {"name": "dog"}])
    doc = {"images": [{"id": 1, "file_name": "img00.png", "width": 40, "height": 30}],
           "categories": [{"id": 1, "name": "bird"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}]}
    r = import_labels(owner, pid, "coco.json", json.dumps(doc).encode(), create_labels="true")
    assert r.status_code == 200 and r.json()["created_labels"] == ["bird"], r.text
    keys = _keys(owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"])
    assert keys == {"cat": ("z", "z"), "dog": ("1", None), "bird": ("2", None)}
