"""Every route, called as admin, owner, reviewer, labeler, non-member and anonymous."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import PASSWORD, project_body
from tests.export_setup import wait_export
from tests.infra import Api, unique, wait_job

ROLES = ("admin", "owner", "reviewer", "labeler", "nonmember", "anonymous")


def _row(*codes: int) -> dict[str, int]:
    return dict(zip(ROLES, codes, strict=True))


EVERYONE = _row(200, 200, 200, 200, 200, 200)
SIGNED_IN = _row(200, 200, 200, 200, 200, 401)
ADMIN_ONLY = _row(200, 403, 403, 403, 403, 401)
MEMBERS = _row(200, 200, 200, 200, 404, 401)
REVIEWERS = _row(200, 200, 200, 403, 404, 401)
OWNERS = _row(200, 200, 403, 403, 404, 401)
# A folder on the server may hold any team's images: only instance admins bind one.
FOLDER_BINDERS = _row(200, 403, 403, 403, 404, 401)


def with_status(row: dict[str, int], ok: int) -> dict[str, int]:
    return {k: (ok if v == 200 else v) for k, v in row.items()}


@dataclass(frozen=True)
class Multipart:
    files: list[tuple[str, tuple[str, bytes, str]]]
    data: dict[str, str]


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class World:
    """A fresh project with one member of each role, plus the caller's own resources."""

    server: str
    data_dir: Path
    people: dict[str, Api]
    pid: int
    extra_user: str  # an email: owners add people by email
    token_id: int | None
    iid: int = 0
    lid: str = "none"
    label_id: int = 0
    eid: int = 0
    jid: int = 0

    def fill(self, path: str) -> str:
        return (path.replace("{pid}", str(self.pid)).replace("{iid}", str(self.iid))
                .replace("{uid}", str(self.people["labeler"].id))
                .replace("{tid}", str(self.token_id or 1)).replace("{lid}", self.lid)
                .replace("{eid}", str(self.eid)).replace("{jid}", str(self.jid)))


def dataset_body(w: World) -> dict[str, Any]:
    folder = w.data_dir / "datasets" / unique("matrix")
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes())
    return {"datastore": {"kind": "local", "path": str(folder)}, "pattern": "**/*.*"}


def upload_body(w: World) -> Multipart:
    return Multipart([("files", (f"{unique('u')}.png", png_bytes(), "image/png"))], {})


def import_body(w: World) -> Multipart:
    return Multipart([("file", ("t.csv", b"img,label\na.png,Animal\n", "text/csv"))],
                     {"mapping": '{"image": "img", "category": "label"}'})


def label_import_body(w: World) -> Multipart:
    coco = ('{"images": [{"id": 1, "file_name": "a.png", "width": 4, "height": 3}], '
            '"categories": [{"id": 7, "name": "Animal/Cat"}], '
            '"annotations": [{"id": 1, "image_id": 1, "category_id": 7}]}')
    return Multipart([("file", ("labels.json", coco.encode(), "application/json"))], {})


def fresh_link(w: World) -> str:
    """The token of a new invitation, made by the instance admin."""
    r = w.people["admin"].post("/api/v1/invites", {"email": f"{unique('inv')}@colabel.test"})
    assert r.status_code == 201, r.text
    token: str = r.json()["invite"]["token"]
    return token


