"""The /collab endpoint's reader on its own: what it does with each message the channel
hands it, while an access change is being checked and after. Fakes stand in for the room,
the ticket and the channel."""

from __future__ import annotations

import asyncio

from collab import protocol
from collab.outgoing import Flusher
from collab.room import Connection
from server.live.collab_ws import CLOSE_TOO_BIG, CLOSE_UNSUPPORTED, _Reader


class Room:
    name = "1/2/3"

    def __init__(self) -> None:
        self.handled: list[bytes] = []

    def handle(self, conn: Connection, frame: protocol.Frame, raw: bytes | None = None) -> None:
        self.handled.append(frame.payload)


class Ticket:
    def __init__(self) -> None:
        self.settled = asyncio.Event()
        self.settled.set()


class Channel:
    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class Peer:
    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> None:
        pass


def reader() -> tuple[_Reader, Room, Connection, Ticket, Channel]:
    room, ticket, channel = Room(), Ticket(), Channel()
    conn = Connection(Peer(), Flusher(), readonly=False, user="7", max_message_bytes=100,
                      rate=1000.0, burst=1000.0, queue_size=10, queue_bytes=1000)
    return _Reader(room, conn, ticket, channel), room, conn, ticket, channel  # type: ignore[arg-type]


async def test_messages_wait_for_the_access_verdict_then_go_on_in_order() -> None:
    r, room, _conn, ticket, channel = reader()
    r.on_message(protocol.sync_update(b"a"), False)
    ticket.settled.clear()  # an access change is being checked
    r.on_message(protocol.sync_update(b"b"), False)
    r.on_message(protocol.sync_update(b"c"), False)
    await asyncio.sleep(0)
    assert room.handled == [b"a"] and channel.paused
    ticket.settled.set()
    await asyncio.sleep(0)
    r.on_message(protocol.sync_update(b"d"), False)  # behind the held ones, not before
    await asyncio.sleep(0.01)
    assert room.handled == [b"a", b"b", b"c", b"d"] and not channel.paused


async def test_what_waited_is_never_applied_once_the_verdict_closes_the_socket() -> None:
    r, room, conn, ticket, _channel = reader()
    ticket.settled.clear()
    r.on_message(protocol.sync_update(b"late"), False)
    conn.close_soon(4403, "no longer allowed")
    ticket.settled.set()
    await asyncio.sleep(0.01)
    assert room.handled == []


def test_text_oversized_and_malformed_messages_close_with_their_codes() -> None:
    cases: list[tuple[bytes, bool, int]] = [
        (b"hello", True, CLOSE_UNSUPPORTED), (b"\x00" * 101, False, CLOSE_TOO_BIG),
        (b"\x00\x02\x05ab", False, 1002), (b"\x09", False, CLOSE_UNSUPPORTED)]
    for data, text, code in cases:
        r, room, conn, _ticket, _channel = reader()
        r.on_message(data, text)
        assert conn.closing is not None and conn.closing[0] == code and room.handled == []


def test_a_flood_closes_with_1008() -> None:
    r, _room, conn, _ticket, _channel = reader()
    conn._tokens = 1.0  # noqa: SLF001 - one message left in the bucket
    conn._rate = 0.0  # noqa: SLF001
    r.on_message(protocol.sync_update(b"a"), False)
    r.on_message(protocol.sync_update(b"b"), False)
    assert conn.closing is not None and conn.closing[0] == 1008
