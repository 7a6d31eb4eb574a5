from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import admin_at, bind_folder, project_body
from tests.infra import Api, unique, wait_job
from tests.reliability import Measured

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]


def deep(levels: int) -> list[dict[str, Any]]:
    node: dict[str, Any] = {"name": f"L{levels}"}
    for d in range(levels - 1, 0, -1):
        node = {"name": f"L{d}", "children": [node]}
    return [node]


def bind_local(owner: Api, pid: int, data_dir: Path) -> None:
    folder = data_dir / "datasets" / unique("imgs")
    folder.mkdir(parents=True)
    r = bind_folder(owner, pid, folder)
    assert r.ok, r.text


def started(make_project: MakeProject, data_dir: Path, **kw: Any) -> tuple[Api, dict[str, Any]]:
    owner, project = make_project(**kw)
    bind_local(owner, project["id"], data_dir)
    r = owner.post(f"/api/v1/projects/{project['id']}/start")
    assert r.status_code == 200, r.text
    return owner, r.json()["project"]


# --- names ---------------------------------------------------------------------------

def test_create_returns_every_setting(make_user: Callable[..., Api]) -> None:
    owner = make_user()
    body = project_body(task_type="multilabel",
                        consensus={"enabled": True, "min": 2, "max": 4, "threshold": 0.6},
                        ml_assist={"enabled": True, "min_labeled": 50})
    r = owner.post("/api/v1/projects", body)
    assert r.status_code == 201, r.text
    p = r.json()["project"]
    assert p["name"] == body["name"] and p["media_type"] == "image"
    assert p["task_type"] == "multilabel" and p["status"] == "initializing"
    assert p["role"] == "owner"
    assert p["consensus"] == {"enabled": True, "min": 2, "max": 4, "threshold": 0.6}
    assert p["ml_assist"]["enabled"] is True and p["ml_assist"]["min_labeled"] == 50
    assert p["ml_assist"]["precision_target"] == 0.9
    assert p["instructions"]["html"] == "<p>Label the <strong>animal</strong>.</p>\n"
    assert p["instructions"]["url"] == "https://example.org/guide"
    assert p["editable"]["task_type"] is True and p["label_count"] == 6
    listed = owner.get("/api/v1/projects").json()["projects"]
    assert [x["id"] for x in listed] == [p["id"]]


def test_names_are_unique_forever_even_after_delete_and_rename(make_project: MakeProject) -> None:
    owner, p = make_project()
    again = owner.post("/api/v1/projects", project_body(name=p["name"].upper()))
    assert again.status_code == 409 and again.json()["error"]["code"] == "name_taken"
    new_name = unique("renamed")
    assert owner.patch(f"/api/v1/projects/{p['id']}", {"name": new_name}).status_code == 200
    # The old name stays taken after a rename...
    assert owner.post("/api/v1/projects", project_body(name=p["name"])).status_code == 409
    assert owner.delete(f"/api/v1/projects/{p['id']}").status_code == 204
    assert owner.get(f"/api/v1/projects/{p['id']}").status_code == 404
    # ...and so does the current one after deletion.
    r = owner.post("/api/v1/projects", project_body(name=new_name))
    assert r.status_code == 409


@pytest.mark.parametrize("body,where", [
    ({"task_type": "keypoints"}, "task_type"),
    ({"media_type": "video"}, "media_type"),
    ({"name": ""}, "name"),
    ({"colour": "red"}, "colour"),
])
def test_bad_create_bodies_are_422_and_create_nothing(
    make_user: Callable[..., Api], body: dict[str, Any], where: str,
) -> None:
    owner = make_user()
    r = owner.post("/api/v1/projects", project_body(**body))
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "validation_error" and err["details"][0]["loc"][0] == where
    assert owner.get("/api/v1/projects").json()["projects"] == []


