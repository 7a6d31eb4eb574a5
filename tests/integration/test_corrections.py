"""A labeler going back: their submissions of this sign-in session, correcting one while its
item is not decided (the correction is what consensus then counts), and read-only after."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import websockets

from tests.conftest import PASSWORD
from tests.infra import Api
from tests.work_setup import MakeUser, item, next_, setup_project, submit
from tests.yclient import PyClient


def history(api: Api, pid: int) -> list[dict]:
    r = api.get(f"/api/v1/projects/{pid}/tasks/history")
    assert r.status_code == 200, r.text
    entries: list[dict] = r.json()["items"]
    return entries


def correct(api: Api, lease_id: str, annotation: dict) -> httpx.Response:
    return api.post(f"/api/v1/leases/{lease_id}/correct", {"annotation": annotation})


def test_a_correction_counts_until_the_item_is_decided(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=2, labelers=2,
                      consensus={"enabled": True, "min": 2, "max": 3, "threshold": 0.5})
    a, b = p.labelers
    cat, dog = p.labels["cat"], p.labels["dog"]
    [mine] = next_(a, p.pid)
    iid = mine["item"]["id"]
    assert history(a, p.pid) == []
    assert submit(a, mine, {"classes": [cat]}).status_code == 200
    [entry] = history(a, p.pid)
    assert entry["lease_id"] == mine["lease_id"] and entry["item"]["id"] == iid
    assert entry["editable"] is True and entry["corrected_at"] is None
    assert a.user is not None and entry["document"] == f"{p.pid}/{iid}/{a.user['id']}"

    r = correct(a, mine["lease_id"], {"classes": [dog]})
    assert r.status_code == 200, r.text
    assert r.json()["item_status"] == "in_progress" and r.json()["annotation"] == {"classes": [dog]}
    [entry] = history(a, p.pid)
    assert entry["corrected_at"] is not None and entry["editable"] is True

    # b agrees with the correction, not with what a first sent: the item is decided "dog".
    theirs = next(x for x in next_(b, p.pid, 1) if x["item"]["id"] == iid)
    assert submit(b, theirs, {"classes": [dog]}).json()["item_status"] == "labeled"
    decided = item(p.owner, p.pid, iid)
    assert decided["final"] == {"classes": [dog]} and decided["decided_by"] == "consensus"

    # Decided: read-only to a, and history says so.
    [entry] = history(a, p.pid)
    assert entry["editable"] is False
    r = correct(a, mine["lease_id"], {"classes": [cat]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "item_closed"
    assert item(p.owner, p.pid, iid)["final"] == {"classes": [dog]}


def test_bad_corrections_change_nothing(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=3, labelers=2,
                      consensus={"enabled": True, "min": 2, "max": 2, "threshold": 0.5})
    a, b = p.labelers
    cat = p.labels["cat"]
    held = next_(a, p.pid, 1)
    done = next_(a, p.pid, 1, holding=held)
    assert submit(a, done[0], {"classes": [cat]}).status_code == 200
    # Not submitted yet: submit it first.
    r = correct(a, held[0]["lease_id"], {"classes": [cat]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_submitted"
    # Someone else's lease, an unknown one.
    assert correct(b, done[0]["lease_id"], {"classes": [cat]}).status_code == 404
    assert correct(a, "nope", {"classes": [cat]}).status_code == 404
    # Invalid annotations: an unknown label, two classes in a multiclass project, both sources.
    for bad in ({"classes": [999_999]}, {"classes": [cat, p.labels["dog"]]}):
        r = correct(a, done[0]["lease_id"], bad)
        assert r.status_code == 422, r.text
    r = a.post(f"/api/v1/leases/{done[0]['lease_id']}/correct",
               {"annotation": {"classes": [cat]}, "state_vector": "AA=="})
    assert r.status_code == 422
    [entry] = history(a, p.pid)
    assert entry["corrected_at"] is None
    # Someone outside the project sees no history of it.
    stranger = make_user("stranger")
    assert stranger.get(f"/api/v1/projects/{p.pid}/tasks/history").status_code in (403, 404)
    # A new sign-in session starts an empty history.
    assert a.user is not None
    again = Api(a.base_url).login(a.user["email"], PASSWORD)
    assert history(again, p.pid) == []


def test_a_decided_items_document_is_read_only_to_its_labeler(
        make_user: MakeUser, data_dir: Path, server: str) -> None:
    p = setup_project(make_user, data_dir, items=1, labelers=1)
    [a] = p.labelers
    [mine] = next_(a, p.pid)
    assert submit(a, mine, {"classes": [p.labels["cat"]]}).json()["item_status"] == "labeled"
    session = a.client.cookies["colabel_session"]

    async def attempt() -> bool:
        ws = await websockets.connect(
            f"{server.replace('http', 'ws', 1)}/collab/{mine['document']}",
            additional_headers={"Cookie": f"colabel_session={session}", "Origin": server})
        client = PyClient(ws)
        try:
            await client.start()
            client.map["late"] = "edit"
            for _ in range(100):
                if client.denied:
                    break
                await asyncio.sleep(0.02)
            return client.denied
        finally:
            await client.close()

    assert asyncio.run(attempt()) is True
