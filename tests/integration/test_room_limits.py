"""CollabLimits reach what they bound: each connection the manager builds, its write window
and compaction (real Postgres and Redis), and the configured rate on a real server's socket."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from PIL import Image
from pycrdt import Doc, Map

from collab import protocol
from collab.fanout import Fanout
from collab.manager import CollabLimits, RoomManager
from collab.room import CLOSE_TRY_AGAIN
from collab.store import DocumentStore
from server.services import Services
from tests.conftest import bind_folder
from tests.infra import Api, run_server, unique


class Peer:
    """A link that never takes anything (a client that stopped reading)."""

    def writable(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        raise AssertionError("a full link is never written to")


async def started(services: Services, limits: CollabLimits) -> RoomManager:
    manager = RoomManager(DocumentStore(services.db),
                          Fanout(services.redis, services.settings.redis_prefix), limits)
    await manager.start()
    return manager


@pytest.fixture
async def strict_manager(server: str, services: Services) -> AsyncIterator[RoomManager]:
    """A manager whose every limit differs from the default (the server migrated the database)."""
    manager = await started(services, CollabLimits(
        max_message_bytes=123, messages_per_s=0.0, burst=2.0, queue_size=3, queue_bytes=1000,
        flush_interval_s=0.4, compact_after=3))
    try:
        yield manager
    finally:
        await manager.stop()


async def test_connections_carry_the_managers_limits(strict_manager: RoomManager) -> None:
    conn = strict_manager.connect(Peer(), readonly=True, user="5")
    assert conn.readonly and conn.user == "5" and conn.max_message_bytes == 123
    assert [conn.allow() for _ in range(3)] == [True, True, False]  # burst 2, no refill
    for frame in (b"a", b"b", b"c"):
        conn.send(frame)
    assert conn.closing is None
    conn.send(b"d")  # queue_size 3
    assert conn.closing is not None and conn.closing[0] == CLOSE_TRY_AGAIN
    heavy = strict_manager.connect(Peer(), readonly=False, user="5")
    heavy.send(b"x" * 1000)
    assert heavy.closing is None
    heavy.send(b"x")  # queue_bytes 1000
    assert heavy.closing is not None and heavy.closing[0] == CLOSE_TRY_AGAIN


async def test_the_write_window_and_compaction_follow_the_limits(
        strict_manager: RoomManager) -> None:
    name = f"limits/{unique('room')}"
    store = strict_manager.store

    def setter(key: str) -> Callable[[Any], None]:
        return lambda doc: doc.get("m", type=Map).__setitem__(key, 1)

    began = time.monotonic()
    await strict_manager.edit(name, setter("a"), "test")
    assert time.monotonic() - began >= 0.4  # flush_interval_s, not the default 50 ms
    await strict_manager.edit(name, setter("b"), "test")
    assert await store.tail_length(name) == 2  # below compact_after: nothing folded yet
    await strict_manager.edit(name, setter("c"), "test")
    deadline = time.monotonic() + 10
    while await store.tail_length(name) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await store.tail_length(name) == 0  # the third row reached compact_after
    stored = await strict_manager.read(name, lambda doc: doc.get("m", type=Map).to_py())
    assert stored == {"a": 1, "b": 1, "c": 1}


def one_item_project(make_project: Callable[..., tuple[Api, dict[str, Any]]],
                     data_dir: Path) -> tuple[int, int, str]:
    """A project with one image: its id, the item's id and an API token of its owner."""
    owner, project = make_project()
    pid = project["id"]
    folder = data_dir / "datasets" / unique("limits")
    folder.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "0.png")
    assert bind_folder(owner, pid, folder).ok
    item = owner.get(f"/api/v1/projects/{pid}/items").json()["items"][0]["id"]
    return pid, item, owner.post("/api/v1/tokens", {"name": "ws"}).json()["token"]


@pytest.mark.slow
async def test_the_configured_rate_reaches_the_socket(
        env: dict[str, str], server: str, make_project: Callable[..., tuple[Api, dict[str, Any]]],
        data_dir: Path, tmp_path: Path) -> None:
    pid, item, token = one_item_project(make_project, data_dir)
    query, step1 = b"\x03", b"\x00\x00\x01\x00"

    async def ten_queries_then_sync(base: str) -> int | None:
        """Send ten presence queries and a STEP1; the close code, or None once STEP2 came."""
        url = f"{base.replace('http://', 'ws://')}/collab/{pid}/{item}/final?token={token}"
        async with websockets.connect(url) as ws:
            try:
                for _ in range(10):
                    await ws.send(query)
                await ws.send(step1)
                while (await asyncio.wait_for(ws.recv(), 10))[:2] != b"\x00\x01":
                    pass
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd is not None else -1
            return None

    assert await ten_queries_then_sync(server) is None  # the default burst allows ten
    strict = {**env, "COLABEL_COLLAB_MESSAGES_PER_S": "1", "COLABEL_COLLAB_BURST": "5"}
    with run_server(strict, [], tmp_path / "strict.log") as (base, _proc, _took):
        assert await ten_queries_then_sync(base) == 1008


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_cut_off_while_the_room_goes_on(
        env: dict[str, str], server: str, make_project: Callable[..., tuple[Api, dict[str, Any]]],
        data_dir: Path, tmp_path: Path) -> None:
    """A socket that takes nothing holds at most the configured backlog: once more waits
    for it, the server drops it, and the writer in the same room goes on undisturbed."""
    pid, item, token = one_item_project(make_project, data_dir)
    path = f"/collab/{pid}/{item}/final?token={token}"
    small = {**env, "COLABEL_COLLAB_QUEUE_BYTES": str(256 * 1024)}
    with run_server(small, [], tmp_path / "stalled.log") as (base, _proc, _took):
        port = int(base.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little room in the kernel
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 101")
        # From here on the stalled client reads nothing.
        doc: Doc = Doc()
        big = doc.get("m", type=Map)
        updates: list[bytes] = []
        sub = doc.observe(lambda ev: updates.append(ev.update))
        async with websockets.connect(base.replace("http://", "ws://") + path,
                                      max_size=None) as author:
            for i in range(120):  # ~7.5 MB for a backlog bound of 256 KiB
                big["blob"] = f"{i:04d}" + "x" * 65_536
                await author.send(protocol.sync_update(updates[-1]))
            cut_off = False
            try:
                # Drain what the kernel holds: then the end of the stream, not more data.
                while await asyncio.wait_for(reader.read(1 << 20), 20):
                    pass
                cut_off = True
            except (ConnectionResetError, BrokenPipeError):
                cut_off = True
            assert cut_off
            await author.send(protocol.sync_step1(b"\x00"))  # the author is still served
            while (await asyncio.wait_for(author.recv(), 10))[:2] != b"\x00\x01":
                pass
        writer.close()
        del sub
        log = (tmp_path / "stalled.log").read_text()
        assert "Traceback" not in log
