"""A room on its own: what it hands its sink, its flush bookkeeping and a connection's bounds.

The sink and the peer are recording fakes behind the Protocols the room talks to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Map

from collab import protocol
from collab.fanout import KIND_AWARENESS, KIND_HELLO, KIND_STATE, KIND_UPDATE
from collab.outgoing import Flusher, unframed
from collab.protocol import read_varbytes, read_varuint, varbytes, write_varuint
from collab.room import CLOSE_TRY_AGAIN, EMPTY_UPDATE, Connection, Room


class Sink:
    def __init__(self) -> None:
        self.persisted: list[tuple[Room, bytes]] = []
        self.published: list[tuple[str, int, bytes]] = []

    def persist(self, room: Room, update: bytes) -> None:
        self.persisted.append((room, update))

    def publish(self, name: str, kind: int, payload: bytes) -> None:
        self.published.append((name, kind, payload))

    def kinds(self) -> list[int]:
        return [kind for _, kind, _ in self.published]


class Peer:
    """A link that records each write; `full` makes it refuse more, as a full socket does."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.full = False

    def writable(self) -> bool:
        return not self.full

    def write(self, data: bytes) -> None:
        self.writes.append(data)


class Marks(Flusher):
    """A flusher whose turns end only when the test calls `flush` (no event loop needed)."""

    def __init__(self, frame: Callable[[bytes], bytes] = unframed) -> None:
        super().__init__(frame)
        self.marks: list[Connection] = []

    def opened(self) -> int:
        return self.turn

    def mark(self, conn: Connection) -> None:
        self.marks.append(conn)
        self._marked.append(conn)


def connection(*, readonly: bool = False, max_message_bytes: int = 1024, rate: float = 100.0,
               burst: float = 100.0, queue_size: int = 100, queue_bytes: int = 1 << 20,
               peer: Peer | None = None, flusher: Flusher | None = None) -> Connection:
    return Connection(peer or Peer(), flusher or Marks(), readonly=readonly, user="7",
                      max_message_bytes=max_message_bytes, rate=rate, burst=burst,
                      queue_size=queue_size, queue_bytes=queue_bytes)


def an_update(key: str = "k", value: int = 1) -> bytes:
    """A document update from another replica setting m[key] = value."""
    doc: Doc[Any] = Doc()
    doc.get("m", type=Map)[key] = value
    return doc.get_update()


def presence(client: int, clock: int = 1) -> bytes:
    return write_varuint(1) + write_varuint(client) + write_varuint(clock) + varbytes(b'{"u":1}')


def split(data: bytes) -> list[bytes]:
    """The y-websocket messages written back to back in `data` (sync and awareness only)."""
    out, pos = [], 0
    while pos < len(data):
        start = pos
        kind, pos = read_varuint(data, pos)
        if kind == protocol.MSG_SYNC:
            _, pos = read_varuint(data, pos)
        _, pos = read_varbytes(data, pos)
        out.append(data[start:pos])
    return out


def queued(conn: Connection) -> list[bytes]:
    """The messages `conn` was sent since the last call: written, then still queued."""
    peer = conn.peer
    assert isinstance(peer, Peer)
    out = [message for data in peer.writes for message in split(data)]
    peer.writes.clear()
    while conn.queue:
        frame, _ = conn.queue.popleft()
        out.append(frame)
    conn.queued_bytes = 0
    return out


def test_a_client_edit_goes_to_the_sink_the_other_clients_and_not_back() -> None:
    sink = Sink()
    room = Room("1/2/3", sink)
    author, other = connection(), connection()
    room.join(author)
    room.join(other)
    queued(author), queued(other)  # the STEP1s
    room.handle(author, protocol.parse(protocol.sync_update(an_update())))
    assert len(sink.persisted) == 1 and sink.persisted[0][0] is room
    update = sink.persisted[0][1]
    assert sink.published == [("1/2/3", KIND_UPDATE, update)]
    assert queued(other) == [protocol.sync_update(update)] and queued(author) == []
    assert room.doc.get("m", type=Map).to_py() == {"k": 1}


def test_flushed_waits_for_every_update_handed_to_the_sink() -> None:
    sink = Sink()
    room = Room("r", sink)
    assert room.flushed.is_set() and room.logged == 0
    room.apply_update(an_update("a"), None)
    room.apply_update(an_update("b"), None)
    assert len(sink.persisted) == 2 and not room.flushed.is_set()
    room.written()
    assert not room.flushed.is_set() and room.logged == 1
    room.written()
    assert room.flushed.is_set() and room.logged == 2
    room.compacted(5)
    assert room.logged == 0


