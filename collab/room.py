"""A room: one live document, its presence states and the connections editing it.

Every change goes through `Room.apply` (a server-side change, in a transaction tagged with
its origin) or `Room.apply_update` (an update received as bytes); the resulting update(s)
are collected from the document observer. Each update is
then sent to the room's other connections, logged to Postgres (unless it was read from
there) and, unless it came from another node, published to the other nodes. Re-applying
an update the document already has yields no event, so duplicates never travel.

Every node logs what it applies, updates from other nodes included: a node that dies
between publishing an update and storing it leaves it in the other nodes' memory only,
and when its author reconnects to one of them, that node already has it and the author's
resync carries nothing new. Storing it where it arrived closes that gap; a room open on
several nodes at once logs each update once per node (compaction folds the copies).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from pycrdt import Doc, TransactionEvent, merge_updates

from . import protocol
from .awareness import AwarenessStates
from .errors import ProtocolError
from .fanout import KIND_AWARENESS, KIND_HELLO, KIND_STATE, KIND_UPDATE
from .outgoing import Flusher

log = logging.getLogger(__name__)

EMPTY_UPDATE = b"\x00\x00"
# Close codes the transport uses for our decisions.
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013


class Peer(Protocol):
    """The link under a connection (a WebSocket in the server)."""

    def writable(self) -> bool:
        """Whether the link takes more now (False while its own buffer is full or it is
        closing); a link that becomes writable again calls `Connection.resume`."""

    def write(self, data: bytes) -> None:
        """Put framed messages on the link, in order."""


class RoomSink(Protocol):
    """Where a room's changes go beyond its own connections (the RoomManager in the server)."""

    def persist(self, room: Room, update: bytes) -> None:
        """Store `update` of `room` eventually, and report it with `room.written()`."""

    def publish(self, name: str, kind: int, payload: bytes) -> None:
        """Send a message to the other nodes holding room `name` (see fanout.py)."""


# The most queued updates one frame carries when a receiver has fallen behind by several.
MERGE_AT_MOST = 64


