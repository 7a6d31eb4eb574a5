"""Uploading files into a project's own storage."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from tests.conftest import UPLOAD_MAX_FILE, bind_folder
from tests.infra import Api

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]


def png(size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (5, 4), (200, 10, 30)).save(buf, "JPEG")
    return buf.getvalue()


def send(owner: Api, pid: int, files: list[tuple[str, bytes]], **fields: str) -> Any:
    return owner.post(f"/api/v1/projects/{pid}/uploads",
                      files=[("files", (name, data, "application/octet-stream"))
                             for name, data in files],
                      data=fields)


def stored(data_dir: Path, pid: int) -> list[str]:
    root = data_dir / "uploads" / str(pid)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_upload_files_and_folders_binds_and_registers(make_project: MakeProject,
                                                      data_dir: Path) -> None:
    owner, p = make_project()
    pid = p["id"]
    r = send(owner, pid, [("a.png", png()), ("cats/b.jpg", jpeg()), ("cats/deep/c.PNG", png())])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["uploaded"] == 3 and body["ingest"]["added"] == 3 and body["overwritten"] == 0
    assert stored(data_dir, pid) == ["a.png", "cats/b.jpg", "cats/deep/c.PNG"]
    project = owner.get(f"/api/v1/projects/{pid}").json()["project"]
    assert project["dataset"]["datastore"] == {"kind": "upload"}
    assert project["items"]["total"] == 3


def test_existing_files_need_overwrite(make_project: MakeProject, data_dir: Path) -> None:
    owner, p = make_project()
    pid = p["id"]
    assert send(owner, pid, [("a.png", png((8, 6)))]).status_code == 201
    r = send(owner, pid, [("a.png", png((9, 9))), ("new.png", png())])
    assert r.status_code == 409 and r.json()["error"]["details"]["keys"] == ["a.png"]
    assert stored(data_dir, pid) == ["a.png"]
    r = send(owner, pid, [("a.png", png((9, 9))), ("new.png", png())], overwrite="true")
    assert r.status_code == 201 and r.json()["overwritten"] == 1
    assert r.json()["ingest"]["added"] == 1
    with Image.open(data_dir / "uploads" / str(pid) / "a.png") as img:
        assert img.size == (9, 9)


def test_content_is_checked_by_magic_bytes_and_nothing_is_kept(make_project: MakeProject,
                                                               data_dir: Path) -> None:
    owner, p = make_project()
    pid = p["id"]
    r = send(owner, pid, [("ok.png", png()), ("fake.jpg", png())])
    assert r.status_code == 415 and r.json()["error"]["code"] == "content_mismatch"
    r = send(owner, pid, [("script.png", b"<script>alert(1)</script>" * 10)])
    assert r.status_code == 415
    r = send(owner, pid, [("notes.txt", b"hello")])
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_extension"
    assert stored(data_dir, pid) == []
    assert owner.get(f"/api/v1/projects/{pid}").json()["project"]["dataset"] is None


def test_traversal_names_are_refused(make_project: MakeProject, data_dir: Path) -> None:
    owner, p = make_project()
    for name in ("../evil.png", "/etc/evil.png", "a/../../evil.png", "%2e%2e/evil.png",
                 "a\\..\\evil.png"):
        r = send(owner, p["id"], [(name, png())])
        assert r.status_code == 422, (name, r.text)
    assert not list((data_dir / "uploads").glob("evil*"))
    assert stored(data_dir, p["id"]) == []


def test_size_limits_give_413(make_project: MakeProject, data_dir: Path) -> None:
    owner, p = make_project()
    big = png() + b"\0" * (UPLOAD_MAX_FILE + 10)
    r = send(owner, p["id"], [("big.png", big)])
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    many = [(f"f{i}.png", png() + b"\0" * (UPLOAD_MAX_FILE - 1000)) for i in range(4)]
    r = send(owner, p["id"], many)
    assert r.status_code == 413
    assert stored(data_dir, p["id"]) == []


def test_bad_multipart_and_wrong_datastore(make_project: MakeProject, data_dir: Path) -> None:
    owner, p = make_project()
    r = owner.post(f"/api/v1/projects/{p['id']}/uploads", json={"files": []})
    assert r.status_code == 400 and r.json()["error"]["code"] == "not_multipart"
    r = owner.post(f"/api/v1/projects/{p['id']}/uploads", data={"overwrite": "true"},
                   files=[("other", ("a.png", png(), "image/png"))])
    assert r.status_code == 422
    local = data_dir / "datasets" / f"local-{p['id']}"
    local.mkdir(parents=True)
    assert bind_folder(owner, p["id"], local).ok
    r = send(owner, p["id"], [("a.png", png())])
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_an_upload_project"
