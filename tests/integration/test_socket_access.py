"""Open sockets lose what their user loses: `/collab` and `/events` sockets close within
2 s of an access change made through the API, on every server node, and nothing sent
after the change reaches the document. Real uvicorn processes, Postgres and Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import websockets
from PIL import Image
from pycrdt import Doc, Map

from collab.store import DocumentStore
from server.services import Services
from tests.conftest import PASSWORD, bind_folder
from tests.infra import Api, run_server, unique
from tests.reliability import Measured
from tests.yclient import PyClient

SETTLE_S = 0.4  # how long a write gets to travel before we conclude it never arrived


@dataclass
class Person:
    api: Api  # signed in with a session cookie
    token: str
    token_id: int

    @property
    def id(self) -> int:
        return self.api.id


def person(make_user: Callable[..., Api], name: str) -> Person:
    api = make_user(name)
    r = api.post("/api/v1/tokens", {"name": "ws"})
    assert r.status_code == 201, r.text
    return Person(api, r.json()["token"], r.json()["id"])


@dataclass
class Project:
    owner: Person
    pid: int
    item: int

    def room(self, annotator: int | str) -> str:
        return f"{self.pid}/{self.item}/{annotator}"


def make_project(owner: Person, data_dir: Path, *, consensus: bool,
                 members: list[tuple[Person, str]]) -> Project:
    api = owner.api
    r = api.post("/api/v1/projects", {
        "name": unique("access"), "task_type": "multiclass", "labels": [{"name": "a"}],
        "consensus": {"enabled": consensus, "min": 2, "max": 3}})
    assert r.status_code == 201, r.text
    pid = r.json()["project"]["id"]
    folder = data_dir / "datasets" / unique("access")
    folder.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "0.png")
    assert bind_folder(api, pid, folder).ok
    for who, role in members:
        r = api.put(f"/api/v1/projects/{pid}/members", {"email": who.api.email, "role": role})
        assert r.status_code == 200, r.text
    item = api.get(f"/api/v1/projects/{pid}/items").json()["items"][0]["id"]
    return Project(owner, pid, item)


@pytest.fixture(scope="module")
def node_b(server: str, env: dict[str, str], data_dir: Path) -> Iterator[str]:
    """A second server process on the same Postgres and Redis (another node)."""
    quiet = {**env, "COLABEL_BACKGROUND_JOBS": "false", "COLABEL_ML_ENABLED": "false"}
    with run_server(quiet, [], data_dir / "node-b.log") as (base, _proc, _took):
        yield base


class Sockets:
    """The sockets a test opens, on whichever node, closed at the end."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self.stack = stack

    @staticmethod
    def _auth(base: str, who: Person, cookie: bool, api: Api | None) -> tuple[str, dict[str, str]]:
        if not cookie:
            return f"?token={who.token}", {}
        session = (api or who.api).client.cookies["colabel_session"]
        return "", {"Cookie": f"colabel_session={session}", "Origin": base}

    async def collab(self, base: str, room: str, who: Person, *, cookie: bool = False,
                     api: Api | None = None) -> PyClient:
        query, headers = self._auth(base, who, cookie, api)
        ws = await websockets.connect(f"{base.replace('http', 'ws', 1)}/collab/{room}{query}",
                                      additional_headers=headers, max_size=None)
        client = PyClient(ws)
        self.stack.push_async_callback(client.close)
        await client.start()
        return client

    async def events(self, base: str, pid: int, who: Person, *, cookie: bool = False
                     ) -> websockets.ClientConnection:
        query, headers = self._auth(base, who, cookie, None)
        ws = await websockets.connect(f"{base.replace('http', 'ws', 1)}/events/{pid}{query}",
                                      additional_headers=headers)
        self.stack.push_async_callback(ws.close)
        # The first progress snapshot: the server is watching this socket from here on.
        await asyncio.wait_for(ws.recv(), 5)

        async def drain() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for _ in ws:
                    pass

        reader = asyncio.create_task(drain())
        self.stack.push_async_callback(_cancel, reader)
        return ws


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def sockets() -> AsyncIterator[Sockets]:
    async with contextlib.AsyncExitStack() as stack:
        yield Sockets(stack)


def _ws(socket: PyClient | websockets.ClientConnection) -> websockets.ClientConnection:
    return socket.ws if isinstance(socket, PyClient) else socket


