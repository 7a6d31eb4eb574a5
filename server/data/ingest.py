"""Registering a datastore's files as items: bulk COPY, the item cap, missing files.

Every path (first ingest, incremental refresh, uploads, tabular imports) goes through
`register`. The listing is filtered a batch at a time (one regex per key, run from C: see
`keys.select`) and streamed into a single COPY while it is still being listed, so walking
the datastore overlaps with the database writing the rows:

- the first ingest of an empty project COPYs the first `cap` keys straight into items;
- otherwise the keys go into a temporary table, then one statement inserts the new ones in
  listing order up to the project's cap, and a refresh marks items whose file has gone as
  `missing` (and restores them when it comes back);
- a refresh that lists exactly the project's present items, the steady state of a
  scheduled refresh, is recognised by a digest of the sorted keys that the database
  computes while the listing runs, and then writes nothing.

The whole run is one transaction under a per-project advisory lock, so concurrent runs never
interleave and a listing that fails halfway changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from server.data.datastores.base import Datastore, list_batches
from server.data.datastores.keys import DICOM_ENDING, Pattern, compile_pattern, select
from server.data.progress import Progress
from server.errors import Conflict

log = logging.getLogger(__name__)

# Advisory-lock namespace for "this project's items are being registered".
INGEST_LOCK_NS = 0x1A6E57
# Keys per chunk of the COPY stream when they arrive one at a time: big enough that the
# per-chunk work is a few C-level passes, small enough to keep the database busy early.
COPY_BATCH = 10_000

_ITEM_COLUMNS = ["project_id", "key", "media_kind"]
# `ord` numbers the rows in COPY order, which is listing order.
_CREATE_INCOMING = """
CREATE TEMP TABLE incoming (key text COLLATE "C" NOT NULL, media_kind text NOT NULL,
                            ord bigint GENERATED ALWAYS AS IDENTITY)
ON COMMIT DROP
"""
_ANY = "SELECT EXISTS (SELECT 1 FROM items WHERE project_id = $1)"
_COUNT = "SELECT count(*) FROM items WHERE project_id = $1"
# The items a refresh expects to list again (all but the missing ones), as a count and a
# SHA-256 of their keys in bytewise order, one per line.
_PRESENT = """
SELECT count(*) AS total, count(*) FILTER (WHERE status <> 'missing') AS present,
       sha256(convert_to(string_agg(key, E'\\n' ORDER BY key)
                         FILTER (WHERE status <> 'missing'), 'UTF8')) AS digest
FROM items WHERE project_id = $1
"""
# `fresh` is materialized once: its size says how many new files exceeded the cap.
_INSERT_NEW = """
WITH fresh AS MATERIALIZED (
    SELECT i.key, i.media_kind, i.ord FROM incoming i
    WHERE NOT EXISTS (SELECT 1 FROM items t WHERE t.project_id = $1 AND t.key = i.key)
), added AS (
    INSERT INTO items (project_id, key, media_kind)
    SELECT $1, key, media_kind FROM fresh ORDER BY ord LIMIT $2
    RETURNING 1
)
SELECT (SELECT count(*) FROM fresh) AS fresh, (SELECT count(*) FROM added) AS added
"""
_MARK_MISSING = """
UPDATE items SET status_before_missing = status, status = 'missing',
                 missing_since = now(), updated_at = now()
WHERE project_id = $1 AND status <> 'missing'
  AND NOT EXISTS (SELECT 1 FROM incoming i WHERE i.key = items.key)
"""
_RESTORE = """
UPDATE items SET status = coalesce(status_before_missing, 'unlabeled'),
                 status_before_missing = NULL, missing_since = NULL, updated_at = now()
WHERE project_id = $1 AND status = 'missing'
  AND EXISTS (SELECT 1 FROM incoming i WHERE i.key = items.key)
"""
_SAVE_RESULT = """
UPDATE projects SET ingest = $2, last_refresh_at = CASE WHEN $3 THEN now() ELSE last_refresh_at END
WHERE id = $1
"""
# Rows are written `<key>\timage`; those whose key ends in a DICOM extension are turned
# into `\tdicom` afterwards (keys reaching here are accepted, so the ending decides).
_DICOM_ROW = re.compile(f"({DICOM_ENDING})\timage\n")
# COPY's text format takes these characters escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\r": "\\r", "\n": "\\n"})

Pick = Callable[[list[str]], list[str]]


@dataclass
class IngestResult:
    """What one run found and did; stored as the project's `ingest` details."""

    kind: str
    listed: int = 0          # files matching the pattern and the accepted extensions
    skipped: int = 0         # files ignored for their extension or the pattern
    added: int = 0
    over_cap: int = 0        # new files left out because the project is full
    missing: int = 0         # items whose file disappeared in this run
    restored: int = 0        # items whose file came back
    total_items: int = 0
    cap: int = 0
    seconds: float = 0.0
    finished_at: str = ""
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def changed_items(self) -> bool:
        """Whether the project's set of labelable items changed (the work queue must follow)."""
        return bool(self.added or self.missing or self.restored)