Body = Callable[[World], Any]
CASES: dict[tuple[str, str], tuple[dict[str, int], Body | None, str]] = {
    ("GET", "/healthz"): (EVERYONE, None, ""),
    ("GET", "/readyz"): (EVERYONE, None, ""),
    ("GET", "/api/v1/openapi.json"): (EVERYONE, None, ""),
    ("POST", "/api/v1/auth/login"): (
        EVERYONE, lambda w: {"email": w.people["owner"].user["email"], "password": PASSWORD}, ""),
    ("POST", "/api/v1/auth/logout"): (with_status(EVERYONE, 204), None, ""),
    ("GET", "/api/v1/me"): (SIGNED_IN, None, ""),
    ("PATCH", "/api/v1/me"): (SIGNED_IN, lambda w: {"name": "Renamed"}, ""),
    ("POST", "/api/v1/users"): (
        with_status(ADMIN_ONLY, 201),
        lambda w: {"email": f"{unique('m')}@colabel.test", "password": PASSWORD}, ""),
    ("GET", "/api/v1/users"): (ADMIN_ONLY, None, ""),
    ("GET", "/api/v1/users/{uid}"): (ADMIN_ONLY, None, ""),
    ("PATCH", "/api/v1/users/{uid}"): (ADMIN_ONLY, lambda w: {"name": "Lab"}, ""),
    ("POST", "/api/v1/invites"): (
        with_status(ADMIN_ONLY, 201), lambda w: {"email": f"{unique('i')}@colabel.test"}, ""),
    ("POST", "/api/v1/users/{uid}/invite"): (with_status(ADMIN_ONLY, 201), lambda w: {}, ""),
    # A link is all it takes: whoever holds it may look at it and use it.
    ("POST", "/api/v1/invites/check"): (EVERYONE, lambda w: {"token": fresh_link(w)}, ""),
    ("POST", "/api/v1/invites/accept"): (
        EVERYONE, lambda w: {"token": fresh_link(w), "password": PASSWORD}, ""),
    ("POST", "/api/v1/tokens"): (with_status(SIGNED_IN, 201), lambda w: {"name": "t"}, ""),
    ("GET", "/api/v1/tokens"): (SIGNED_IN, None, ""),
    ("DELETE", "/api/v1/tokens/{tid}"): (with_status(SIGNED_IN, 204), None, "own-token"),
    ("GET", "/api/v1/projects"): (SIGNED_IN, None, ""),
    ("POST", "/api/v1/projects"): (with_status(SIGNED_IN, 201), lambda w: project_body(), ""),
    ("GET", "/api/v1/projects/{pid}"): (MEMBERS, None, ""),
    ("PATCH", "/api/v1/projects/{pid}"): (OWNERS, lambda w: {"name": unique("n")}, ""),
    ("DELETE", "/api/v1/projects/{pid}"): (with_status(OWNERS, 204), None, ""),
    ("POST", "/api/v1/projects/{pid}/start"): (OWNERS, None, "bound"),
    ("POST", "/api/v1/projects/{pid}/pause"): (OWNERS, None, "running"),
    ("POST", "/api/v1/projects/{pid}/resume"): (OWNERS, None, "paused"),
    ("POST", "/api/v1/projects/{pid}/archive"): (OWNERS, None, ""),
    ("POST", "/api/v1/projects/{pid}/unarchive"): (OWNERS, None, "archived"),
    ("GET", "/api/v1/projects/{pid}/members/candidates"): (OWNERS, None, ""),
    ("GET", "/api/v1/projects/{pid}/members"): (REVIEWERS, None, ""),
    ("PUT", "/api/v1/projects/{pid}/members"): (
        OWNERS, lambda w: {"email": w.extra_user, "role": "labeler"}, ""),
    ("DELETE", "/api/v1/projects/{pid}/members/{uid}"): (with_status(OWNERS, 204), None, ""),
    ("GET", "/api/v1/projects/{pid}/labels"): (MEMBERS, None, ""),
    ("PATCH", "/api/v1/projects/{pid}/labels"): (
        OWNERS, lambda w: {"labels": [{"name": "Only"}]}, ""),
    # A binding of new data answers 202 with the job that registers its files.
    ("PUT", "/api/v1/projects/{pid}/dataset"): (with_status(FOLDER_BINDERS, 202), dataset_body, ""),
    ("POST", "/api/v1/projects/{pid}/dataset/check"): (FOLDER_BINDERS, dataset_body, ""),
    # Only an admin may name a server folder, in a dry run too.
    ("POST", "/api/v1/datasets/check"): (_row(200, 403, 403, 403, 403, 401), dataset_body, ""),
    ("POST", "/api/v1/projects/check"): (SIGNED_IN, lambda w: project_body(), ""),
    ("POST", "/api/v1/projects/{pid}/refresh"): (with_status(OWNERS, 202), None, "bound"),
    ("GET", "/api/v1/projects/{pid}/jobs"): (OWNERS, None, ""),
    ("GET", "/api/v1/jobs/{jid}"): (OWNERS, None, "bound"),
    # The binding's job has finished by then: owners are told so; the rest learn nothing.
    ("POST", "/api/v1/jobs/{jid}/cancel"): (with_status(OWNERS, 409), None, "bound"),
    ("POST", "/api/v1/projects/{pid}/uploads"): (with_status(OWNERS, 201), upload_body, ""),
    ("POST", "/api/v1/projects/{pid}/imports"): (with_status(OWNERS, 202), import_body, "bound"),
    ("GET", "/api/v1/projects/{pid}/items"): (REVIEWERS, None, "bound"),
    ("GET", "/api/v1/projects/{pid}/items/{iid}"): (MEMBERS, None, "bound"),
    ("GET", "/api/v1/projects/{pid}/items/{iid}/media"): (MEMBERS, None, "bound"),
    ("GET", "/api/v1/projects/{pid}/items/count"): (REVIEWERS, None, "bound"),
    ("GET", "/api/v1/projects/{pid}/items/{iid}/neighbours"): (REVIEWERS, None, "bound"),
    ("POST", "/api/v1/projects/{pid}/items/actions"): (
        OWNERS, lambda w: {"action": "skip", "ids": [w.iid], "filter": {}}, "bound"),
    ("GET", "/api/v1/projects/{pid}/stats"): (REVIEWERS, None, ""),
    ("POST", "/api/v1/projects/{pid}/tasks/next"): (MEMBERS, lambda w: {"count": 1}, "running"),
    ("POST", "/api/v1/leases/{lid}/submit"): (
        MEMBERS, lambda w: {"annotation": {"classes": [w.label_id]}}, "leased"),
    # Anyone signed in may ask; each lease that is not the caller's is reported not found.
    ("POST", "/api/v1/leases/submit"): (
        SIGNED_IN, lambda w: {"submissions": [{"lease_id": w.lid, "annotation": {"classes": [w.label_id]}}]},
        "leased"),
    ("POST", "/api/v1/leases/{lid}/skip"): (MEMBERS, None, "leased"),
    ("POST", "/api/v1/leases/{lid}/extend"): (MEMBERS, None, "leased"),
    # Anyone signed in may ask; only their own live leases are released.
    ("POST", "/api/v1/leases/release"): (SIGNED_IN, lambda w: {"lease_ids": [w.lid]}, "leased"),
    ("GET", "/api/v1/projects/{pid}/review"): (REVIEWERS, None, ""),
    ("GET", "/api/v1/projects/{pid}/review/{iid}"): (REVIEWERS, None, "bound"),
    ("GET", "/api/v1/projects/{pid}/tasks/history"): (MEMBERS, None, ""),
    # A correction of the caller's own submitted lease (the item still open: two labelers).
    ("POST", "/api/v1/leases/{lid}/correct"): (
        MEMBERS, lambda w: {"annotation": {"classes": [w.label_id]}}, "submitted"),
    ("POST", "/api/v1/projects/{pid}/items/{iid}/decide"): (
        REVIEWERS, lambda w: {"annotation": {"classes": [w.label_id]}}, "bound"),
    ("POST", "/api/v1/projects/{pid}/items/{iid}/reopen"): (OWNERS, None, "decided"),
    ("POST", "/api/v1/projects/{pid}/label-imports"): (
        with_status(OWNERS, 202), label_import_body, "bound"),
    ("POST", "/api/v1/projects/{pid}/exports"): (
        with_status(REVIEWERS, 202), lambda w: {"format": "coco"}, ""),
    ("GET", "/api/v1/projects/{pid}/exports"): (REVIEWERS, None, ""),
    ("GET", "/api/v1/exports/{eid}"): (REVIEWERS, None, "exported"),
    ("GET", "/api/v1/exports/{eid}/download"): (REVIEWERS, None, "exported"),
    ("DELETE", "/api/v1/exports/{eid}"): (with_status(REVIEWERS, 204), None, "exported"),
    ("GET", "/api/v1/projects/{pid}/ml"): (REVIEWERS, None, ""),
    ("POST", "/api/v1/projects/{pid}/ml"): (with_status(OWNERS, 202), lambda w: {"action": "train"}, "ml"),
}