class Connection:
    """One client in a room: its outgoing queue, its limits and its closing reason.

    What the room sends it is written at once when it is the first message of this loop
    turn, and otherwise queued and written in one write at the end of the turn by the
    flusher (outgoing.py); always in order, and only while its link takes more. While the
    link is full (the client reads more slowly than the room speaks) the queue grows,
    bounded in messages and in bytes; a client whose backlog passes either bound is closed
    with 1013 and its backlog dropped at once (it resyncs when it reconnects). `closing`
    holds the code and reason its endpoint closes it with, and `stopped` tells the
    endpoint to do so even while its socket neither reads nor writes.

    Document updates that waited for the link one after another go out merged into one
    update (Yjs merges updates losslessly, and a client applies the merge as it would the
    updates in order): a receiver that fell behind costs one message for its backlog.
    """

    def __init__(self, peer: Peer, flusher: Flusher, *, readonly: bool, user: str,
                 max_message_bytes: int, rate: float, burst: float, queue_size: int,
                 queue_bytes: int) -> None:
        self.peer = peer
        self.readonly = readonly
        self.user = user
        # The largest frame its endpoint accepts from it (larger ones close it with 1009).
        self.max_message_bytes = max_message_bytes
        self.awareness_ids: set[int] = set()
        # (message, its document update when the message is a sync update, else None)
        self.queue: deque[tuple[bytes, bytes | None]] = deque()
        self.queued_bytes = 0
        self._queue_size = queue_size
        self._queue_bytes = queue_bytes
        self._flusher = flusher
        self._marked = False
        # The flusher's turn in which this connection last wrote at once (see send).
        self._turn = -1
        # Set while the link was full: what waited meanwhile is merged when it drains.
        self._behind = False
        self.closing: tuple[int, str] | None = None
        self.stopped = asyncio.Event()
        self._rate = rate
        self._tokens = burst
        self._burst = burst
        self._stamp = time.monotonic()
        self.told_readonly = False

    def send(self, message: bytes, update: bytes | None = None) -> None:
        """Send a message (`update`: the document update a sync-update message carries, so
        it can be merged with the next ones): written at once if it is the first this loop
        turn and nothing waits, else queued; a client too slow to keep up is closed (it
        will resync)."""
        if self.closing is not None:
            return
        flusher = self._flusher
        if not self.queue and self._turn != flusher.turn and self.peer.writable():
            self._turn = flusher.opened()
            try:
                self.peer.write(flusher.framed(message))
            except Exception:  # a broken link closes this client, not the one being read
                log.exception("writing to a client failed; closing it")
                self.close_soon(1011, "internal error")
            return
        if self.queued_bytes >= self._queue_bytes or len(self.queue) >= self._queue_size:
            self.close_soon(CLOSE_TRY_AGAIN, "too slow to keep up; reconnect")
            return
        self.queue.append((message, update))
        self.queued_bytes += len(message)
        if not self._marked:
            self._marked = True
            self._flusher.mark(self)

    def resume(self) -> None:
        """The link takes more again: write what waited for it."""
        if self.queue and not self._marked and self.closing is None:
            self._marked = True
            self._flusher.mark(self)

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            # Nothing queued matters any more (a closed client resyncs when it comes back).
            self.queue.clear()
            self.queued_bytes = 0
            self.stopped.set()

    def allow(self) -> bool:
        """Token bucket: False once the client sends faster than the configured rate."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def flush(self, framed: Callable[[bytes], bytes]) -> None:
        """Write the queue to the link in one write if it takes more (the flusher calls it)."""
        self._marked = False
        if self.closing is not None or not self.queue:
            return
        if not self.peer.writable():
            self._behind = True
            return
        queue = self.queue
        self.queued_bytes = 0
        if len(queue) == 1 and not self._behind:  # what a busy room mostly sends: one message
            self.peer.write(framed(queue.popleft()[0]))
            return
        merge, self._behind = self._behind, False
        frames = []
        while queue:
            frames.append(framed(self._next_message(merge)))
        self.peer.write(b"".join(frames))

    def _next_message(self, merge: bool) -> bytes:
        """The first queued message; when `merge`, merged with the updates right behind it."""
        message, update = self.queue.popleft()
        if not merge or update is None or not self.queue or self.queue[0][1] is None:
            return message
        updates = [update]
        while self.queue and self.queue[0][1] is not None and len(updates) < MERGE_AT_MOST:
            updates.append(self.queue.popleft()[1])  # type: ignore[arg-type]
        return protocol.sync_update(merge_updates(*updates))


class Room:
    """One live document; what it changes goes to its connections and to its sink.

    The room counts the updates it hands to `sink.persist` until the sink reports them
    stored (`written`): `flushed` is set while none is outstanding, and `logged` counts
    the rows in the update log since the last compaction (`compacted`).
    """

    def __init__(self, name: str, sink: RoomSink) -> None:
        self.name = name
        self.sink = sink
        self.doc: Doc[Any] = Doc()
        self.awareness = AwarenessStates()
        self.connections: set[Connection] = set()
        self.refs = 0
        self.closing = False
        self.closed = asyncio.Event()
        self.ready = False
        self._unflushed = 0
        self.flushed = asyncio.Event()
        self.flushed.set()
        self._logged = 0
        # Seqs of the log rows this process appended from this document (see store.py).
        self.appended: set[int] = set()
        # Whether another node may hold this room. Assumed at load; a publish that reaches
        # no other subscriber clears it, and any message from another node sets it again.
        self._remote_peers = True
        self._captured: list[bytes] = []
        self._sub = self.doc.observe(self._on_transaction)

    @property
    def logged(self) -> int:
        """Rows of this room in the update log since the last compaction."""
        return self._logged

    @property
    def remote_peers(self) -> bool:
        """Whether another node may hold this room (publishing to it is worth it)."""
        return self._remote_peers

    def load(self, updates: list[bytes]) -> None:
        """Replay the stored `updates` (neither logged nor published again); ready after."""

        def replay() -> None:
            for update in updates:
                self.doc.apply_update(update)

        self.apply(replay, "load", None, remote=True, stored=True)
        self._logged = len(updates)
        self.ready = True

    def written(self) -> None:
        """One update handed to `sink.persist` is now stored in the log."""
        self._unflushed -= 1
        self._logged += 1
        if self._unflushed == 0:
            self.flushed.set()

    def compacted(self, folded: int) -> None:
        """`folded` rows of the log went into the snapshot."""
        self._logged = max(self._logged - folded, 0)

    def alone(self) -> None:
        """A publish reached no other node: publish nothing until another node speaks."""
        self._remote_peers = False

    def announce(self) -> None:
        """Say HELLO to the other nodes, with this node's presence states, as at load: they
        answer with what this room lacks and ask for what they lack."""
        self._remote_peers = True
        self.sink.publish(self.name, KIND_HELLO, self.doc.get_state())
        states = self._local_awareness()
        if states is not None:
            self.sink.publish(self.name, KIND_AWARENESS, states)

    def _local_awareness(self) -> bytes | None:
        """The presence states of this node's own connections (None if there are none)."""
        return self.awareness.encode(
            sorted({c for conn in self.connections for c in conn.awareness_ids}))

    def _on_transaction(self, event: TransactionEvent) -> None:
        # Observers run inside the transaction: only collect here.
        self._captured.append(event.update)

    def apply(self, change: Callable[[], None], origin: str, sender: Connection | None,
              remote: bool = False, stored: bool = False) -> int:
        """Run `change` as one transaction tagged `origin` and spread what it changed;
        return the update count. `remote`: it came from another node (not published
        again); `stored`: it was read from the store (not logged again)."""
        self._captured = []
        with self.doc.transaction(origin=origin):
            change()
        return self._spread(sender, remote, stored)

    def apply_update(self, update: bytes, sender: Connection | None, remote: bool = False,
                     stored: bool = False, message: bytes | None = None) -> None:
        """Apply an update as received (from a client, another node or the store) and
        spread what it changed (see `apply`); `message`: the sync-update message that
        carried it, sent on as it is when the document took all of the update.

        It runs in the transaction pycrdt opens for it: nothing reads the origin of a
        received update, and tagging one costs a third of what applying it does."""
        self._captured = []
        try:
            self.doc.apply_update(update)
        except (ValueError, RuntimeError) as exc:
            self._captured = []
            raise ProtocolError(f"invalid document update: {exc}") from None
        self._spread(sender, remote, stored,
                     message if message is not None and self._captured == [update] else None)

    def _spread(self, sender: Connection | None, remote: bool, stored: bool,
                message: bytes | None = None) -> int:
        """Send what the last transaction changed to the other connections, the log and
        the other nodes (`message`: the sync-update message of its only update, if there
        is one already); return the update count."""
        captured, self._captured = self._captured, []
        for update in captured:
            if update == EMPTY_UPDATE:
                continue
            if message is None:
                message = protocol.sync_update(update)
            for conn in self.connections:
                if conn is not sender:
                    conn.send(message, update)
            message = None
            if not stored:
                self._unflushed += 1
                self.flushed.clear()
                self.sink.persist(self, update)
            if not remote and self._remote_peers:
                self.sink.publish(self.name, KIND_UPDATE, update)
        return len(captured)

    def join(self, conn: Connection) -> None:
        """Add a client: ask for what it has (STEP1) and show it who is here."""
        self.connections.add(conn)
        conn.send(protocol.sync_step1(self.doc.get_state()))
        states = self.awareness.encode()
        if states is not None:
            conn.send(protocol.awareness(states))

    def leave(self, conn: Connection) -> None:
        self.connections.discard(conn)
        removal = self.awareness.removal(sorted(conn.awareness_ids))
        if removal is not None:
            self._spread_awareness(removal, None, remote=False)

    def handle(self, conn: Connection, frame: protocol.Frame, raw: bytes | None = None) -> None:
        """Process one parsed client frame (`raw`: the message it was parsed from)."""
        if frame.kind == protocol.MSG_SYNC:
            if frame.subtype == protocol.SYNC_STEP1:
                try:
                    missing = self.doc.get_update(frame.payload)
                except (ValueError, RuntimeError) as exc:
                    raise ProtocolError(f"invalid state vector: {exc}") from None
                conn.send(protocol.sync_step2(missing))
            elif conn.readonly:
                if frame.payload != EMPTY_UPDATE and not conn.told_readonly:
                    conn.told_readonly = True
                    conn.send(protocol.permission_denied("this document is read-only for you"))
            else:
                # A step 2 goes on as an update: to a client, a step 2 means "now in sync".
                self.apply_update(frame.payload, conn, message=(
                    raw if frame.subtype == protocol.SYNC_UPDATE else None))
        elif frame.kind == protocol.MSG_AWARENESS:
            changed, added = self.awareness.apply(frame.payload)
            conn.awareness_ids.update(added)
            if changed is not None:
                self._spread_awareness(changed, conn, remote=False)
        elif frame.kind == protocol.MSG_QUERY_AWARENESS:
            states = self.awareness.encode()
            if states is not None:
                conn.send(protocol.awareness(states))

    def _spread_awareness(self, update: bytes, sender: Connection | None, *, remote: bool) -> None:
        # Presence goes back to its sender too: clients treat silence as a dead link.
        frame = protocol.awareness(update)
        for conn in self.connections:
            conn.send(frame)
        if not remote:
            self.sink.publish(self.name, KIND_AWARENESS, update)

    def _missing(self, state_vector: bytes) -> bytes:
        """What a peer with `state_vector` lacks of this document (empty if unreadable)."""
        try:
            return self.doc.get_update(state_vector)
        except (ValueError, RuntimeError):
            return EMPTY_UPDATE

    def on_remote(self, kind: int, payload: bytes) -> None:
        """A message from another node (never republished)."""
        self._remote_peers = True
        try:
            if kind == KIND_UPDATE:
                self.apply_update(payload, None, remote=True)
            elif kind == KIND_AWARENESS:
                changed, _ = self.awareness.apply(payload)
                if changed is not None:
                    self._spread_awareness(changed, None, remote=True)
            elif kind == KIND_HELLO:
                # Always answer, even with an empty update: the answer is also how the
                # newcomer learns that another node holds this room.
                self.sink.publish(self.name, KIND_UPDATE, self._missing(payload))
                # And ask back: after lost fan-out the sender may hold what we lack.
                self.sink.publish(self.name, KIND_STATE, self.doc.get_state())
                states = self._local_awareness()
                if states is not None:
                    self.sink.publish(self.name, KIND_AWARENESS, states)
            elif kind == KIND_STATE:
                missing = self._missing(payload)
                if missing != EMPTY_UPDATE:
                    self.sink.publish(self.name, KIND_UPDATE, missing)
        except ProtocolError as exc:
            log.warning("dropping a bad message from another node for %s: %s", self.name, exc)