@dataclass(frozen=True)
class Change:
    sent: float  # when the request went out
    made: float  # when it was answered: the change is committed by then


async def closed_within(socket: PyClient | websockets.ClientConnection, change: Change,
                        limit_s: float = 2.0) -> tuple[int | None, float]:
    """(close code, seconds since the change was sent) once the server closed the socket;
    fails if it is still open `limit_s` after the change was made."""
    ws = _ws(socket)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(ws.wait_closed(), max(change.made + limit_s - loop.time(), 0.01))
    except TimeoutError:
        raise AssertionError(f"still open {limit_s} s after the change") from None
    return ws.close_code, loop.time() - change.sent


async def change(call: Callable[[], httpx.Response], status: int = 204) -> Change:
    """Make an access change through the API (off the event loop)."""
    loop = asyncio.get_running_loop()
    sent = loop.time()
    r = await asyncio.to_thread(call)
    assert r.status_code == status, r.text
    return Change(sent, loop.time())


async def stored_map(services: Services, room: str) -> dict[str, Any]:
    """The document's map "m" as Postgres holds it."""
    doc: Doc[Any] = Doc()
    for update in await DocumentStore(services.db).load(room):
        doc.apply_update(update)
    return dict(doc.get("m", type=Map))


async def stays_unseen(observer: PyClient, key: str) -> None:
    await asyncio.sleep(SETTLE_S)
    assert key not in observer.map, f"{key!r} reached another client: {dict(observer.map)}"


async def seen(observer: PyClient, key: str) -> None:
    await observer.wait_for([key], timeout_s=5)


def _report(measured: Measured, closes: dict[str, tuple[int | None, float]], tail: str) -> None:
    parts = [f"{name} closed {code} {took * 1000:.0f} ms after the request was sent"
             for name, (code, took) in closes.items()]
    measured("; ".join([", ".join(parts), *([tail] if tail else [])]))


@pytest.mark.reliability(
    area="Access",
    attack="A labeler's collab socket is open on node B when an owner removes them from the "
           "project through node A, and the labeler writes right after.",
    promise="The socket closes 4403 within 2 s on the other node and the late write never "
            "reaches the document.")
async def test_removed_labeler_is_closed_on_another_node(
        server: str, node_b: str, services: Services, make_user: Callable[..., Api],
        data_dir: Path, measured: Measured) -> None:
    owner, labeler = person(make_user, "owner"), person(make_user, "labeler")
    p = make_project(owner, data_dir, consensus=False, members=[(labeler, "labeler")])
    async with sockets() as s:
        writer = await s.collab(node_b, p.room(labeler.id), labeler)
        observer = await s.collab(server, p.room(labeler.id), owner)
        writer.map["early"] = 1
        await seen(observer, "early")
        since = await change(lambda: owner.api.delete(
            f"/api/v1/projects/{p.pid}/members/{labeler.id}"))
        writer.map["late"] = 1
        closes = {"collab on node B": await closed_within(writer, since)}
        assert closes["collab on node B"][0] == 4403
        await stays_unseen(observer, "late")
    # Nor was it stored.
    await asyncio.sleep(0.2)  # past the update log's 50 ms write window
    stored = await stored_map(services, p.room(labeler.id))
    assert "early" in stored and "late" not in stored
    _report(measured, closes, "the late write reached neither the other node's client nor "
                              "the store")


@pytest.mark.reliability(
    area="Access",
    attack="A reviewer watching /events and editing the final document is removed from the "
           "project, then writes to the final document.",
    promise="Both sockets close 4403 within 2 s and the write is not applied.")
async def test_removed_reviewer_loses_events_and_the_final_document(
        server: str, make_user: Callable[..., Api], data_dir: Path, measured: Measured) -> None:
    owner, reviewer = person(make_user, "owner"), person(make_user, "reviewer")
    p = make_project(owner, data_dir, consensus=True, members=[(reviewer, "reviewer")])
    async with sockets() as s:
        events = await s.events(server, p.pid, reviewer, cookie=True)
        final = await s.collab(server, p.room("final"), reviewer, cookie=True)
        observer = await s.collab(server, p.room("final"), owner)
        final.map["early"] = 1
        await seen(observer, "early")
        since = await change(lambda: owner.api.delete(
            f"/api/v1/projects/{p.pid}/members/{reviewer.id}"))
        final.map["late"] = 1
        closes = {"collab": await closed_within(final, since),
                  "events": await closed_within(events, since)}
        assert [code for code, _ in closes.values()] == [4403, 4403]
        await stays_unseen(observer, "late")
    _report(measured, closes, "the late write never reached the owner's client")


