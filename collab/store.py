"""The Postgres side of documents: an update log per room, snapshots and compaction.

Writers append updates in batches (one INSERT for many rooms). Loading reads the
snapshot and every logged update of the room. Compaction folds the logged rows it has
read into the snapshot and deletes exactly those rows, under a per-room advisory lock,
so rows appended meanwhile by other nodes are never lost.

What the snapshot is built from: the stored rows, replayed into an empty document; or,
when the caller proves it holds every one of those rows in memory (each was appended by
this process from the document it passes), the stored snapshot merged with that
document's state, which skips replaying hundreds of rows. Either way the new snapshot
holds the old one and every folded row, so no state of memory can overwrite stored state.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Any

import asyncpg
from pycrdt import Doc

log = logging.getLogger(__name__)

COMPACT_LOCK_NS = 0x0C0DA7
_SNAPSHOT = "SELECT data FROM doc_snapshots WHERE room = $1"
_TAIL = "SELECT seq, data FROM doc_updates WHERE room = $1 ORDER BY seq"
_APPEND = """
INSERT INTO doc_updates (room, data)
SELECT * FROM unnest($1::text[], $2::bytea[])
RETURNING room, seq
"""
_TAIL_FOR_COMPACTION = "SELECT seq, data FROM doc_updates WHERE room = $1 ORDER BY seq FOR UPDATE"
_TAIL_SEQS_FOR_COMPACTION = "SELECT seq FROM doc_updates WHERE room = $1 ORDER BY seq FOR UPDATE"
_UPSERT_SNAPSHOT = """
INSERT INTO doc_snapshots (room, data, updates) VALUES ($1, $2, $3)
ON CONFLICT (room) DO UPDATE SET data = EXCLUDED.data,
    updates = doc_snapshots.updates + EXCLUDED.updates, updated_at = now()
"""
# Several rooms' stored state at once: each room's snapshot first, then its log in order.
_LOAD_MANY = """
SELECT room, data FROM (
    SELECT room, data, 0 AS part, 0::bigint AS seq FROM doc_snapshots WHERE room = ANY($1::text[])
    UNION ALL
    SELECT room, data, 1, seq FROM doc_updates WHERE room = ANY($1::text[])
) s ORDER BY room, part, seq
"""
_DELETE_ROWS = "DELETE FROM doc_updates WHERE seq = ANY($1::bigint[])"
_COUNT_TAIL = "SELECT count(*) FROM doc_updates WHERE room = $1"


def _lock_key(room: str) -> int:
    # A stable 31-bit key per room for pg_try_advisory_xact_lock(ns, key).
    return zlib.crc32(room.encode()) & 0x7FFFFFFF


class DocumentStore:
    """Reads and writes rooms' updates in Postgres."""

    def __init__(self, db: asyncpg.Pool) -> None:
        self.db = db

    async def load(self, room: str) -> list[bytes]:
        """The stored updates of a room: the snapshot first (if any), then the log."""
        async with self.db.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            snapshot = await conn.fetchval(_SNAPSHOT, room)
            rows = await conn.fetch(_TAIL, room)
        return ([snapshot] if snapshot is not None else []) + [r["data"] for r in rows]

    async def load_many(self, conn: asyncpg.Connection, rooms: list[str]) -> dict[str, list[bytes]]:
        """The stored updates of several rooms in one statement, on the caller's connection
        (inside its transaction); rooms with nothing stored are left out."""
        out: dict[str, list[bytes]] = {}
        for row in await conn.fetch(_LOAD_MANY, rooms):
            out.setdefault(row["room"], []).append(row["data"])
        return out

    async def append(self, batch: list[tuple[str, bytes]],
                     conn: asyncpg.Connection | None = None) -> list[tuple[str, int]]:
        """Append (room, update) pairs in one statement (on `conn`, inside its transaction,
        when given); return the (room, seq) of the rows written. Raises if Postgres fails."""
        if not batch:
            return []
        rows = await (conn or self.db).fetch(_APPEND, [r for r, _ in batch], [u for _, u in batch])
        return [(row["room"], row["seq"]) for row in rows]

    async def tail_length(self, room: str) -> int:
        count: int = await self.db.fetchval(_COUNT_TAIL, room)
        return count

    async def compact(self, room: str, held: Held | None = None) -> int:
        """Fold the room's logged updates into its snapshot; return rows folded (0 if busy).

        `held`: the room's current state and the seqs of the rows this process appended
        from it (see the module docstring); used when every row to fold is among them."""
        async with self.db.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)",
                                       COMPACT_LOCK_NS, _lock_key(room)):
                return 0
            if held is not None:
                seqs = [r["seq"] for r in await conn.fetch(_TAIL_SEQS_FOR_COMPACTION, room)]
                if not seqs:
                    return 0
                if held.seqs.issuperset(seqs):
                    await self._fold(conn, room, [held.state], seqs)
                    return len(seqs)
            rows = await conn.fetch(_TAIL_FOR_COMPACTION, room)
            if not rows:
                return 0
            await self._fold(conn, room, [r["data"] for r in rows], [r["seq"] for r in rows])
        log.debug("compacted %s rows of %s", len(rows), room)
        return len(rows)

    @staticmethod
    async def _fold(conn: asyncpg.Connection, room: str, updates: list[bytes],
                    seqs: list[int]) -> None:
        """Store snapshot + `updates` as the new snapshot and delete the rows `seqs`."""
        doc: Doc[Any] = Doc()
        snapshot = await conn.fetchval(_SNAPSHOT, room)
        if snapshot is not None:
            doc.apply_update(snapshot)
        for update in updates:
            doc.apply_update(update)
        await conn.execute(_UPSERT_SNAPSHOT, room, doc.get_update(), len(seqs))
        await conn.execute(_DELETE_ROWS, seqs)


@dataclass(frozen=True)
class Held:
    """A room as one process holds it: its document's state, and the seqs of the rows that
    process appended from that document (so the state contains each of them)."""

    state: bytes
    seqs: frozenset[int]
