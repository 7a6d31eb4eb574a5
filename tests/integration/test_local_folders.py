"""Folders on the server as datastores: who may bind one, and nothing outside the root."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.infra import Api, bound, unique
from tests.reliability import Measured

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (9, 9, 9)).save(path)


def local(path: Path | str, pattern: str = "**/*.*", **refresh: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"datastore": {"kind": "local", "path": str(path)}, "pattern": pattern}
    if refresh:
        body["refresh"] = refresh
    return body


@pytest.mark.reliability(
    area="Data sources",
    attack="Bound a folder whose pattern starts with a symlink to a folder outside the root "
           "(escape_dir/*, escape_dir/**, sub/escape/*.png, a bare escape_dir)",
    promise="Nothing outside the root is registered; a symlinked folder that stays inside still is")
def test_a_symlinked_folder_in_the_pattern_registers_nothing_outside_the_root(
    admin: Api, make_project: MakeProject, data_dir: Path, tmp_path: Path, measured: Measured,
) -> None:
    _, p = make_project()
    url = f"/api/v1/projects/{p['id']}/dataset"
    root = data_dir / "datasets" / unique("escape")
    outside = tmp_path / "other-team"
    png(outside / "secret.png")
    png(root / "inside" / "mine.png")
    (root / "sub").mkdir()
    os.symlink(outside, root / "escape_dir")
    os.symlink(outside, root / "sub" / "escape")
    os.symlink(root / "inside", root / "inner_link")
    added = {}
    for pattern in ("escape_dir/*", "escape_dir/**", "sub/escape/*.png", "escape_dir"):
        r = bound(admin, admin.put(url, local(root, pattern)))
        assert r.ok, r.text
        keys = [i["key"] for i in admin.get(f"/api/v1/projects/{p['id']}/items").json()["items"]]
        assert keys == [], pattern
        added[pattern] = r.ingest["added"]
    r = bound(admin, admin.put(url, local(root, "inner_link/*")))
    assert r.ok and r.ingest["added"] == 1
    measured(f"items registered from outside the root: {sum(added.values())} over {len(added)} "
             "patterns; 1 from a symlink that stays inside")


@pytest.mark.reliability(
    area="Data sources",
    attack="A project owner who is not an instance admin bound folders under the allowed roots "
           "(one holding another team's images, one missing, one outside the roots)",
    promise="403 local_folder_admin_only with one body whatever the path, before the path is "
            "looked at; non-members get 404; admins bind, and the owner may then edit refresh")
def test_only_instance_admins_bind_a_folder_on_the_server(
    admin: Api, make_project: MakeProject, make_user: Callable[..., Api], data_dir: Path,
    tmp_path: Path, measured: Measured,
) -> None:
    owner, p = make_project()
    pid = p["id"]
    url = f"/api/v1/projects/{pid}/dataset"
    theirs = data_dir / "datasets" / unique("other-team")
    png(theirs / "secret.png")
    bodies = []
    for path in (theirs, data_dir / "datasets" / unique("missing"), tmp_path, "relative/path"):
        r = owner.put(url, local(path))
        assert r.status_code == 403, r.text
        bodies.append(r.json())
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["error"]["code"] == "local_folder_admin_only"
    assert owner.get(f"/api/v1/projects/{pid}").json()["project"]["dataset"] is None
    stranger = make_user("stranger")
    assert stranger.put(url, local(theirs)).status_code == 404
    reviewer = make_user("reviewer")
    owner.put(f"/api/v1/projects/{pid}/members", {"email": reviewer.email, "role": "reviewer"})
    assert reviewer.put(url, local(theirs)).status_code == 403

    ours = data_dir / "datasets" / unique("ours")
    png(ours / "a.png")
    r = bound(admin, admin.put(url, local(ours)))
    assert r.status_code == 202 and r.ingest["added"] == 1
    shown = owner.get(f"/api/v1/projects/{pid}").json()["project"]["dataset"]
    # The owner may send the admin's binding back unchanged to edit its refresh settings...
    r = owner.put(url, {**shown, "refresh": {"enabled": True, "interval_s": 600}})
    assert r.status_code == 200, r.text
    assert r.json()["project"]["refresh"]["enabled"] is True
    # ...but not point it anywhere else.
    assert owner.put(url, local(theirs)).status_code == 403
    assert owner.put(url, local(ours, "sub/**")).status_code == 403
    assert owner.get(f"/api/v1/projects/{pid}").json()["project"]["dataset"] == shown
    measured(f"owner: 403 {bodies[0]['error']['code']} x{len(bodies)}, one body; "
             "non-member: 404; admin: 200")