@pytest.mark.reliability(
    area="Access",
    attack="A reviewer is lowered to labeler in a consensus project while their /events socket, "
           "the final document and their own document are open.",
    promise="What the labeler role no longer allows (events, the final document) closes 4403 "
            "within 2 s and takes no late write; their own document stays open and writable.")
async def test_a_lowered_role_closes_what_it_no_longer_allows(
        server: str, make_user: Callable[..., Api], data_dir: Path, measured: Measured) -> None:
    owner, reviewer = person(make_user, "owner"), person(make_user, "reviewer")
    p = make_project(owner, data_dir, consensus=True, members=[(reviewer, "reviewer")])
    async with sockets() as s:
        events = await s.events(server, p.pid, reviewer)
        final = await s.collab(server, p.room("final"), reviewer)
        own = await s.collab(server, p.room(reviewer.id), reviewer)
        final_observer = await s.collab(server, p.room("final"), owner)
        own_observer = await s.collab(server, p.room(reviewer.id), owner)
        since = await change(lambda: owner.api.put(
            f"/api/v1/projects/{p.pid}/members", {"user_id": reviewer.id, "role": "labeler"}),
            status=200)
        final.map["late"] = 1
        closes = {"final": await closed_within(final, since),
                  "events": await closed_within(events, since)}
        assert [code for code, _ in closes.values()] == [4403, 4403]
        await stays_unseen(final_observer, "late")
        # Past a periodic re-check, the document a labeler may still write is open.
        await asyncio.sleep(1.2)
        assert own.ws.close_code is None
        own.map["still-mine"] = 1
        await seen(own_observer, "still-mine")
    _report(measured, closes, "the late write never reached the owner; the reviewer's own "
                              "document stayed open and its writes arrived")


@pytest.mark.reliability(
    area="Access",
    attack="A user revokes the API token their collab and /events sockets were opened with, "
           "then writes through the collab socket.",
    promise="Those sockets close 4401 within 2 s and the write is not applied; a socket of the "
            "same user opened with a session stays open.")
async def test_a_revoked_token_closes_its_sockets(
        server: str, make_user: Callable[..., Api], data_dir: Path, measured: Measured) -> None:
    owner, reviewer = person(make_user, "owner"), person(make_user, "reviewer")
    p = make_project(owner, data_dir, consensus=True, members=[(reviewer, "reviewer")])
    async with sockets() as s:
        events = await s.events(server, p.pid, reviewer)
        final = await s.collab(server, p.room("final"), reviewer)
        by_session = await s.collab(server, p.room(reviewer.id), reviewer, cookie=True)
        observer = await s.collab(server, p.room("final"), owner)
        since = await change(lambda: reviewer.api.delete(f"/api/v1/tokens/{reviewer.token_id}"))
        final.map["late"] = 1
        closes = {"collab": await closed_within(final, since),
                  "events": await closed_within(events, since)}
        assert [code for code, _ in closes.values()] == [4401, 4401]
        await stays_unseen(observer, "late")
        await asyncio.sleep(1.0)
        assert by_session.ws.close_code is None
    _report(measured, closes, "the late write never reached the owner; the same user's "
                              "session socket stayed open")


@pytest.mark.reliability(
    area="Access",
    attack="An admin deactivates a user whose sockets are open with both a session and an API "
           "token, and the user writes right after.",
    promise="Every socket of the user closes 4401 within 2 s and the write is not applied.")
async def test_a_deactivated_user_is_closed_everywhere(
        server: str, admin: Api, make_user: Callable[..., Api], data_dir: Path,
        measured: Measured) -> None:
    owner, labeler = person(make_user, "owner"), person(make_user, "labeler")
    p = make_project(owner, data_dir, consensus=False, members=[(labeler, "labeler")])
    async with sockets() as s:
        by_token = await s.collab(server, p.room(labeler.id), labeler)
        by_session = await s.collab(server, p.room("final"), labeler, cookie=True)
        observer = await s.collab(server, p.room(labeler.id), owner)
        since = await change(lambda: admin.patch(f"/api/v1/users/{labeler.id}",
                                                 {"is_active": False}), status=200)
        by_token.map["late"] = 1
        closes = {"token socket": await closed_within(by_token, since),
                  "session socket": await closed_within(by_session, since)}
        assert [code for code, _ in closes.values()] == [4401, 4401]
        await stays_unseen(observer, "late")
    _report(measured, closes, "the late write never reached the owner")


