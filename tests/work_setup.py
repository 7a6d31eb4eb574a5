"""Shared set-up for work-distribution tests: a running project with labelers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from tests.conftest import bind_folder
from tests.infra import Api, unique

MakeUser = Callable[..., Api]


@dataclass
class Proj:
    owner: Api
    pid: int
    labels: dict[str, int]
    labelers: list[Api]


def setup_project(make_user: MakeUser, data_dir: Path, *, items: int, task_type: str = "multiclass",
                  consensus: dict[str, Any] | None = None, labelers: int = 3) -> Proj:
    owner = make_user("owner")
    body: dict[str, Any] = {"name": unique("work"), "task_type": task_type,
                            "labels": [{"name": "cat"}, {"name": "dog"}, {"name": "bird"}]}
    if consensus:
        body["consensus"] = consensus
    created = owner.post("/api/v1/projects", body).json()
    pid = created["project"]["id"]
    labels = {n["name"]: n["id"] for n in created["labels"]}
    folder = data_dir / "datasets" / unique("work")
    folder.mkdir(parents=True)
    for i in range(items):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{i:03d}.png")
    assert bind_folder(owner, pid, folder).ok
    people = []
    for i in range(labelers):
        person = make_user(f"labeler{i}")
        owner.put(f"/api/v1/projects/{pid}/members", {"email": person.email, "role": "labeler"})
        people.append(person)
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    return Proj(owner, pid, labels, people)


def next_(api: Api, pid: int, count: int = 1, holding: list[dict[str, Any]] | None = None,
          ) -> list[dict[str, Any]]:
    """Ask for work; `holding` are leases this client already has (not returned again)."""
    body = {"count": count, "holding": [x["lease_id"] for x in holding or []]}
    r = api.post(f"/api/v1/projects/{pid}/tasks/next", body)
    assert r.status_code == 200, r.text
    leases: list[dict[str, Any]] = r.json()["leases"]
    return leases


def submit(api: Api, lease: dict[str, Any], annotation: dict[str, Any]) -> Any:
    return api.post(f"/api/v1/leases/{lease['lease_id']}/submit", {"annotation": annotation})


def item(owner: Api, pid: int, iid: int) -> dict[str, Any]:
    got: dict[str, Any] = owner.get(f"/api/v1/projects/{pid}/items/{iid}").json()["item"]
    return got


def release(api: Api, leases: list[dict[str, Any]]) -> dict[str, list[str]]:
    r = api.post("/api/v1/leases/release", {"lease_ids": [x["lease_id"] for x in leases]})
    assert r.status_code == 200, r.text
    out: dict[str, list[str]] = r.json()
    return out