def test_a_loaded_log_is_counted_but_neither_stored_nor_published_again() -> None:
    sink = Sink()
    room = Room("r", sink)
    room.load([an_update("a", 1), an_update("b", 2)])
    assert room.ready and room.logged == 2 and room.flushed.is_set()
    assert sink.persisted == [] and sink.published == []
    assert room.doc.get("m", type=Map).to_py() == {"a": 1, "b": 2}
    room.compacted(1)
    assert room.logged == 1


def test_an_update_from_another_node_is_stored_but_not_published_again() -> None:
    sink = Sink()
    room = Room("r", sink)
    conn = connection()
    room.join(conn)
    queued(conn)
    update = an_update()
    room.on_remote(KIND_UPDATE, update)
    assert len(sink.persisted) == 1 and sink.published == []
    assert queued(conn) == [protocol.sync_update(sink.persisted[0][1])]
    # The same update again changes nothing, so nothing travels.
    room.on_remote(KIND_UPDATE, update)
    assert len(sink.persisted) == 1 and queued(conn) == []


def test_a_hello_is_answered_with_what_it_lacks_our_state_and_our_clients_presence() -> None:
    sink = Sink()
    room = Room("r", sink)
    conn = connection()
    room.join(conn)
    room.handle(conn, protocol.parse(protocol.awareness(presence(42))))
    room.apply_update(an_update(), None)
    sink.published.clear()
    room.on_remote(KIND_HELLO, Doc().get_state())
    assert sink.kinds() == [KIND_UPDATE, KIND_STATE, KIND_AWARENESS]
    answer = Doc()
    answer.apply_update(sink.published[0][2])
    assert answer.get("m", type=Map).to_py() == {"k": 1}
    assert sink.published[1][2] == room.doc.get_state()
    assert sink.published[2][2] == presence(42)


def test_a_state_is_answered_only_when_its_sender_lacks_something() -> None:
    sink = Sink()
    room = Room("r", sink)
    room.on_remote(KIND_STATE, Doc().get_state())
    assert sink.published == []  # an empty room has nothing to give
    room.apply_update(an_update(), None)
    sink.published.clear()
    room.on_remote(KIND_STATE, room.doc.get_state())
    assert sink.published == []
    room.on_remote(KIND_STATE, Doc().get_state())
    assert sink.kinds() == [KIND_UPDATE] and sink.published[0][2] != EMPTY_UPDATE


def test_remote_peers_is_cleared_by_alone_and_set_by_any_message_or_announce() -> None:
    sink = Sink()
    room = Room("r", sink)
    assert room.remote_peers
    room.alone()
    assert not room.remote_peers
    room.on_remote(KIND_STATE, room.doc.get_state())
    assert room.remote_peers
    room.alone()
    room.announce()
    assert room.remote_peers and sink.kinds() == [KIND_HELLO]
    assert sink.published[0][2] == room.doc.get_state()


def test_announce_carries_only_this_nodes_presence() -> None:
    sink = Sink()
    room = Room("r", sink)
    conn = connection()
    room.join(conn)
    room.handle(conn, protocol.parse(protocol.awareness(presence(42))))
    room.on_remote(KIND_AWARENESS, presence(99))  # another node's client
    sink.published.clear()
    room.announce()
    assert sink.kinds() == [KIND_HELLO, KIND_AWARENESS]
    assert sink.published[1][2] == presence(42)


def test_leaving_removes_the_clients_presence_everywhere() -> None:
    sink = Sink()
    room = Room("r", sink)
    conn, other = connection(), connection()
    room.join(conn)
    room.join(other)
    room.handle(conn, protocol.parse(protocol.awareness(presence(42, clock=3))))
    queued(other)
    sink.published.clear()
    room.leave(conn)
    removal = write_varuint(1) + write_varuint(42) + write_varuint(4) + varbytes(b"null")
    assert sink.published == [("r", KIND_AWARENESS, removal)]
    assert queued(other) == [protocol.awareness(removal)]


def test_a_read_only_client_changes_nothing_and_is_told_once() -> None:
    sink = Sink()
    room = Room("r", sink)
    conn = connection(readonly=True)
    room.join(conn)
    queued(conn)
    for _ in range(2):
        room.handle(conn, protocol.parse(protocol.sync_update(an_update())))
    assert sink.persisted == [] and sink.published == [] and room.doc.get("m", type=Map).to_py() == {}
    assert queued(conn) == [protocol.permission_denied("this document is read-only for you")]


def test_a_connection_closes_once_its_queue_holds_queue_size_frames() -> None:
    peer = Peer()
    peer.full = True  # the client stopped reading
    conn = connection(queue_size=2, peer=peer)
    conn.send(b"a")
    conn.send(b"b")
    assert conn.closing is None
    conn.send(b"c")
    assert conn.closing is not None and conn.closing[0] == CLOSE_TRY_AGAIN
    assert conn.stopped.is_set() and conn.queued_bytes == 0


