"""Review and decide, re-open, live events, and leases kept alive by an open document."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets

from tests.infra import Api
from tests.work_setup import next_, setup_project, submit
from tests.yclient import py_client

MakeUser = Callable[..., Api]


def to_review(make_user: MakeUser, data_dir: Path) -> tuple[Any, int]:
    """A project whose only item ended in needs_review (two labelers disagreeing, max 2)."""
    p = setup_project(make_user, data_dir, items=1, labelers=2,
                      consensus={"enabled": True, "min": 2, "max": 2})
    a, b = p.labelers
    la, lb = next_(a, p.pid)[0], next_(b, p.pid)[0]
    submit(a, la, {"classes": [p.labels["cat"]]})
    r = submit(b, lb, {"classes": [p.labels["dog"]]}).json()
    assert r["item_status"] == "needs_review"
    return p, la["item"]["id"]


def test_review_queue_decide_and_reopen(make_user: MakeUser, data_dir: Path) -> None:
    p, iid = to_review(make_user, data_dir)
    queue = p.owner.get(f"/api/v1/projects/{p.pid}/review").json()["items"]
    assert [i["id"] for i in queue] == [iid]
    users = sorted(a["user"]["id"] for a in queue[0]["annotations"])
    assert users == sorted(x.id for x in p.labelers)
    assert p.labelers[0].get(f"/api/v1/projects/{p.pid}/review").status_code == 403
    bad = p.owner.post(f"/api/v1/projects/{p.pid}/items/{iid}/decide",
                       {"annotation": {"classes": [p.labels["cat"], p.labels["dog"]]}})
    assert bad.status_code == 422
    r = p.owner.post(f"/api/v1/projects/{p.pid}/items/{iid}/decide",
                     {"annotation": {"classes": [p.labels["bird"]]}})
    assert r.status_code == 200, r.text
    assert r.json()["final"] == {"classes": [p.labels["bird"]]} and r.json()["project_completed"]
    item = p.owner.get(f"/api/v1/projects/{p.pid}/items/{iid}").json()["item"]
    assert item["status"] == "labeled" and item["decided_by"] == "owner"
    assert p.owner.get(f"/api/v1/projects/{p.pid}/review").json()["items"] == []
    # Re-open: back to work with one more labeler than it had.
    r = p.owner.post(f"/api/v1/projects/{p.pid}/items/{iid}/reopen")
    assert r.status_code == 200 and r.json() == {"item_id": iid, "status": "in_progress",
                                                 "target": 3, "max": 2}
    assert p.owner.get(f"/api/v1/projects/{p.pid}").json()["project"]["status"] == "running"
    c = make_user("third")
    p.owner.put(f"/api/v1/projects/{p.pid}/members", {"email": c.email, "role": "labeler"})
    assert [x["item"]["id"] for x in next_(c, p.pid)] == [iid]
    assert next_(p.labelers[0], p.pid) == []  # never the same item twice
    assert p.owner.post(f"/api/v1/projects/{p.pid}/items/{iid}/reopen").status_code == 409


async def test_events_stream_progress_and_submits(make_user: MakeUser, data_dir: Path,
                                                  server: str) -> None:
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=2, labelers=1)
    token = p.owner.post("/api/v1/tokens", {"name": "ev"}).json()["token"]
    url = f"{server.replace('http://', 'ws://')}/events/{p.pid}?token={token}"
    async with websockets.connect(url) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first["type"] == "progress" and first["counts"] == {"unlabeled": 2}
        a = p.labelers[0]
        leases = await asyncio.to_thread(next_, a, p.pid)
        await asyncio.to_thread(submit, a, leases[0], {"classes": [p.labels["cat"]]})
        seen: list[dict[str, Any]] = []
        while not any(e["type"] == "submitted" for e in seen):
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    kinds = [e["type"] for e in seen]
    assert "leased" in kinds
    sub = next(e for e in seen if e["type"] == "submitted")
    assert sub["item_status"] == "labeled" and sub["user_id"] == a.id
    labeler_token = a.post("/api/v1/tokens", {"name": "ev"}).json()["token"]
    denied = f"{server.replace('http://', 'ws://')}/events/{p.pid}?token={labeler_token}"
    try:
        async with websockets.connect(denied):
            raise AssertionError("labelers must not watch project events")
    except websockets.InvalidStatus as exc:
        assert exc.response.status_code == 403


async def test_an_open_document_keeps_the_lease_alive(make_user: MakeUser, data_dir: Path,
                                                      services: Any, server: str) -> None:
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=1, labelers=1)
    a = p.labelers[0]
    lease = (await asyncio.to_thread(next_, a, p.pid))[0]
    await services.db.execute(
        "UPDATE leases SET expires_at = now() + interval '2 seconds' WHERE id = $1", lease["lease_id"])
    token = a.post("/api/v1/tokens", {"name": "doc"}).json()["token"]
    async with py_client(server.replace("http://", "ws://"), lease["document"], token):
        await asyncio.sleep(1.0)
    expires = await services.db.fetchval("SELECT expires_at > now() + interval '60 seconds' "
                                         "FROM leases WHERE id = $1", lease["lease_id"])
    assert expires is True