@pytest.mark.reliability(
    area="Access",
    attack="A user changes their password while sockets opened with their session and with an "
           "API token are open, then writes through the session's socket.",
    promise="The session's sockets close 4401 within 2 s and take no late write; the token's "
            "socket stays open (a password change ends sessions, not tokens).")
async def test_a_password_change_closes_session_sockets(
        server: str, make_user: Callable[..., Api], data_dir: Path, measured: Measured) -> None:
    owner, labeler = person(make_user, "owner"), person(make_user, "labeler")
    p = make_project(owner, data_dir, consensus=False, members=[(labeler, "labeler")])
    async with sockets() as s:
        by_session = await s.collab(server, p.room(labeler.id), labeler, cookie=True)
        by_token = await s.collab(server, p.room("final"), labeler)
        observer = await s.collab(server, p.room(labeler.id), owner)
        since = await change(lambda: labeler.api.patch(
            "/api/v1/me", {"password": PASSWORD + " again", "current_password": PASSWORD}),
            status=200)
        by_session.map["late"] = 1
        closes = {"session socket": await closed_within(by_session, since)}
        assert closes["session socket"][0] == 4401
        await stays_unseen(observer, "late")
        await asyncio.sleep(1.0)
        assert by_token.ws.close_code is None
    _report(measured, closes, "the late write never reached the owner; the token's socket "
                              "stayed open")


@pytest.mark.reliability(
    area="Access",
    attack="A reviewer signs out in one browser while another of their sessions also has "
           "sockets open, and writes through the signed-out session's socket.",
    promise="The signed-out session's collab and /events sockets close 4401 within 2 s and "
            "take no late write; the other session's socket stays open.")
async def test_signing_out_closes_that_sessions_sockets(
        server: str, make_user: Callable[..., Api], data_dir: Path, measured: Measured) -> None:
    owner, reviewer = person(make_user, "owner"), person(make_user, "reviewer")
    p = make_project(owner, data_dir, consensus=True, members=[(reviewer, "reviewer")])
    other_browser = Api(server).login(reviewer.api.email, PASSWORD)
    async with sockets() as s:
        events = await s.events(server, p.pid, reviewer, cookie=True)
        final = await s.collab(server, p.room("final"), reviewer, cookie=True)
        elsewhere = await s.collab(server, p.room(reviewer.id), reviewer, cookie=True,
                                   api=other_browser)
        observer = await s.collab(server, p.room("final"), owner)
        since = await change(lambda: reviewer.api.post("/api/v1/auth/logout"))
        final.map["late"] = 1
        closes = {"collab": await closed_within(final, since),
                  "events": await closed_within(events, since)}
        assert [code for code, _ in closes.values()] == [4401, 4401]
        await stays_unseen(observer, "late")
        await asyncio.sleep(1.0)
        assert elsewhere.ws.close_code is None
    _report(measured, closes, "the late write never reached the owner; the other session's "
                              "socket stayed open")


@pytest.mark.reliability(
    area="Access",
    attack="A membership is deleted straight in Postgres, so no change is announced to the "
           "server processes.",
    promise="The periodic re-check closes the member's collab and /events sockets 4403 within "
            "2 s all the same.")
async def test_an_unannounced_change_is_caught_by_the_periodic_check(
        server: str, database_url: str, make_user: Callable[..., Api], data_dir: Path,
        measured: Measured) -> None:
    owner, reviewer = person(make_user, "owner"), person(make_user, "reviewer")
    p = make_project(owner, data_dir, consensus=True, members=[(reviewer, "reviewer")])
    async with sockets() as s:
        events = await s.events(server, p.pid, reviewer)
        final = await s.collab(server, p.room("final"), reviewer)
        conn = await asyncpg.connect(database_url)
        try:
            sent = asyncio.get_running_loop().time()
            await conn.execute("DELETE FROM memberships WHERE project_id = $1 AND user_id = $2",
                               p.pid, reviewer.id)
            since = Change(sent, asyncio.get_running_loop().time())
        finally:
            await conn.close()
        closes = {"collab": await closed_within(final, since),
                  "events": await closed_within(events, since)}
        assert [code for code, _ in closes.values()] == [4403, 4403]
    _report(measured, closes, "no message was published")


