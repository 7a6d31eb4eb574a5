"""Owners archive projects (paused, read-only, listed apart) and bring them back; deleting
keeps the name taken."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from tests.conftest import bind_folder, project_body
from tests.infra import Api, unique
from tests.integration.test_collab import person, project_with_items
from tests.yclient import node_client, result

Make = Callable[..., tuple[Api, dict[str, Any]]]


def _listed(client: Api, archived: bool = False) -> set[int]:
    r = client.get("/api/v1/projects?limit=1000" + ("&archived=true" if archived else ""))
    assert r.status_code == 200, r.text
    return {p["id"] for p in r.json()["projects"]}


def test_archive_pauses_hides_and_freezes_until_unarchived(
        make_project: Make, make_user: Callable[..., Api], admin: Api, data_dir: Path) -> None:
    folder = data_dir / "datasets" / unique("archive")
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    owner, project = make_project()
    pid = project["id"]
    base = f"/api/v1/projects/{pid}"
    labeler = make_user("lab")
    assert owner.put(f"{base}/members", {"email": labeler.email, "role": "labeler"}).status_code == 200
    assert bind_folder(owner, pid, folder).ok
    assert owner.post(f"{base}/start").status_code == 200

    r = owner.post(f"{base}/archive")
    assert r.status_code == 200, r.text
    archived = r.json()["project"]
    assert archived["archived"] is True and archived["status"] == "paused"
    assert not any(archived["editable"].values())
    assert pid not in _listed(owner) and pid in _listed(owner, archived=True)
    assert pid not in _listed(labeler) and pid not in _listed(labeler, archived=True)
    assert pid in _listed(admin, archived=True)
    # Still readable by its members, but nothing changes it.
    assert labeler.get(base).status_code == 200
    for method, path, body in (
            ("PATCH", base, {"name": project["name"] + " 2"}),
            ("PATCH", f"{base}/labels", {"labels": [{"name": "X"}]}),
            ("POST", f"{base}/resume", None),
            ("POST", f"{base}/refresh", None)):
        r = owner.request(method, path, json=body)
        assert r.status_code == 409 and r.json()["error"]["code"] == "project_archived", (path, r.text)
    r = labeler.post(f"{base}/tasks/next", {"count": 1})
    assert r.status_code == 409
    r = owner.post(f"{base}/archive")
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_archived"

    r = owner.post(f"{base}/unarchive")
    assert r.status_code == 200 and r.json()["project"]["archived"] is False
    assert r.json()["project"]["status"] == "paused"
    assert pid in _listed(labeler)
    assert owner.post(f"{base}/resume").status_code == 200
    r = owner.post(f"{base}/unarchive")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_archived"


def test_only_owners_archive(make_project: Make, make_user: Callable[..., Api], anon: Api) -> None:
    owner, project = make_project()
    base = f"/api/v1/projects/{project['id']}"
    reviewer = make_user("rev")
    owner.put(f"{base}/members", {"email": reviewer.email, "role": "reviewer"})
    stranger = make_user("stranger")
    assert reviewer.post(f"{base}/archive").status_code == 403
    assert stranger.post(f"{base}/archive").status_code == 404
    assert anon.post(f"{base}/archive").status_code == 401
    assert owner.post("/api/v1/projects/999999999/archive").status_code == 404
    assert owner.post(f"{base}/archive").status_code == 200
    assert reviewer.post(f"{base}/unarchive").status_code == 403
    r = owner.get("/api/v1/projects?archived=maybe")
    assert r.status_code == 200  # not a true value: the everyday list


def test_a_deleted_name_stays_taken(make_project: Make) -> None:
    owner, project = make_project()
    assert owner.post(f"/api/v1/projects/{project['id']}/archive").status_code == 200
    assert owner.delete(f"/api/v1/projects/{project['id']}").status_code == 204
    assert owner.get(f"/api/v1/projects/{project['id']}").status_code == 404
    assert project["id"] not in _listed(owner, archived=True)
    r = owner.post("/api/v1/projects", project_body(name=project["name"]))
    assert r.status_code == 409 and r.json()["error"]["code"] == "name_taken"


async def test_archived_documents_open_read_only(server: str, make_user: Callable[..., Api],
                                                 data_dir: Path) -> None:
    owner, alice = person(make_user, "owner"), person(make_user, "alice")
    pid, items = project_with_items(owner.api, data_dir, False, [(alice, "labeler")])
    room = f"{pid}/{items[0]}/{alice.id}"
    assert result(node_client(server, room, alice.token, key="before", value=1,
                              expect=["before"], hold_ms=100))["ok"]
    assert owner.api.post(f"/api/v1/projects/{pid}/archive").status_code == 200
    after = result(node_client(server, room, alice.token, key="after", value=1,
                               expect=["before", "after"], timeout_ms=3000, hold_ms=500))
    assert after["permissionDenied"] is True and "before" in after["map"]
    check = result(node_client(server, room, alice.token, expect=["before"], hold_ms=300))
    assert "after" not in check["map"]
