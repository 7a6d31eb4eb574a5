"""Three Colabel nodes behind nginx, reached through nginx only: live documents, presence,
/events, the work queue and exports behave as one server, whichever node a request or a
socket lands on. Real processes: nginx from Debian's package, `colabel serve`, Postgres,
Redis and stock y-websocket clients in Node."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest
import websockets

from tests.cluster.stack import Stack
from tests.faults.cluster_kit import (
    Labeler,
    check_dispatch_invariants,
    decide_reviews,
    make_project,
    open_items,
    person,
    token_api,
    wait_until,
)
from tests.yclient import node_client, result

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CONSENSUS = {"enabled": True, "min": 2, "max": 3}


def nodes_serving(stack: Stack, since: int, path_part: str) -> Counter[str]:
    """Which nodes answered the requests (or sockets) logged after the first `since` whose
    path holds `path_part`."""
    return Counter(p.node for p in stack.balancer.passed()[since:] if path_part in p.path)


def test_stock_clients_spread_over_the_nodes_converge_and_see_each_other(stack: Stack) -> None:
    admin = stack.cluster.admin(stack.front)
    owner = person(admin, "owner")
    docs = make_project(stack.cluster, owner, [], items=1, task_type="bbox", start=False,
                        via=stack.front)
    room = f"{docs.pid}/{docs.items[0]}/{owner.id}"
    since = len(stack.balancer.passed())
    keys = [f"k{i}" for i in range(6)]
    clients = [node_client(stack.front.base, room, owner.token, key=k, value=i, expect=keys,
                           timeout_ms=20000, hold_ms=1500) for i, k in enumerate(keys)]
    got = [result(c, 40) for c in clients]
    assert all(g["ok"] for g in got), got
    assert all(g["map"] == {k: i for i, k in enumerate(keys)} for g in got)
    # Presence crossed the nodes: every client saw all six at once.
    assert [g["peers"] for g in got] == [6] * 6
    time.sleep(0.5)  # nginx logs a socket once it has closed
    spread = nodes_serving(stack, since, "/collab/")
    assert sum(spread.values()) == 6 and len(spread) == 3, spread


async def test_events_reach_watchers_on_every_node(stack: Stack) -> None:
    admin = stack.cluster.admin(stack.front)
    owner, labeler = person(admin, "owner"), person(admin, "labeler")
    project = make_project(stack.cluster, owner, [labeler], items=3, via=stack.front)
    since = len(stack.balancer.passed())
    url = f"{stack.front.ws}/events/{project.pid}?token={owner.token}"
    watchers = [await websockets.connect(url) for _ in range(3)]
    try:
        for ws in watchers:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "progress"
        r = await asyncio.to_thread(token_api(stack.front.base, labeler).post,
                                    f"/api/v1/projects/{project.pid}/tasks/next", {"count": 1})
        assert r.status_code == 200, r.text

        async def leased(ws: websockets.ClientConnection) -> dict[str, object]:
            while True:
                event = json.loads(await ws.recv())
                if event["type"] == "leased":
                    return dict(event)

        got = await asyncio.wait_for(asyncio.gather(*(leased(ws) for ws in watchers)), 10)
        assert all(e["user_id"] == labeler.id for e in got)
    finally:
        for ws in watchers:
            await ws.close()
    await asyncio.sleep(0.5)
    spread = nodes_serving(stack, since, "/events/")
    assert sum(spread.values()) == 3 and len(spread) == 3, spread


def test_labelers_on_every_node_keep_the_dispatchers_invariants(stack: Stack) -> None:
    admin = stack.cluster.admin(stack.front)
    owner = person(admin, "owner")
    people = [person(admin, f"labeler{i}") for i in range(4)]
    project = make_project(stack.cluster, owner, people, items=40, consensus=CONSENSUS,
                           via=stack.front)
    since = len(stack.balancer.passed())
    workers = [Labeler(p, project.pid, project.labels, stack.through_front, seed=i)
               for i, p in enumerate(people)]
    for w in workers:
        w.start()
    try:
        wait_until(lambda: open_items(stack.cluster.database_url, project.pid) == 0, 90,
                   "items left undecided")
    finally:
        for w in workers:
            w.join()
    decide_reviews(token_api(stack.front.base, owner), project.pid, project.labels[0])
    outcome = check_dispatch_invariants(stack.cluster.database_url, project.pid, 2, 3)
    assert sum(outcome.values()) == 40, outcome
    statuses: Counter[str] = Counter()
    for w in workers:
        statuses.update(w.statuses)
    assert statuses["transport"] == 0 and not any(k.startswith("5") for k in statuses), statuses
    leases = nodes_serving(stack, since, "/tasks/next")
    submits = nodes_serving(stack, since, "/submit")
    assert len(leases) == 3 and len(submits) == 3, (leases, submits)


def test_an_export_started_on_one_node_downloads_from_every_node(stack: Stack) -> None:
    admin = stack.cluster.admin(stack.front)
    owner, labeler = person(admin, "owner"), person(admin, "labeler")
    project = make_project(stack.cluster, owner, [labeler], items=5, via=stack.front)
    work = token_api(stack.front.base, labeler)
    for _ in range(2):  # two pages label the five items (the project then completes)
        for lease in work.post(f"/api/v1/projects/{project.pid}/tasks/next",
                               {"count": 4}).json()["leases"]:
            done = work.post(f"/api/v1/leases/{lease['lease_id']}/submit",
                             {"annotation": {"classes": [project.labels[0]]}})
            assert done.status_code == 200, done.text
    front = token_api(stack.front.base, owner)
    since = len(stack.balancer.passed())
    r = front.post(f"/api/v1/projects/{project.pid}/exports", {"format": "jsonl"})
    assert r.status_code == 202, r.text
    eid = r.json()["export"]["id"]
    wait_until(lambda: front.get(f"/api/v1/exports/{eid}").json()["export"]["status"] == "done",
               30, "the export")
    bodies = set()
    for _ in range(6):  # through nginx: the downloads land on every node
        got = front.get(f"/api/v1/exports/{eid}/download")
        assert got.status_code == 200, got.text
        bodies.add(got.content)
    for node in stack.cluster.nodes:  # and each node serves it
        got = httpx.get(f"{node.base}/api/v1/exports/{eid}/download",
                        headers={"Authorization": f"Bearer {owner.token}"}, timeout=10)
        assert got.status_code == 200
        bodies.add(got.content)
    assert len(bodies) == 1 and len(next(iter(bodies)).splitlines()) == 5
    started = [p.node for p in stack.balancer.passed()[since:] if p.method == "POST"
               and p.path.endswith("/exports")]
    downloads = nodes_serving(stack, since, "/download")
    assert len(started) == 1 and len(downloads) == 3 and set(downloads) - set(started), downloads