@pytest.fixture(scope="module")
def cast(server: str, admin: Api) -> dict[str, Api]:
    """One signed-in account per role, shared by the cases (logout signs in afresh)."""
    people: dict[str, Api] = {"admin": admin}
    for role in ("owner", "reviewer", "labeler", "nonmember", "extra"):
        email = f"{unique(role)}@colabel.test"
        r = admin.post("/api/v1/users", {"email": email, "password": PASSWORD, "name": role})
        assert r.status_code == 201
        people[role] = Api(server).login(email, PASSWORD)
    return people


def build_world(server: str, data_dir: Path, cast: dict[str, Api], caller: str,
                setup: str) -> World:
    people = dict(cast)
    owner = people["owner"]
    pid = owner.post("/api/v1/projects", project_body()).json()["project"]["id"]
    for role in ("reviewer", "labeler"):
        owner.put(f"/api/v1/projects/{pid}/members", {"email": people[role].email, "role": role})
    world = World(server, data_dir, people, pid, cast["extra"].email, None)
    if setup in ("bound", "running", "paused", "leased", "decided", "submitted"):
        done = wait_job(people["admin"], people["admin"].put(f"/api/v1/projects/{pid}/dataset",
                                                             dataset_body(world)))
        assert done["status"] == "done", done
        world.jid = done["id"]
        world.iid = owner.get(f"/api/v1/projects/{pid}/items").json()["items"][0]["id"]
        world.label_id = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"][0]["id"]
    if setup == "submitted":
        r = owner.patch(f"/api/v1/projects/{pid}",
                        {"consensus": {"enabled": True, "min": 2, "max": 2, "threshold": 0.5}})
        assert r.status_code == 200, r.text
    if setup in ("running", "paused", "leased", "decided", "submitted"):
        assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    if setup == "paused":
        assert owner.post(f"/api/v1/projects/{pid}/pause").status_code == 200
    if setup == "decided":
        lease = owner.post(f"/api/v1/projects/{pid}/tasks/next", {"count": 1}).json()["leases"][0]
        r = owner.post(f"/api/v1/leases/{lease['lease_id']}/submit",
                       {"annotation": {"classes": [world.label_id]}})
        assert r.json()["item_status"] == "labeled"
    if setup == "leased":
        holder = people[caller] if caller in ("admin", "owner", "reviewer", "labeler") else owner
        leased = holder.post(f"/api/v1/projects/{pid}/tasks/next", {"count": 1}).json()["leases"]
        world.lid = leased[0]["lease_id"]
        world.label_id = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"][0]["id"]
    if setup == "submitted":
        holder = people[caller] if caller in ("admin", "owner", "reviewer", "labeler") else owner
        lease = holder.post(f"/api/v1/projects/{pid}/tasks/next", {"count": 1}).json()["leases"][0]
        r = holder.post(f"/api/v1/leases/{lease['lease_id']}/submit",
                        {"annotation": {"classes": [world.label_id]}})
        assert r.json()["item_status"] == "in_progress", r.text
        world.lid = lease["lease_id"]
    if setup == "archived":
        assert owner.post(f"/api/v1/projects/{pid}/archive").status_code == 200
    if setup == "ml":
        r = owner.patch(f"/api/v1/projects/{pid}", {"ml_assist": {"enabled": True, "min_labeled": 1000}})
        assert r.status_code == 200, r.text
    if setup == "exported":
        world.eid = owner.post(f"/api/v1/projects/{pid}/exports", {"format": "csv"}).json()["export"]["id"]
        wait_export(owner, world.eid)
    if setup == "own-token" and caller != "anonymous":
        who = people[caller]
        world.token_id = who.post("/api/v1/tokens", {"name": "mine"}).json()["id"]
    return world