async def lock_project(conn: asyncpg.Connection, project_id: int, *, wait: bool) -> None:
    """Take the per-project ingest lock for this transaction, or raise 409."""
    if wait:
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", INGEST_LOCK_NS, project_id)
        return
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)", INGEST_LOCK_NS, project_id):
        raise Conflict("this project's data is being registered right now; try again shortly",
                       code="ingest_running")


async def _chunks(keys: AsyncIterable[str]) -> AsyncIterator[list[str]]:
    chunk: list[str] = []
    async for key in keys:
        chunk.append(key)
        if len(chunk) >= COPY_BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _picker(match: Any) -> Pick:
    """What a batch keeps: accepted keys that `match` (a compiled Pattern, filtered a batch
    at a time, or any predicate on one key) takes."""
    if match is None:
        return select
    if isinstance(match, Pattern):
        return lambda batch: select(batch, match)
    return lambda batch: select([k for k in batch if match(k)])


async def _picked(batches: AsyncIterable[list[str]], pick: Pick, result: IngestResult,
                  progress: Progress | None = None) -> AsyncIterator[list[str]]:
    """The kept keys of each batch (none empty), counting what was kept and skipped, and
    telling `progress` how many files were taken so far (a listing's length is unknown)."""
    async for batch in batches:
        kept = pick(batch)
        result.skipped += len(batch) - len(kept)
        result.listed += len(kept)
        if progress is not None:
            await progress(result.listed, None)
        if kept:
            yield kept


def _copy_text(keys: list[str], lead: str) -> bytes:
    """COPY text rows `<lead><key>\t<media kind>` for accepted keys, in order."""
    if not keys:
        return b""
    text = "\n".join(keys)
    if text.count("\n") != len(keys) - 1:
        text = "\n".join(k.translate(_COPY_ESCAPES) for k in keys)
    elif "\\" in text or "\t" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r")
    rows = lead + text.replace("\n", "\timage\n" + lead) + "\timage\n"
    return _DICOM_ROW.sub("\\1\tdicom\n", rows).encode()


def _digest(keys: list[str]) -> bytes | None:
    """SHA-256 of the keys sorted bytewise, one per line, as `_PRESENT` computes it; None
    when a key holds a newline, which would make the lines ambiguous."""
    text = "\n".join(sorted(keys))
    if keys and text.count("\n") != len(keys) - 1:
        return None
    # Code point order is UTF-8 byte order, the order of the "C" collation.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest() if keys else None


async def _copy(conn: asyncpg.Connection, table: str, columns: list[str],
                rows: AsyncIterable[bytes]) -> None:
    await conn.copy_to_table(table, source=rows, columns=columns, format="text")


async def _rows(picked: AsyncIterable[list[str]], lead: str) -> AsyncIterator[bytes]:
    async for keys in picked:
        yield _copy_text(keys, lead)


async def _register_first(conn: asyncpg.Connection, project_id: int, cap: int,
                          picked: AsyncIterable[list[str]], result: IngestResult) -> None:
    """First ingest of an empty project: COPY the first `cap` keys straight into items."""

    async def rows() -> AsyncIterator[bytes]:
        async for keys in picked:
            room = max(cap - result.added, 0)
            taken = keys if room >= len(keys) else keys[:room]
            result.added += len(taken)
            result.over_cap += len(keys) - len(taken)
            if taken:
                yield _copy_text(taken, f"{project_id}\t")

    await _copy(conn, "items", _ITEM_COLUMNS, rows())


async def _settle(task: asyncio.Future[Any]) -> None:
    """Wait for `task` without raising: its connection takes nothing else until it answers."""
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()


async def _refresh(conn: asyncpg.Connection, project_id: int, cap: int,
                   picked: AsyncIterable[list[str]], result: IngestResult) -> int:
    """Refresh a project that has items; return how many it had.

    The database digests the present items while the listing runs. Equal digests mean
    nothing was added or vanished and no missing file came back, so nothing is written;
    otherwise what was listed goes through the staging table as in any registration."""
    present = asyncio.ensure_future(conn.fetchrow(_PRESENT, project_id))
    try:
        batches = [keys async for keys in picked]
    except BaseException:
        await _settle(present)
        raise
    row = await present
    keys = list(itertools.chain.from_iterable(batches))
    if row["present"] == len(keys) and row["digest"] == _digest(keys):
        return int(row["total"])
    await _stage(conn, _listed(batches))
    await _apply(conn, project_id, cap, row["total"], result, detect_missing=True,
                 present=row["present"])
    return int(row["total"])