@pytest.mark.reliability(
    area="Access",
    attack="An owner deletes a project while a labeler and a reviewer have sockets open on it.",
    promise="Every socket on the project closes 4403 within 2 s.")
async def test_deleting_a_project_closes_its_sockets(
        server: str, make_user: Callable[..., Api], data_dir: Path, measured: Measured) -> None:
    owner, labeler = person(make_user, "owner"), person(make_user, "labeler")
    reviewer = person(make_user, "reviewer")
    p = make_project(owner, data_dir, consensus=False,
                     members=[(labeler, "labeler"), (reviewer, "reviewer")])
    async with sockets() as s:
        own = await s.collab(server, p.room(labeler.id), labeler)
        events = await s.events(server, p.pid, reviewer)
        since = await change(lambda: owner.api.delete(f"/api/v1/projects/{p.pid}"))
        closes = {"collab": await closed_within(own, since),
                  "events": await closed_within(events, since)}
        assert [code for code, _ in closes.values()] == [4403, 4403]
    _report(measured, closes, "")


@pytest.mark.reliability(
    area="Access",
    attack="An owner deletes an item from the data manager while its labeler and a reviewer "
           "have its documents open, and the labeler writes right after.",
    promise="Every socket on its documents closes 4404 within 2 s; the late write is not "
            "applied and nothing of the item's documents stays in the store.")
async def test_deleting_an_item_closes_its_documents(
        server: str, services: Services, make_user: Callable[..., Api], data_dir: Path,
        measured: Measured) -> None:
    owner, labeler = person(make_user, "owner"), person(make_user, "labeler")
    reviewer = person(make_user, "reviewer")
    p = make_project(owner, data_dir, consensus=False,
                     members=[(labeler, "labeler"), (reviewer, "reviewer")])
    async with sockets() as s:
        own = await s.collab(server, p.room(labeler.id), labeler)
        final = await s.collab(server, p.room("final"), reviewer)
        observer = await s.collab(server, p.room(labeler.id), owner)
        own.map["early"] = 1
        await seen(observer, "early")
        since = await change(lambda: owner.api.post(
            f"/api/v1/projects/{p.pid}/items/actions",
            {"action": "delete", "filter": {}, "ids": [p.item]}), status=200)
        own.map["late"] = 1
        closes = {"labeler's document": await closed_within(own, since),
                  "final document": await closed_within(final, since),
                  "owner's view": await closed_within(observer, since)}
        assert [code for code, _ in closes.values()] == [4404, 4404, 4404]
        assert "late" not in observer.map
    await asyncio.sleep(0.3)  # past the update log's write window and the rooms' release
    for room in (p.room(labeler.id), p.room("final")):
        assert await DocumentStore(services.db).load(room) == []
    _report(measured, closes, "the late write was not applied and nothing of the item's "
                              "documents is left in the store")


@pytest.mark.reliability(
    area="Access",
    attack="An owner sends an item to review from the data manager while its labeler's "
           "document is open, and the labeler writes right after.",
    promise="The labeler's document stays open but turns read-only within 2 s: the late write "
            "reaches neither the owner's client nor the store, and what it held before stays.")
async def test_an_item_sent_to_review_turns_its_labelers_document_read_only(
        server: str, services: Services, make_user: Callable[..., Api], data_dir: Path,
        measured: Measured) -> None:
    owner, labeler = person(make_user, "owner"), person(make_user, "labeler")
    p = make_project(owner, data_dir, consensus=False, members=[(labeler, "labeler")])
    async with sockets() as s:
        own = await s.collab(server, p.room(labeler.id), labeler)
        observer = await s.collab(server, p.room(labeler.id), owner)
        own.map["early"] = 1
        await seen(observer, "early")
        await change(lambda: owner.api.post(
            f"/api/v1/projects/{p.pid}/items/actions",
            {"action": "review", "filter": {}, "ids": [p.item]}), status=200)
        own.map["late"] = 1
        await stays_unseen(observer, "late")
        assert own.ws.close_code is None
    await asyncio.sleep(0.2)  # past the update log's write window
    stored = await stored_map(services, p.room(labeler.id))
    assert "early" in stored and "late" not in stored
    measured("the labeler's socket stayed open; the late write reached neither the owner's "
             "client nor the store, and the earlier one stayed")