def test_a_connection_closes_once_its_backlog_reaches_queue_bytes() -> None:
    peer = Peer()
    peer.full = True
    conn = connection(queue_bytes=10, peer=peer)
    conn.send(b"x" * 6)
    conn.send(b"x" * 6)
    assert conn.closing is None and conn.queued_bytes == 12
    conn.send(b"x")
    assert conn.closing is not None and conn.closing[0] == CLOSE_TRY_AGAIN


def test_a_connection_allows_burst_then_rate() -> None:
    conn = connection(rate=0.0, burst=3.0)
    assert [conn.allow() for _ in range(4)] == [True, True, True, False]
    refilling = connection(rate=1e9, burst=1.0)
    assert all(refilling.allow() for _ in range(50))


async def test_the_first_message_of_a_turn_goes_at_once_the_rest_in_one_write_framed_once() -> None:
    """Per receiver and loop turn: the first message is written at once, the others in
    one write when the turn ends; a message written to several receivers one after
    another is framed once."""
    framed: list[bytes] = []

    def frame(message: bytes) -> bytes:
        framed.append(message)
        return b"<" + message + b">"

    flusher = Flusher(frame)
    first, second = Peer(), Peer()
    a, b = connection(peer=first, flusher=flusher), connection(peer=second, flusher=flusher)
    messages = [b"one", b"two", b"three"]
    for message in messages:
        for conn in (a, b):
            conn.send(message)
    assert first.writes == [b"<one>"] == second.writes  # the rest waits for the turn's end
    await asyncio.sleep(0)
    assert first.writes == [b"<one>", b"<two><three>"] == second.writes
    # "one" went to both at once, framed once; the turn's end frames each queue's own.
    assert framed == [b"one", b"two", b"three", b"two", b"three"]
    assert a.queued_bytes == 0 == b.queued_bytes
    a.send(b"four")  # a new turn: at once again
    assert first.writes[-1] == b"<four>"
    a.send(b"five")
    a.close_soon(1000, "bye")
    await asyncio.sleep(0)
    assert first.writes[-1] == b"<four>" and a.closing == (1000, "bye") and a.stopped.is_set()


async def test_a_link_that_fails_is_closed_without_holding_up_the_others() -> None:
    class Broken(Peer):
        def write(self, data: bytes) -> None:
            raise OSError("gone")

    flusher = Flusher()
    broken, fine = connection(peer=Broken(), flusher=flusher), connection(flusher=flusher)
    broken.send(b"x")
    fine.send(b"y")
    await asyncio.sleep(0)
    assert broken.closing is not None and broken.closing[0] == 1011
    assert fine.peer.writes == [b"y"]  # type: ignore[attr-defined]


def test_updates_that_waited_for_a_full_link_go_out_as_one_merged_update() -> None:
    """A receiver that fell behind gets its waiting document updates in one message, merged
    in order, and messages of other kinds keep their place between them."""
    peer = Peer()
    marks = Marks()
    conn = connection(peer=peer, flusher=marks)
    updates = [an_update("a", 1), an_update("b", 2), an_update("a", 3)]
    hello = protocol.awareness(presence(9))
    peer.full = True
    conn.send(protocol.sync_update(updates[0]), updates[0])
    conn.send(protocol.sync_update(updates[1]), updates[1])
    marks.flush()
    assert peer.writes == [] and len(conn.queue) == 2  # the link is full: it waits
    conn.send(hello)
    conn.send(protocol.sync_update(updates[2]), updates[2])
    assert len(marks.marks) == 2  # marked again by the first send after the flush
    marks.flush()
    peer.full = False
    conn.resume()
    assert len(marks.marks) == 3
    marks.flush()
    assert len(peer.writes) == 1 and conn.queued_bytes == 0
    sent = split(peer.writes[0])
    assert len(sent) == 3 and sent[1] == hello
    merged, _ = (protocol.parse(sent[0]), protocol.parse(sent[2]))
    assert merged.kind == protocol.MSG_SYNC and merged.subtype == protocol.SYNC_UPDATE
    got: Doc[Any] = Doc()
    for frame in (sent[0], sent[2]):
        got.apply_update(protocol.parse(frame).payload)
    want: Doc[Any] = Doc()
    for update in updates:
        want.apply_update(update)
    assert got.get("m", type=Map).to_py() == want.get("m", type=Map).to_py()
    one: Doc[Any] = Doc()
    one.apply_update(merged.payload)
    assert set(one.get("m", type=Map).to_py()) == {"a", "b"}  # the first two, merged