async def _listed(batches: list[list[str]]) -> AsyncIterator[list[str]]:
    for keys in batches:
        yield keys


async def _stage(conn: asyncpg.Connection, picked: AsyncIterable[list[str]]) -> None:
    await conn.execute(_CREATE_INCOMING)
    await _copy(conn, "incoming", ["key", "media_kind"], _rows(picked, ""))


async def _apply(conn: asyncpg.Connection, project_id: int, cap: int, existing: int,
                 result: IngestResult, *, detect_missing: bool, present: int | None = None) -> None:
    """Insert the staged keys that are new, up to the cap; with `detect_missing`, mark
    vanished files missing and restore returning ones. `present` (how many items were not
    missing, for a listing without repeats) lets the counts skip a statement with nothing
    to do: each is a pass over the project's items."""
    # Temporary tables have no statistics; without them the planner may nest-loop.
    await conn.execute("ANALYZE incoming")
    row = await conn.fetchrow(_INSERT_NEW, project_id, max(cap - existing, 0))
    result.added, result.over_cap = row["added"], row["fresh"] - row["added"]
    if detect_missing:
        if present is None or existing > present:
            result.restored = _count(await conn.execute(_RESTORE, project_id))
        # A listed key is new, a returning missing item or a present one; present items
        # not accounted for that way have vanished.
        if present is None or present - (result.listed - row["fresh"] - result.restored) > 0:
            result.missing = _count(await conn.execute(_MARK_MISSING, project_id))
    await conn.execute("DROP TABLE incoming")


async def register(conn: asyncpg.Connection, project_id: int, cap: int, keys: AsyncIterable[str],
                   *, kind: str, match: Any = None, detect_missing: bool = False,
                   unique_keys: bool = False) -> IngestResult:
    """Register `keys` (inside the caller's transaction, under the project lock).

    `match` is a compiled Pattern or a predicate on one key. `unique_keys` promises no key
    repeats (a datastore listing), which lets the first ingest of an empty project skip the
    staging table and a refresh recognise an unchanged listing.
    """
    return await _register(conn, project_id, cap, _chunks(keys), _picker(match), kind=kind,
                           detect_missing=detect_missing, unique_keys=unique_keys)


async def _register(conn: asyncpg.Connection, project_id: int, cap: int,
                    batches: AsyncIterable[list[str]], pick: Pick, *, kind: str,
                    detect_missing: bool, unique_keys: bool,
                    progress: Progress | None = None) -> IngestResult:
    started = time.monotonic()
    result = IngestResult(kind=kind, cap=cap)
    picked = _picked(batches, pick, result, progress)
    if unique_keys and not await conn.fetchval(_ANY, project_id):
        await _register_first(conn, project_id, cap, picked, result)
        return _finish(result, 0, started)
    if unique_keys and detect_missing:
        existing = await _refresh(conn, project_id, cap, picked, result)
        return _finish(result, existing, started)
    existing = await conn.fetchval(_COUNT, project_id)
    await _stage(conn, picked)
    await _apply(conn, project_id, cap, existing, result, detect_missing=detect_missing)
    return _finish(result, existing, started)


def _finish(result: IngestResult, existing: int, started: float) -> IngestResult:
    result.total_items = existing + result.added
    result.seconds = round(time.monotonic() - started, 3)
    result.finished_at = datetime.now(UTC).isoformat()
    return result


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def ingest_binding(conn: asyncpg.Connection, project_id: int, cap: int, store: Datastore,
                         pattern: str, *, kind: str, detect_missing: bool,
                         progress: Progress | None = None) -> IngestResult:
    """List the datastore through the binding's pattern and register what it finds."""
    compiled = compile_pattern(pattern)
    result = await _register(conn, project_id, cap, list_batches(store, compiled.list_prefix),
                             _picker(compiled), kind=kind, detect_missing=detect_missing,
                             unique_keys=True, progress=progress)
    await conn.execute(_SAVE_RESULT, project_id, result.to_json(), True)
    log.info("project %s %s: %s", project_id, kind, result.to_json())
    return result


async def register_keys(conn: asyncpg.Connection, project_id: int, cap: int, keys: Iterable[str],
                        *, kind: str) -> IngestResult:
    """Register an explicit list of keys (uploads, imports)."""

    async def gen() -> AsyncIterator[str]:
        for k in keys:
            yield k

    result = await register(conn, project_id, cap, gen(), kind=kind)
    await conn.execute(_SAVE_RESULT, project_id, result.to_json(), False)
    return result