def test_matrix_covers_every_route_in_the_openapi_document(admin: Api) -> None:
    doc = admin.get("/api/v1/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == set(CASES)


@pytest.mark.reliability(
    area='Access',
    attack='Called every route in the OpenAPI document as admin, owner, reviewer, labeler, non-member,'
           ' anonymous and with tokens, against every resource state (IDOR sweep).',
    promise='Each role gets exactly what the role table grants; others get 401/403/404 and nothing '
            'changes.')
@pytest.mark.parametrize("caller", ROLES)
@pytest.mark.parametrize("route", sorted(CASES), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_as_role(
    route: tuple[str, str], caller: str, server: str, data_dir: Path,
    cast: dict[str, Api],
) -> None:
    expected, body, setup = CASES[route]
    world = build_world(server, data_dir, cast, caller, setup)
    method, path = route
    if caller == "anonymous":
        client = Api(server)
    elif path.startswith(("/api/v1/auth/", "/api/v1/invites/accept")):
        # Signing in or out replaces or ends the session: use a fresh one for these.
        assert cast[caller].user is not None
        client = Api(server).login(cast[caller].user["email"], PASSWORD)
    else:
        client = world.people[caller]
    payload = body(world) if body else None
    kwargs: dict[str, Any] = {}
    if isinstance(payload, Multipart):
        kwargs = {"files": payload.files, "data": payload.data}
    elif payload is not None:
        kwargs = {"json": payload}
    r = client.request(method, world.fill(path), **kwargs)
    assert r.status_code == expected[caller], f"{method} {path} as {caller}: {r.text[:300]}"
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) == {"code", "message", "details"} and err["message"]
