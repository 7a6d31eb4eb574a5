"""Shared set-up for export and label-import tests: labeled projects made through the real
work path (lease, submit), and waiting for exports."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from tests.conftest import bind_folder
from tests.infra import Api, finished, unique

MakeUser = Callable[..., Api]
# Given an item's key, its size and the label ids by path: the annotation to submit (or None).
Annotate = Callable[[str, int, int, dict[str, int]], dict[str, Any] | None]


@dataclass
class Labeled:
    owner: Api
    labeler: Api
    pid: int
    folder: Path
    labels: dict[str, int]          # full path -> id
    sizes: dict[str, tuple[int, int]]


def label_paths(tree: list[dict[str, Any]], parent: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    for node in tree:
        path = f"{parent}/{node['name']}" if parent else node["name"]
        out[path] = node["id"]
        out.update(label_paths(node.get("children", []), path))
    return out


def image_folder(data_dir: Path, count: int) -> tuple[Path, dict[str, tuple[int, int]]]:
    """Images of different sizes, some in a sub-folder."""
    folder = data_dir / "datasets" / unique("export")
    sizes: dict[str, tuple[int, int]] = {}
    for i in range(count):
        key = f"{'sub/' if i % 3 == 2 else ''}img{i:02d}.png"
        size = (40 + 10 * i, 30 + 6 * i)
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (i * 20 % 255, 0, 0)).save(folder / key)
        sizes[key] = size
    return folder, sizes


def new_project(make_user: MakeUser, folder: Path, task_type: str, tree: list[dict[str, Any]],
                **extra: Any) -> tuple[Api, int, dict[str, int]]:
    owner = make_user("owner")
    created = owner.post("/api/v1/projects", {"name": unique("export"), "task_type": task_type,
                                              "labels": tree, **extra})
    assert created.status_code == 201, created.text
    pid = created.json()["project"]["id"]
    r = bind_folder(owner, pid, folder)
    assert r.ok, r.text
    return owner, pid, label_paths(created.json()["labels"])


def labeled_project(make_user: MakeUser, data_dir: Path, task_type: str, tree: list[dict[str, Any]],
                    annotate: Annotate, *, count: int = 6) -> Labeled:
    """A running project without consensus whose items one labeler labeled via submit."""
    folder, sizes = image_folder(data_dir, count)
    owner, pid, labels = new_project(make_user, folder, task_type, tree)
    labeler = make_user("labeler")
    owner.put(f"/api/v1/projects/{pid}/members", {"email": labeler.email, "role": "labeler"})
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    while True:
        r = labeler.post(f"/api/v1/projects/{pid}/tasks/next", {"count": 1})
        if r.status_code == 409 and r.json()["error"]["details"].get("status") == "completed":
            break  # every item is labeled
        assert r.status_code == 200, r.text
        leases = r.json()["leases"]
        if not leases:
            break
        for lease in leases:
            key = lease["item"]["key"]
            annotation = annotate(key, *sizes[key], labels)
            if annotation is None:
                assert labeler.post(f"/api/v1/leases/{lease['lease_id']}/skip").status_code == 200
                continue
            done = labeler.post(f"/api/v1/leases/{lease['lease_id']}/submit", {"annotation": annotation})
            assert done.status_code == 200, done.text
    return Labeled(owner, labeler, pid, folder, labels, sizes)


def wait_export(api: Api, eid: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = api.get(f"/api/v1/exports/{eid}")
        assert r.status_code == 200, r.text
        export: dict[str, Any] = r.json()["export"]
        if export["status"] in ("done", "failed"):
            return export
        assert time.monotonic() < deadline, export
        time.sleep(0.2)


def export(api: Api, pid: int, fmt: str, **body: Any) -> tuple[dict[str, Any], bytes]:
    """Request an export, wait for it, and download it."""
    r = api.post(f"/api/v1/projects/{pid}/exports", {"format": fmt, **body})
    assert r.status_code == 202, r.text
    done = wait_export(api, r.json()["export"]["id"])
    assert done["status"] == "done", done
    got = api.get(done["download_url"])
    assert got.status_code == 200, got.text
    return done, got.content


def import_labels(api: Api, pid: int, name: str, data: bytes, **fields: str) -> Any:
    """Import a labeled dataset and wait for its job: the reply the import's job gives."""
    return finished(api, api.post(f"/api/v1/projects/{pid}/label-imports",
                                  files=[("file", (name, data, "application/octet-stream"))],
                                  data=fields))


def started_project(make_user: MakeUser, data_dir: Path, task_type: str, tree: list[dict[str, Any]],
                    count: int) -> tuple[Api, Api, int, dict[str, int]]:
    """A running project on `count` generated images with one labeler: (owner, labeler, id, labels)."""
    folder, _ = image_folder(data_dir, count)
    owner, pid, labels = new_project(make_user, folder, task_type, tree)
    labeler = make_user("labeler")
    owner.put(f"/api/v1/projects/{pid}/members", {"email": labeler.email, "role": "labeler"})
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    return owner, labeler, pid, labels
