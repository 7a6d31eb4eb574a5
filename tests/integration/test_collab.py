"""Live documents over WebSockets: real uvicorn, Postgres, Redis and Node yjs clients."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import websockets
from PIL import Image

from tests.conftest import bind_folder
from tests.infra import Api, run_server, unique
from tests.reliability import Measured
from tests.yclient import node_client, py_client, result


@dataclass
class Person:
    api: Api
    token: str

    @property
    def id(self) -> int:
        return self.api.id

    @property
    def email(self) -> str:
        return self.api.email


@dataclass
class World:
    server: str
    pid: int
    pid_consensus: int
    items: list[int]
    owner: Person
    reviewer: Person
    alice: Person
    bob: Person
    stranger: Person

    def room(self, annotator: int | str, item: int | None = None, pid: int | None = None) -> str:
        return f"{pid or self.pid}/{item or self.items[0]}/{annotator}"

    @property
    def ws(self) -> str:
        return self.server.replace("http://", "ws://")


def person(make_user: Callable[..., Api], name: str) -> Person:
    api = make_user(name)
    return Person(api, api.post("/api/v1/tokens", {"name": "ws"}).json()["token"])


def project_with_items(owner: Api, data_dir: Path, consensus: bool,
                       members: list[tuple[Person, str]]) -> tuple[int, list[int]]:
    pid = owner.post("/api/v1/projects", {
        "name": unique("collab"), "task_type": "multiclass", "labels": [{"name": "a"}],
        "consensus": {"enabled": consensus, "min": 2, "max": 3}}).json()["project"]["id"]
    folder = data_dir / "datasets" / unique("collab")
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (4, 4)).save(folder / f"{i}.png")
    assert bind_folder(owner, pid, folder).ok
    for who, role in members:
        owner.put(f"/api/v1/projects/{pid}/members", {"email": who.email, "role": role})
    items = [i["id"] for i in owner.get(f"/api/v1/projects/{pid}/items").json()["items"]]
    return pid, items


@pytest.fixture(scope="module")
def world(server: str, make_user: Callable[..., Api], data_dir: Path) -> World:
    owner, reviewer = person(make_user, "owner"), person(make_user, "reviewer")
    alice, bob, stranger = (person(make_user, n) for n in ("alice", "bob", "stranger"))
    members = [(reviewer, "reviewer"), (alice, "labeler"), (bob, "labeler")]
    pid, items = project_with_items(owner.api, data_dir, False, members)
    pid_c, _ = project_with_items(owner.api, data_dir, True, members)
    return World(server, pid, pid_c, items, owner, reviewer, alice, bob, stranger)


async def test_two_node_clients_and_a_python_client_converge(world: World) -> None:
    room = world.room(world.alice.id)
    keys = ["node1", "node2", "py"]
    n1 = node_client(world.server, room, world.alice.token, key="node1", value=1, expect=keys)
    n2 = node_client(world.server, room, world.alice.token, key="node2", value=2, expect=keys)
    async with py_client(world.ws, room, world.alice.token) as py:
        py.map["py"] = 3
        seen = await py.wait_for(keys)
    r1, r2 = await asyncio.to_thread(result, n1), await asyncio.to_thread(result, n2)
    assert r1["ok"] and r2["ok"]
    assert r1["map"] == r2["map"] == seen == {"node1": 1, "node2": 2, "py": 3}


async def test_late_joiner_gets_everything_from_the_store(world: World) -> None:
    room = world.room(world.bob.id, item=world.items[1])
    assert result(node_client(world.server, room, world.bob.token, key="first", value="x",
                              expect=["first"], hold_ms=200))["ok"]
    await asyncio.sleep(0.3)  # the room unloads once its writes are stored
    late = result(node_client(world.server, room, world.bob.token, expect=["first"]))
    assert late["ok"] and late["map"] == {"first": "x"}


def test_offline_edits_reach_the_server_on_connect(world: World) -> None:
    room = world.room(world.bob.id, item=world.items[2])
    r = result(node_client(world.server, room, world.bob.token, key="offline", value=1,
                           expect=["offline"], offline_first=True, hold_ms=200))
    assert r["ok"]
    again = result(node_client(world.server, room, world.bob.token, expect=["offline"]))
    assert again["map"] == {"offline": 1}


def test_permissions(world: World) -> None:
    def status(who: Person | None, room: str, **headers: str) -> int:
        url = f"{world.ws}/collab/{room}" + (f"?token={who.token}" if who else "")
        return asyncio.run(_handshake(url, headers))

    assert status(world.alice, world.room(world.alice.id)) == 101
    assert status(world.alice, world.room(world.bob.id)) == 403
    assert status(world.reviewer, world.room(world.alice.id)) == 101
    assert status(world.stranger, world.room(world.alice.id)) == 404
    assert status(None, world.room(world.alice.id)) == 401
    assert status(world.alice, world.room(world.alice.id, item=999999)) == 404
    assert status(world.alice, world.room(world.stranger.id)) == 404
    assert status(world.alice, world.room("final")) == 101  # no consensus: labelers decide
    assert status(world.alice, world.room("final", pid=world.pid_consensus,
                                          item=_any_item(world, world.pid_consensus))) == 403
    assert status(world.reviewer, world.room("final", pid=world.pid_consensus,
                                             item=_any_item(world, world.pid_consensus))) == 101
    assert status(world.alice, world.room("nobody")) == 404


@pytest.mark.reliability(
    area="Collaboration",
    attack="Opened a labeler's document under other spellings of its name: a leading zero, "
           "Arabic-Indic digits, zero-padded project and item ids.",
    promise='Only the canonical name is a document: every alias is refused (404) and opens nothing.')
def test_a_document_has_one_name(world: World, measured: Measured) -> None:
    uid, item = world.alice.id, world.items[0]
    arabic = str(uid).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    aliases = [f"{world.pid}/{item}/0{uid}", f"{world.pid}/{item}/{arabic}",
               f"0{world.pid}/{item}/{uid}", f"{world.pid}/0{item}/{uid}", f"{world.pid}/{item}/+{uid}",
               f"{world.pid}/{item}/{uid}%20", f"{world.pid}/{item}/Final"]
    url = f"{world.ws}/collab/{{}}?token={world.alice.token}"
    codes = {alias: asyncio.run(_handshake(url.format(quote(alias, safe="/")), {})) for alias in aliases}
    assert set(codes.values()) == {404}, codes
    assert asyncio.run(_handshake(url.format(world.room(uid)), {})) == 101
    measured(f"{len(aliases)} aliases refused 404; the canonical name opens (101)")


def _any_item(world: World, pid: int) -> int:
    return int(world.owner.api.get(f"/api/v1/projects/{pid}/items").json()["items"][0]["id"])


async def _handshake(url: str, headers: dict[str, str]) -> int:
    try:
        async with websockets.connect(url, additional_headers=headers):
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.reliability(
    area='Access',
    attack='Opened a document WebSocket with a valid session cookie from another Origin (cross-site '
           'WebSocket hijacking).',
    promise='Refused 403 at the handshake; the same cookie from our Origin opens it.')
def test_cookie_sessions_need_our_origin(world: World) -> None:
    cookie = world.alice.api.client.cookies["colabel_session"]
    url = f"{world.ws}/collab/{world.room(world.alice.id)}"
    ok = asyncio.run(_handshake(url, {"Cookie": f"colabel_session={cookie}",
                                      "Origin": world.server}))
    evil = asyncio.run(_handshake(url, {"Cookie": f"colabel_session={cookie}",
                                        "Origin": "https://evil.example"}))
    assert (ok, evil) == (101, 403)


async def test_reviewers_read_labeler_documents_but_cannot_write(world: World) -> None:
    room = world.room(world.alice.id, item=world.items[1])
    assert result(node_client(world.server, room, world.alice.token, key="mine", value=1,
                              expect=["mine"], hold_ms=100))["ok"]
    rev = result(node_client(world.server, room, world.reviewer.token, key="reviewer", value=1,
                             expect=["mine", "reviewer"], timeout_ms=3000, hold_ms=500))
    assert rev["permissionDenied"] is True and "mine" in rev["map"]
    await asyncio.sleep(0.2)
    check = result(node_client(world.server, room, world.alice.token, expect=["mine"], hold_ms=300))
    assert "reviewer" not in check["map"]


async def _raw(world: World, who: Person, room: str) -> websockets.ClientConnection:
    return await websockets.connect(f"{world.ws}/collab/{room}?token={who.token}", max_size=None)


@pytest.mark.parametrize("frame,code", [
    (b"\x00\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff", 1002),   # overlong varint
    (b"\x00\x02\x05ab", 1002),                                  # truncated payload
    (b"\x00\x02\x02\x00\x00extra", 1002),                        # trailing bytes
    (b"\x00\x02\x04\xde\xad\xbe\xef", 1002),                    # not a Yjs update
    (b"\x07", 1003),                                            # unknown message type
    (b"\x00\x09\x00", 1003),                                    # unknown sync type
    ("text frame", 1003),
])
async def test_malformed_frames_close_only_that_connection(world: World, frame: bytes | str,
                                                           code: int) -> None:
    room = world.room(world.alice.id, item=world.items[2])
    async with py_client(world.ws, room, world.alice.token) as healthy:
        bad = await _raw(world, world.alice, room)
        await bad.send(frame)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            for _ in range(20):
                await asyncio.wait_for(bad.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        key = unique("still")
        healthy.map[key] = 1
        check = result(await asyncio.to_thread(
            node_client, world.server, room, world.alice.token, expect=[key]))
        assert check["ok"]


@pytest.mark.reliability(
    area='Collaboration',
    attack='Sent one document message larger than the configured maximum.',
    promise='That connection is closed 1009; the document is unchanged.')
async def test_oversized_message_is_1009(world: World) -> None:
    ws = await _raw(world, world.alice, world.room(world.alice.id))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        # The server may close while the frame is still being sent.
        await ws.send(b"\x00\x02" + b"\x80" * 10 + b"x" * (5 * 1024 * 1024))
        for _ in range(20):
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.mark.reliability(
    area='Collaboration',
    attack='Flooded a room with messages far above the per-connection rate.',
    promise='The flooding connection is closed 1008; others are unaffected.')
async def test_flooding_is_1008(world: World) -> None:
    ws = await _raw(world, world.alice, world.room(world.alice.id))
    query = b"\x03"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        for _ in range(5000):
            await ws.send(query)
        for _ in range(10000):
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.fixture
def second_server(env: dict[str, str], data_dir: Path, tmp_path: Path) -> Iterator[str]:
    """Another server process on the same Postgres and Redis (another node)."""
    with run_server(env, [], tmp_path / "node2.log") as (base, _proc, _took):
        yield base


def test_two_nodes_converge_through_redis(world: World, second_server: str) -> None:
    room = world.room(world.alice.id, item=world.items[0])
    keys = [unique("n1"), unique("n2")]
    a = node_client(world.server, room, world.alice.token, key=keys[0], value=1, expect=keys,
                    hold_ms=300)
    b = node_client(second_server, room, world.alice.token, key=keys[1], value=2, expect=keys,
                    hold_ms=300)
    ra, rb = result(a), result(b)
    assert ra["ok"] and rb["ok"] and ra["map"] == rb["map"]
    assert ra["peers"] >= 2 and rb["peers"] >= 2, (ra, rb)  # presence crossed nodes too


def test_document_survives_a_server_restart(world: World, env: dict[str, str],
                                            tmp_path: Path) -> None:
    with run_server(env, [], tmp_path / "a.log") as (base, _p, _t):
        room = world.room(world.bob.id, item=world.items[0])
        assert result(node_client(base, room, world.bob.token, key="durable", value=42,
                                  expect=["durable"], hold_ms=200))["ok"]
    with run_server(env, [], tmp_path / "b.log") as (base, _p, _t):
        again = result(node_client(base, room, world.bob.token, expect=["durable"]))
    assert again["map"]["durable"] == 42


async def test_server_side_edit_reaches_clients_on_another_node(world: World, services: Any) -> None:
    from pycrdt import Map

    from collab.fanout import Fanout
    from collab.manager import RoomManager
    from collab.store import DocumentStore

    room = world.room(world.alice.id, item=world.items[1])
    waiter = node_client(world.server, room, world.alice.token, expect=["from_server"],
                         timeout_ms=10000)
    await asyncio.sleep(1.0)  # the client is connected and synced
    manager = RoomManager(DocumentStore(services.db),
                          Fanout(services.redis, services.settings.redis_prefix))
    await manager.start()
    try:
        await manager.edit(room, lambda doc: doc.get("m", type=Map).__setitem__("from_server", 7),
                           origin="consensus")
        stored = await manager.read(room, lambda doc: doc.get("m", type=Map).to_py())
    finally:
        await manager.stop()
    r = await asyncio.to_thread(result, waiter)
    assert r["ok"] and r["map"]["from_server"] == 7 and stored["from_server"] == 7


def test_http_routes_are_unaffected(world: World) -> None:
    assert httpx.get(world.server + "/healthz").status_code == 200
    assert os.environ is not None
