"""Checking before creating: the dataset dry run, the create-body check, create-and-bind in one
step, and binding the data of a project that has not started."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import admin_at, project_body
from tests.infra import Api, unique, wait_job

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]


def local(path: Path | str, pattern: str = "**/*.*") -> dict[str, Any]:
    return {"datastore": {"kind": "local", "path": str(path)}, "pattern": pattern}


@pytest.fixture(scope="module")
def folders(data_dir: Path) -> tuple[Path, Path]:
    """A dataset of 7 images (one DICOM-named), a text file, and a second small dataset."""
    root = data_dir / "datasets" / unique("check")
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (8, 6), (i * 40, 0, 0)).save(root / f"img{i}.png")
    for i in range(2):
        Image.new("L", (8, 6), 90).save(root / "sub" / f"s{i}.jpg")
    (root / "scan.dcm").write_bytes(b"not read by the dry run")
    (root / "notes.txt").write_text("skipped")
    other = data_dir / "datasets" / unique("check-other")
    other.mkdir(parents=True)
    Image.new("RGB", (8, 6)).save(other / "only.png")
    return root, other


def names(api: Api) -> set[str]:
    return {p["name"] for p in api.get("/api/v1/projects", params={"limit": 500}).json()["projects"]}


def test_dry_run_counts_and_samples_the_files_it_would_register(admin: Api,
                                                                folders: tuple[Path, Path]) -> None:
    root, _ = folders
    before = names(admin)
    r = admin.post("/api/v1/datasets/check", local(root))
    assert r.status_code == 200, r.text
    check = r.json()["check"]
    assert (check["matched"], check["skipped"], check["would_register"]) == (7, 1, 7)
    assert check["kinds"] == {"image": 6, "dicom": 1} and check["over_cap"] == 0
    assert check["sample"] == ["img0.png", "img1.png", "img2.png", "img3.png", "scan.dcm"]
    sub = admin.post("/api/v1/datasets/check", local(root, "sub/**")).json()["check"]
    assert (sub["matched"], sub["sample"]) == (2, ["sub/s0.jpg", "sub/s1.jpg"])
    none = admin.post("/api/v1/datasets/check", local(root, "*.gif")).json()["check"]
    assert (none["matched"], none["sample"]) == (0, [])
    assert names(admin) == before  # nothing was created


@pytest.mark.parametrize(("path", "code"), [
    ("/etc", "path_not_allowed"),
    ("relative/folder", None),
])
def test_dry_run_refuses_folders_outside_the_allowed_roots(admin: Api, path: str,
                                                           code: str | None) -> None:
    r = admin.post("/api/v1/datasets/check", local(path))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["details"][0]["loc"] == ["datastore", "path"]
    if code:
        assert error["code"] == code and "allowed roots" in error["message"]


def test_dry_run_names_a_missing_folder_and_refuses_non_admins(
    admin: Api, make_user: Callable[..., Api], data_dir: Path, folders: tuple[Path, Path]
) -> None:
    r = admin.post("/api/v1/datasets/check", local(data_dir / "datasets" / unique("absent")))
    assert r.status_code == 422 and r.json()["error"]["code"] == "path_not_found"
    r = make_user("plain").post("/api/v1/datasets/check", local(folders[0]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "local_folder_admin_only"


@pytest.mark.parametrize("pattern", ["../x/**", "/abs/**", "a//b", "img**.png", "**x/*.png", " "])
def test_bad_patterns_are_a_clear_422(admin: Api, folders: tuple[Path, Path], pattern: str) -> None:
    r = admin.post("/api/v1/datasets/check", local(folders[0], pattern))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["details"][0]["loc"] == ["pattern"] and error["message"]


def test_uploads_have_nothing_to_check_before_the_project_exists(admin: Api) -> None:
    r = admin.post("/api/v1/datasets/check", {"datastore": {"kind": "upload"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "nothing_to_check"


def test_create_and_bind_is_one_step_and_a_refused_binding_leaves_no_project(
    admin: Api, folders: tuple[Path, Path]
) -> None:
    body = project_body(dataset=local("/etc"))
    r = admin.post("/api/v1/projects", body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "path_not_allowed"
    body["dataset"] = local(folders[0], "a//b")
    assert admin.post("/api/v1/projects", body).status_code == 422
    assert body["name"] not in names(admin)
    # The name is still free, and a good binding creates the project with its items.
    body["dataset"] = local(folders[0])
    r = admin.post("/api/v1/projects", body)
    assert r.status_code == 201, r.text
    reply = r.json()
    assert reply["project"]["status"] == "initializing"
    # The files are registered by the job the create queued.
    assert reply["job"]["kind"] == "bind" and wait_job(admin, r)["result"]["added"] == 7
    total = admin.get(f"/api/v1/projects/{reply['project']['id']}").json()["project"]["items"]["total"]
    assert total == 7
    assert reply["project"]["dataset"]["datastore"]["kind"] == "local"
    assert admin.post(f"/api/v1/projects/{reply['project']['id']}/start").status_code == 200


def test_create_with_a_folder_by_a_non_admin_creates_nothing(
    make_user: Callable[..., Api], folders: tuple[Path, Path]
) -> None:
    owner = make_user("nonadmin")
    body = project_body(dataset=local(folders[0]))
    r = owner.post("/api/v1/projects", body)
    assert r.status_code == 403
    assert body["name"] not in names(admin_at(owner.base_url))


def test_project_check_runs_the_create_rules_and_keeps_nothing(
    make_project: MakeProject, make_user: Callable[..., Api]
) -> None:
    owner, project = make_project()
    other = make_user("checker")
    r = other.post("/api/v1/projects/check", project_body(name=project["name"].upper()))
    assert r.status_code == 409 and r.json()["error"]["code"] == "name_taken"
    r = other.post("/api/v1/projects/check",
                   project_body(labels=[{"name": "Cat"}, {"name": "cat"}]))
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"][0] == "labels"
    r = other.post("/api/v1/projects/check", project_body(
        task_type="polygon", consensus={"enabled": True, "min": 2, "max": 3, "threshold": 0.5}))
    assert r.status_code == 422 and r.json()["error"]["code"] == "consensus_not_supported"
    r = other.post("/api/v1/projects/check", project_body(
        consensus={"enabled": True, "min": 4, "max": 3, "threshold": 0.5}))
    assert r.status_code == 422
    body = project_body()
    assert other.post("/api/v1/projects/check", body).json() == {"ok": True}
    assert other.get("/api/v1/projects").json()["projects"] == []
    assert other.post("/api/v1/projects", body).status_code == 201  # the name stayed free


def test_data_of_a_project_that_has_not_started_can_be_bound_changed_then_is_fixed(
    make_project: MakeProject, folders: tuple[Path, Path]
) -> None:
    root, other = folders
    owner, project = make_project()  # created without data: "Setting up", as before
    pid = project["id"]
    admin = admin_at(owner.base_url)
    base = f"/api/v1/projects/{pid}/dataset"
    check = admin.post(base + "/check", local(root)).json()["check"]
    assert check["matched"] == 7
    assert owner.get(f"/api/v1/projects/{pid}").json()["project"]["dataset"] is None
    assert wait_job(admin, admin.put(base, local(root)))["result"]["added"] == 7
    # Before the start, other data replaces the items.
    assert admin.post(base + "/check", local(other)).json()["check"]["matched"] == 1
    assert wait_job(admin, admin.put(base, local(other)))["status"] == "done"
    assert owner.get(f"/api/v1/projects/{pid}").json()["project"]["items"]["total"] == 1
    # The owner (not an admin) may re-check the binding the admin made, unchanged.
    assert owner.post(base + "/check", local(other)).status_code == 200
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    # Once started, the binding is fixed: the dry run says so too.
    for call in (admin.post, admin.put):
        r = call(base + ("/check" if call == admin.post else ""), local(root))
        assert r.status_code == 409 and r.json()["error"]["code"] == "immutable_field"
    assert admin.post(base + "/check", local(other)).status_code == 200


def test_a_stuck_project_can_be_deleted_and_its_name_stays_taken(make_project: MakeProject) -> None:
    owner, project = make_project()
    assert owner.delete(f"/api/v1/projects/{project['id']}").status_code == 204
    r = owner.post("/api/v1/projects/check", project_body(name=project["name"]))
    assert r.status_code == 409 and r.json()["error"]["code"] == "name_taken"
