"""Rooms of one server process: loading (single flight), the batched writer, unloading,
and the in-process API for server-side edits.

Write window: every node holding a room appends each update it applies (from its own
clients or from other nodes) to Postgres at most `flush_interval_s` (50 ms by default)
after applying it, plus the time of one INSERT, while Postgres answers. If
a write fails the batch stays in memory and is retried with backoff; the room is not
unloaded until everything it holds is stored, and clients keep their own copy, which
they send again when they reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import asyncpg
from pycrdt import Doc
from redis.exceptions import RedisError

from .batches import Batches
from .errors import RoomUnavailable
from .fanout import KIND_HELLO, KIND_UPDATE, Fanout
from .outgoing import Flusher, unframed
from .room import EMPTY_UPDATE, Connection, Peer, Room
from .store import DocumentStore, Held
from .tasks import stop_task

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class CollabLimits:
    """Bounds on each connection (the first five) and on the batched writer (the last two)."""

    max_message_bytes: int = 4 * 1024 * 1024
    messages_per_s: float = 200.0
    burst: float = 1000.0
    queue_size: int = 4096
    # A client's unsent backlog beyond this is dropped with the client (close 1013).
    queue_bytes: int = 16 * 1024 * 1024
    flush_interval_s: float = 0.05
    compact_after: int = 500


class RoomManager:
    """Owns every room of this process and the tasks that serve them."""

    def __init__(self, store: DocumentStore, fanout: Fanout, limits: CollabLimits | None = None,
                 frame: Callable[[bytes], bytes] = unframed) -> None:
        """`frame`: how the transport frames a message (see outgoing.py)."""
        self.store = store
        self.fanout = fanout
        self.limits = limits or CollabLimits()
        self.rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Future[Room]] = {}
        self._pending: list[tuple[Room, bytes]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._compact: set[str] = set()
        self._flusher = Flusher(frame)
        self._outbox: Batches[tuple[str, int, bytes]] = Batches(self._publish_batch,
                                                                "fan-out messages")

    async def start(self) -> None:
        self.fanout.on_resubscribed = self.resync
        await self.fanout.start()
        self._writer = asyncio.create_task(self._write_loop())

    def connect(self, peer: Peer, *, readonly: bool, user: str) -> Connection:
        """A connection for a client over `peer`, bounded by this manager's limits."""
        limits = self.limits
        return Connection(peer, self._flusher, readonly=readonly, user=user,
                          max_message_bytes=limits.max_message_bytes,
                          rate=limits.messages_per_s, burst=limits.burst,
                          queue_size=limits.queue_size, queue_bytes=limits.queue_bytes)

    async def stop(self) -> None:
        """Flush what is pending (best effort), then stop background work."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush_all(), 5)
        await stop_task(self._writer)
        await self._outbox.stop()
        await self.fanout.stop()

    # -- rooms ------------------------------------------------------------------------

    async def acquire(self, name: str) -> Room:
        """The loaded room `name`, with a reference taken; loads it if needed."""
        while True:
            room = self.rooms.get(name)
            if room is not None:
                if room.closing:
                    await room.closed.wait()
                    continue
                room.refs += 1
                return room
            future = self._loading.get(name)
            if future is None:
                # Stored before any await: concurrent joiners share one load.
                future = asyncio.ensure_future(self._load(name))
                self._loading[name] = future
            try:
                await asyncio.shield(future)
            finally:
                if future.done() and self._loading.get(name) is future:
                    del self._loading[name]

    async def _load(self, name: str) -> Room:
        room = Room(name, self)
        # Subscribe first: anything published while we read the log is applied too.
        try:
            await self.fanout.subscribe(name, room.on_remote)
        except (RedisError, OSError, TimeoutError, RuntimeError) as exc:
            # Redis is down, or the pub/sub connection is being re-established (a
            # RuntimeError: the reader's reconnect and this subscribe met on the socket).
            raise RoomUnavailable(f"cannot load {name}: fan-out unavailable: {exc}") from exc
        try:
            updates = await self.store.load(name)
        except (asyncpg.PostgresError, OSError) as exc:
            await self.fanout.unsubscribe(name)
            raise RoomUnavailable(f"cannot load {name}: {exc}") from exc
        room.load(updates)
        room.announce()
        self.rooms[name] = room
        return room

    async def release(self, room: Room) -> None:
        """Drop a reference; the last one unloads the room once its writes are stored."""
        room.refs -= 1
        if room.refs > 0 or room.closing:
            return
        room.closing = True
        try:
            await room.flushed.wait()
            await self.fanout.unsubscribe(room.name)
        finally:
            if self.rooms.get(room.name) is room:
                del self.rooms[room.name]
            room.closed.set()

    def resync(self) -> None:
        """Fan-out was interrupted (the pub/sub connection came back): what was published
        meanwhile never arrived. Every room says HELLO again, as if just loaded; the other
        nodes answer with what it lacks and ask for what they lack."""
        for room in self.rooms.values():
            room.announce()

    # -- persistence and fan-out ------------------------------------------------------

    def persist(self, room: Room, update: bytes) -> None:
        """Queue `update` for the next batched write (see the module docstring)."""
        self._pending.append((room, update))
        self._wake.set()

    def publish(self, name: str, kind: int, payload: bytes) -> None:
        """Queue a message for the other nodes holding this room.

        Messages go out in batches (one pipelined round trip per loop turn). Once a publish
        reaches no other node, the room stops publishing until another node speaks: a
        node that loads the room later announces itself (HELLO) and is sent whatever it
        lacks in reply.
        """
        room = self.rooms.get(name)
        if kind != KIND_HELLO and room is not None and not room.remote_peers:
            return
        self._outbox.put([(name, kind, payload)])

    async def _publish_batch(self, batch: list[tuple[str, int, bytes]]) -> None:
        # A failed batch is dropped: other nodes catch up through HELLO.
        counts = await self.fanout.publish_many(batch)
        for (name, _, _), count in zip(batch, counts, strict=True):
            room = self.rooms.get(name)
            if room is not None and count <= 1:
                room.alone()  # only this node listens on the channel

    async def _write_loop(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
            # Collect a window's worth of updates into one INSERT.
            await asyncio.sleep(self.limits.flush_interval_s)
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                written = await self.store.append([(room.name, update) for room, update in batch])
            except Exception as exc:  # noqa: BLE001 - keep everything and retry
                log.warning("storing %d document updates failed (%s); retrying in %.1fs",
                            len(batch), exc, backoff)
                self._pending = batch + self._pending
                self._wake.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            self._note_appended(batch, written)
            for room, _ in batch:
                room.written()
                if room.logged >= self.limits.compact_after:
                    self._compact.add(room.name)
            await self._compact_due()

    def _note_appended(self, batch: list[tuple[Room, bytes]], written: list[tuple[str, int]]) -> None:
        """Remember which rows each room appended from its own document (see store.py)."""
        by_name: dict[str, Room | None] = {}
        for room, _ in batch:
            # Two rooms of one name in a batch (unloaded and loaded again): credit neither.
            by_name[room.name] = room if by_name.get(room.name, room) is room else None
        for name, seq in written:
            owner = by_name.get(name)
            if owner is not None:
                owner.appended.add(seq)
        for owner in by_name.values():
            # Compaction held off for long (another node holds the room's lock): forget
            # rather than grow; compaction then folds from the stored rows.
            if owner is not None and len(owner.appended) > 4 * self.limits.compact_after:
                owner.appended.clear()

    async def _compact_due(self) -> None:
        due, self._compact = self._compact, set()
        for name in due:
            room = self.rooms.get(name)
            held = None
            if room is not None and room.appended:
                held = Held(room.doc.get_update(), frozenset(room.appended))
            try:
                folded = await self.store.compact(name, held)
            except Exception as exc:  # noqa: BLE001 - compaction is an optimisation; retry later
                log.warning("compacting %s failed: %s", name, exc)
                continue
            if room is not None and folded:
                room.compacted(folded)
                if held is not None:
                    # Every row appended before the compaction began was folded.
                    room.appended -= held.seqs

    async def _flush_all(self) -> None:
        self._wake.set()
        for room in list(self.rooms.values()):
            await room.flushed.wait()

    # -- server-side edits ------------------------------------------------------------

    async def edit(self, name: str, change: Callable[[Doc[Any]], None], origin: str) -> None:
        """Apply `change` to a document as `origin`; returns once the change is stored.

        Connected clients (on any node) receive it like any other update.
        """
        room = await self.acquire(name)
        try:
            room.apply(lambda: change(room.doc), origin, None)
            await room.flushed.wait()
        finally:
            await self.release(room)

    async def edit_in(self, conn: asyncpg.Connection,
                      edits: list[tuple[str, Callable[[Doc[Any]], None], str]]) -> Callable[[], None]:
        """Apply `edits` (room, change, origin) as part of the caller's transaction on `conn`;
        return what to call once that transaction has committed (not before: an edit whose
        transaction rolls back must reach no one).

        A room open on this node is changed in memory after the commit, like any edit: its
        connections see it and its log stores it within the write window. Any other room
        is built from its stored updates in the transaction, and the update the change
        makes is logged in the same transaction, so it commits with whatever it belongs
        to without loading the room; after the commit it goes to the nodes holding the
        room (or to a copy loaded here meanwhile).
        """
        live = [(n, c, o) for n, c, o in edits if n in self.rooms]
        cold = [(n, c, o) for n, c, o in edits if n not in self.rooms]
        updates: list[tuple[str, bytes]] = []
        if cold:
            stored = await self.store.load_many(conn, sorted({n for n, _, _ in cold}))
            docs: dict[str, Doc[Any]] = {}
            for name, change, _ in cold:
                doc = docs.get(name)
                if doc is None:
                    doc = docs[name] = Doc()
                    for update in stored.get(name, ()):
                        doc.apply_update(update)
                before = doc.get_state()
                change(doc)
                update = doc.get_update(before)
                if update != EMPTY_UPDATE:
                    updates.append((name, update))
            await self.store.append(updates, conn)

        def committed() -> None:
            for name, change, origin in live:
                room = self.rooms.get(name)
                if room is not None and not room.closing:
                    room.apply(partial(change, room.doc), origin, None)
                else:  # unloaded meanwhile: load it again to apply the change
                    asyncio.ensure_future(self._edit_later(name, change, origin))
            for name, update in updates:
                room = self.rooms.get(name)
                if room is not None and not room.closing:
                    room.apply_update(update, None, stored=True)
                else:
                    self.publish(name, KIND_UPDATE, update)

        return committed

    async def _edit_later(self, name: str, change: Callable[[Doc[Any]], None], origin: str) -> None:
        try:
            await self.edit(name, change, origin)
        except Exception as exc:  # noqa: BLE001 - what the edit mirrors is stored elsewhere
            log.warning("edit of %s after its commit failed: %s", name, exc)

    async def read(self, name: str, reader: Callable[[Doc[Any]], T]) -> T:
        """Run `reader` on the current document (loading it if no one has it open)."""
        room = await self.acquire(name)
        try:
            return reader(room.doc)
        finally:
            await self.release(room)