def test_malformed_json_is_400(make_user: Callable[..., Api]) -> None:
    owner = make_user()
    r = owner.client.post("/api/v1/projects", content=b"{nope",
                          headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


# --- labels --------------------------------------------------------------------------

def test_six_levels_ok_seventh_is_a_clear_422(make_user: Callable[..., Api]) -> None:
    owner = make_user()
    ok = owner.post("/api/v1/projects", project_body(labels=deep(6)))
    assert ok.status_code == 201
    labels = ok.json()["labels"]
    node = labels[0]
    while node["children"]:
        node = node["children"][0]
    assert node["path"] == "L1/L2/L3/L4/L5/L6" and node["depth"] == 6
    bad = owner.post("/api/v1/projects", project_body(labels=deep(7)))
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "label_tree_too_deep"
    assert "at most 6 levels" in bad.json()["error"]["message"]


def test_sibling_names_unique(make_user: Callable[..., Api]) -> None:
    owner = make_user()
    r = owner.post("/api/v1/projects", project_body(labels=[{"name": "Cat"}, {"name": "cat"}]))
    assert r.status_code == 422 and r.json()["error"]["code"] == "duplicate_label"


def test_hotkeys_go_to_leaves_before_groups(make_project: MakeProject) -> None:
    labels = [{"name": f"Top{i}", "children": [{"name": "A"}, {"name": "B"}]} for i in range(4)]
    owner, p = make_project(labels=labels)
    tree = owner.get(f"/api/v1/projects/{p['id']}/labels").json()["labels"]
    order: list[dict[str, Any]] = []

    def walk(nodes: list[dict[str, Any]]) -> None:
        for n in nodes:
            order.append(n)
            walk(n["children"])

    walk(tree)
    assert [n["path"] for n in order[:4]] == ["Top0", "Top0/A", "Top0/B", "Top1"]
    # The eight leaves take 1-8 in display order, the four groups the keys after them.
    assert [n["hotkey"] for n in order if n["children"]] == ["9", "0", "q", "w"]
    assert [n["hotkey"] for n in order if not n["children"]] == [str(i) for i in range(1, 9)]
    ids = [n["id"] for n in order]
    assert len(set(ids)) == 12


def test_labels_keep_ids_when_renamed_moved_and_added_after_start(
    make_project: MakeProject, data_dir: Path,
) -> None:
    owner, p = started(make_project, data_dir)
    pid = p["id"]
    tree = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    animal, color = tree
    cat, dog = animal["children"]
    edited = [
        {"id": color["id"], "name": "Colour", "children": [
            {"id": c["id"], "name": c["name"]} for c in color["children"]]},
        {"id": animal["id"], "name": "Animal", "children": [
            {"id": dog["id"], "name": "Dog"}, {"id": cat["id"], "name": "Kitten"},
            {"name": "Bird"}]},
    ]
    r = owner.patch(f"/api/v1/projects/{pid}/labels", {"labels": edited})
    assert r.status_code == 200, r.text
    new = r.json()["labels"]
    assert new[0]["id"] == color["id"] and new[0]["path"] == "Colour"
    assert new[0]["children"][0]["hotkey"] == "1"  # the first leaf
    kids = new[1]["children"]
    assert [k["name"] for k in kids] == ["Dog", "Kitten", "Bird"]
    assert kids[1]["id"] == cat["id"] and kids[1]["path"] == "Animal/Kitten"
    assert kids[2]["id"] not in {cat["id"], dog["id"]}


def test_label_deletion_rules(make_project: MakeProject, data_dir: Path) -> None:
    owner, p = make_project()
    pid = p["id"]
    tree = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    # Before start an unused label is simply removed.
    keep = [{"id": tree[0]["id"], "name": "Animal"}]
    r = owner.patch(f"/api/v1/projects/{pid}/labels", {"labels": keep})
    assert r.status_code == 200 and len(r.json()["labels"]) == 1
    # Ids from other projects are refused.
    _, other = make_project()
    foreign = owner.patch(f"/api/v1/projects/{pid}/labels",
                          {"labels": [{"id": other["id"] * 1000 + 7, "name": "x"}]})
    assert foreign.status_code == 422


def test_used_labels_cannot_be_deleted(
    make_project: MakeProject, data_dir: Path, database_url: str,
) -> None:
    import asyncpg

    from tests.conftest import run_sync

    owner, p = started(make_project, data_dir)
    pid = p["id"]
    tree = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    cat = tree[0]["children"][0]

    async def mark_used() -> None:
        conn = await asyncpg.connect(database_url)
        await conn.execute("UPDATE labels SET used_at = now() WHERE id = $1", cat["id"])
        await conn.close()

    run_sync(mark_used)
    tree = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    assert tree[0]["children"][0]["used"] is True
    without_cat = [{"id": tree[0]["id"], "name": "Animal"},
                   {"id": tree[1]["id"], "name": "Color"}]
    r = owner.patch(f"/api/v1/projects/{pid}/labels", {"labels": without_cat})
    assert r.status_code == 409 and r.json()["error"]["code"] == "label_in_use"
    assert "Cat" in r.json()["error"]["message"]
    after = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    assert after == tree


# --- instructions --------------------------------------------------------------------

@pytest.mark.reliability(
    area='Browser',
    attack='Stored instructions with script tags, event handlers and javascript: URLs.',
    promise='The HTML served back is sanitized; only http(s) instruction URLs are accepted.')
def test_instructions_are_sanitized_and_urls_must_be_http(make_project: MakeProject) -> None:
    owner, p = make_project()
    pid = p["id"]
    r = owner.patch(f"/api/v1/projects/{pid}", {"instructions": {
        "text": "Hi <script>alert(1)</script><a href='javascript:x()' onclick='y()'>z</a>"}})
    assert r.status_code == 200
    ins = r.json()["project"]["instructions"]
    assert "<script" not in ins["html"] and "onclick" not in ins["html"]
    assert "javascript" not in ins["html"]
    assert ins["url"] == "https://example.org/guide"  # untouched by a text-only patch
    bad = owner.patch(f"/api/v1/projects/{pid}", {"instructions": {"url": "javascript:alert(1)"}})
    assert bad.status_code == 422
    assert owner.get(f"/api/v1/projects/{pid}").json()["project"]["instructions"] == ins


# --- consensus and ML ----------------------------------------------------------------

@pytest.mark.parametrize("consensus", [
    {"enabled": True, "min": 0, "max": 2}, {"enabled": True, "min": 3, "max": 2},
    {"enabled": True, "min": 2, "max": 11}, {"enabled": True, "threshold": 0.2},
])
def test_consensus_validated(make_user: Callable[..., Api], consensus: dict[str, Any]) -> None:
    r = make_user().post("/api/v1/projects", project_body(consensus=consensus))
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"][0] == "consensus"


def test_polygon_refuses_consensus_and_semantic_refuses_ml(make_user: Callable[..., Api]) -> None:
    owner = make_user()
    r = owner.post("/api/v1/projects", project_body(task_type="polygon",
                                                    consensus={"enabled": True}))
    assert r.status_code == 422 and r.json()["error"]["code"] == "consensus_not_supported"
    r = owner.post("/api/v1/projects", project_body(task_type="semantic",
                                                    ml_assist={"enabled": True}))
    assert r.status_code == 422 and r.json()["error"]["code"] == "ml_assist_not_supported"
    poly = owner.post("/api/v1/projects", project_body(task_type="polygon")).json()["project"]
    r = owner.patch(f"/api/v1/projects/{poly['id']}", {"consensus": {"enabled": True}})
    assert r.status_code == 422
    # Switching a consensus project to polygon is refused too.
    mc = owner.post("/api/v1/projects", project_body(consensus={"enabled": True})).json()
    r = owner.patch(f"/api/v1/projects/{mc['project']['id']}", {"task_type": "polygon"})
    assert r.status_code == 422


def test_consensus_editable_before_start_immutable_after(
    make_project: MakeProject, data_dir: Path,
) -> None:
    owner, p = make_project()
    pid = p["id"]
    r = owner.patch(f"/api/v1/projects/{pid}", {"consensus": {"enabled": True, "max": 5}})
    assert r.status_code == 200
    assert r.json()["project"]["consensus"] == {"enabled": True, "min": 2, "max": 5,
                                                "threshold": 0.5}
    bind_local(owner, pid, data_dir)
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    r = owner.patch(f"/api/v1/projects/{pid}", {"consensus": {"min": 3}})
    assert r.status_code == 409
    assert r.json()["error"]["details"] == {"field": "consensus"}
    # Re-sending the same values is harmless.
    same = owner.patch(f"/api/v1/projects/{pid}", {"consensus": {"min": 2}})
    assert same.status_code == 200


def test_ml_assist_editable_after_start(make_project: MakeProject, data_dir: Path) -> None:
    owner, p = started(make_project, data_dir)
    r = owner.patch(f"/api/v1/projects/{p['id']}",
                    {"ml_assist": {"enabled": True, "precision_target": 0.95}})
    assert r.status_code == 200
    assert r.json()["project"]["ml_assist"]["precision_target"] == 0.95
    bad = owner.patch(f"/api/v1/projects/{p['id']}", {"ml_assist": {"precision_target": 1.5}})
    assert bad.status_code == 422


# --- status and immutability ---------------------------------------------------------

def test_status_machine(make_project: MakeProject, data_dir: Path) -> None:
    owner, p = make_project()
    pid = p["id"]
    r = owner.post(f"/api/v1/projects/{pid}/start")
    assert r.status_code == 409 and r.json()["error"]["details"]["missing"] == ["dataset"]
    assert owner.post(f"/api/v1/projects/{pid}/pause").status_code == 409
    bind_local(owner, pid, data_dir)
    r = owner.post(f"/api/v1/projects/{pid}/start")
    assert r.status_code == 200 and r.json()["project"]["status"] == "running"
    assert r.json()["project"]["started_at"] is not None
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 409
    assert owner.post(f"/api/v1/projects/{pid}/resume").status_code == 409
    r = owner.post(f"/api/v1/projects/{pid}/pause")
    assert r.json()["project"]["status"] == "paused"
    r = owner.post(f"/api/v1/projects/{pid}/resume")
    assert r.json()["project"]["status"] == "running"
    err = owner.post(f"/api/v1/projects/{pid}/resume").json()["error"]
    assert err["code"] == "invalid_transition" and err["details"]["status"] == "running"


def test_project_without_labels_cannot_start(make_project: MakeProject, data_dir: Path) -> None:
    owner, p = make_project(labels=[])
    bind_local(owner, p["id"], data_dir)
    r = owner.post(f"/api/v1/projects/{p['id']}/start")
    assert r.status_code == 409 and r.json()["error"]["details"]["missing"] == ["labels"]


def test_task_type_and_dataset_immutable_after_start(
    make_project: MakeProject, data_dir: Path,
) -> None:
    owner, p = make_project()
    pid = p["id"]
    assert owner.patch(f"/api/v1/projects/{pid}", {"task_type": "bbox"}).status_code == 200
    bind_local(owner, pid, data_dir)
    r = owner.post(f"/api/v1/projects/{pid}/start")
    assert r.json()["project"]["editable"] == {
        "name": True, "labels": True, "instructions": True, "ml_assist": True,
        "refresh": True, "media_type": False, "task_type": False, "consensus": False,
        "dataset": False,
    }
    r = owner.patch(f"/api/v1/projects/{pid}", {"task_type": "polygon"})
    assert r.status_code == 409
    assert r.json()["error"] == {
        "code": "immutable_field",
        "message": "task_type cannot change once the project has started (status: running)",
        "details": {"field": "task_type"},
    }
    before = owner.get(f"/api/v1/projects/{pid}").json()["project"]
    rebind = data_dir / "datasets" / unique("other")
    rebind.mkdir(parents=True)
    r = bind_folder(owner, pid, rebind)
    assert r.status_code == 409 and r.json()["error"]["details"] == {"field": "dataset"}
    # Refresh settings remain editable on the same binding.
    r = owner.put(f"/api/v1/projects/{pid}/dataset", {
        "datastore": before["dataset"]["datastore"], "pattern": before["dataset"]["pattern"],
        "refresh": {"enabled": True, "interval_s": 600}})
    assert r.status_code == 200, r.text
    assert r.json()["project"]["refresh"]["enabled"] is True
    after = owner.get(f"/api/v1/projects/{pid}").json()["project"]
    assert after["task_type"] == "bbox" and after["dataset"] == before["dataset"]


def test_dataset_binding_refusals(make_project: MakeProject, tmp_path: Path) -> None:
    owner, p = make_project()
    url = f"/api/v1/projects/{p['id']}/dataset"
    outside = admin_at(owner.base_url).put(url, {"datastore": {"kind": "local", "path": str(tmp_path)}})
    assert outside.status_code == 422 and outside.json()["error"]["code"] == "path_not_allowed"
    r = owner.put(url, {"datastore": {"kind": "azure_blob", "account_url": "https://169.254.169.254",
                                      "container": "imgs", "sas_token": "x"}})
    assert r.status_code == 422
    r = owner.put(url, {"datastore": {"kind": "ftp"}})
    assert r.status_code == 422
    assert owner.get(f"/api/v1/projects/{p['id']}").json()["project"]["dataset"] is None
    ok = owner.put(url, {"datastore": {"kind": "upload"}, "pattern": "**/*.*"})
    assert ok.status_code == 202 and wait_job(owner, ok)["status"] == "done"


# --- members -------------------------------------------------------------------------

def test_members_managed_by_owner_with_last_owner_guard(
    make_project: MakeProject, make_user: Callable[..., Api],
) -> None:
    owner, p = make_project()
    pid = p["id"]
    lab, rev = make_user("lab"), make_user("rev")
    r = owner.put(f"/api/v1/projects/{pid}/members", {"email": lab.email, "role": "labeler"})
    assert r.status_code == 200
    r = owner.put(f"/api/v1/projects/{pid}/members",
                  {"email": rev.user["email"].upper(), "role": "reviewer"})
    assert r.status_code == 200
    roles = {m["user"]["id"]: m["role"] for m in r.json()["members"]}
    assert roles == {owner.id: "owner", lab.id: "labeler", rev.id: "reviewer"}
    assert lab.get(f"/api/v1/projects/{pid}").json()["project"]["role"] == "labeler"
    assert owner.put(f"/api/v1/projects/{pid}/members",
                     {"user_id": 999999999, "role": "labeler"}).status_code == 404
    assert owner.put(f"/api/v1/projects/{pid}/members",
                     {"user_id": lab.id, "role": "boss"}).status_code == 422
    # A member's role changes by id too.
    assert owner.put(f"/api/v1/projects/{pid}/members",
                     {"user_id": rev.id, "role": "labeler"}).status_code == 200
    last = owner.put(f"/api/v1/projects/{pid}/members", {"user_id": owner.id, "role": "labeler"})
    assert last.status_code == 409 and last.json()["error"]["code"] == "last_owner"
    assert owner.delete(f"/api/v1/projects/{pid}/members/{owner.id}").status_code == 409
    assert owner.delete(f"/api/v1/projects/{pid}/members/{lab.id}").status_code == 204
    assert lab.get(f"/api/v1/projects/{pid}").status_code == 404
    assert owner.delete(f"/api/v1/projects/{pid}/members/{lab.id}").status_code == 404


@pytest.mark.reliability(
    area="Access",
    attack="An owner of a fresh project of their own PUTs members by user_id for ids of accounts "
           "they share nothing with, existing and not.",
    promise="Ids of accounts an owner cannot see are not an oracle: the same 404 for every one, no "
            "name or email, nobody added; new people are added by email.")
def test_member_ids_are_not_an_oracle(make_project: MakeProject, make_user: Callable[..., Api],
                                      measured: Measured) -> None:
    owner, p = make_project()
    pid = p["id"]
    stranger = make_user("stranger")
    answers = [owner.put(f"/api/v1/projects/{pid}/members", {"user_id": uid, "role": "labeler"})
               for uid in (stranger.id, 2**31 - 7)]
    assert [r.status_code for r in answers] == [404, 404]
    bodies = [r.json()["error"] for r in answers]
    assert bodies[0]["code"] == "unknown_user"
    ids = (stranger.id, 2**31 - 7)
    assert [b["message"].replace(str(uid), "N") for b, uid in zip(bodies, ids, strict=True)] == \
        [bodies[1]["message"].replace(str(ids[1]), "N")] * 2
    assert stranger.email not in answers[0].text and stranger.user["name"] not in answers[0].text
    members = owner.get(f"/api/v1/projects/{pid}/members").json()["members"]
    assert [m["user"]["id"] for m in members] == [owner.id]
    assert stranger.get(f"/api/v1/projects/{pid}").status_code == 404
    # By email the owner adds them (knowing the address is what it takes).
    assert owner.put(f"/api/v1/projects/{pid}/members",
                     {"email": stranger.email, "role": "labeler"}).status_code == 200
    measured("existing and unknown ids: the same 404 unknown_user, no name or email, nobody added")


def test_admin_sees_and_manages_every_project(
    make_project: MakeProject, admin: Api, make_user: Callable[..., Api],
) -> None:
    _, p = make_project()
    assert admin.get(f"/api/v1/projects/{p['id']}").json()["project"]["is_member"] is False
    assert p["id"] in [x["id"] for x in admin.get("/api/v1/projects?limit=1000").json()["projects"]]
    newbie = make_user()
    r = admin.put(f"/api/v1/projects/{p['id']}/members", {"user_id": newbie.id, "role": "owner"})
    assert r.status_code == 200
    assert newbie.patch(f"/api/v1/projects/{p['id']}", {"name": unique("by-new-owner")}).status_code == 200
