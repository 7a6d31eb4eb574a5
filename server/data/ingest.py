"""Registering a datastore's files as items: bulk COPY, the item cap, missing files.

Every path in (first ingest, incremental refresh, uploads, tabular imports) goes through
`register`: keys are COPYed into a temporary table, then one statement inserts the
new ones in listing order up to the project's cap. A refresh also marks items whose file
has gone as `missing` (and restores them when it comes back). The whole run is one
transaction under a per-project advisory lock, so concurrent runs never interleave and
a listing that fails halfway changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from server.data.datastores.base import Datastore
from server.data.datastores.keys import accepted, compile_pattern, media_kind
from server.errors import Conflict

log = logging.getLogger(__name__)

# Advisory-lock namespace for "this project's items are being registered".
INGEST_LOCK_NS = 0x1A6E57
COPY_BATCH = 50_000

_CREATE_INCOMING = """
CREATE TEMP TABLE incoming (key text COLLATE "C" NOT NULL, media_kind text NOT NULL, ord integer NOT NULL)
ON COMMIT DROP
"""
_COUNT = "SELECT count(*) FROM items WHERE project_id = $1"
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


async def _batches(keys: AsyncIterable[str], result: IngestResult,
                   match: Any) -> AsyncIterator[list[tuple[str, str, int]]]:
    batch: list[tuple[str, str, int]] = []
    async for key in keys:
        if not (match(key) and accepted(key)):
            result.skipped += 1
            continue
        batch.append((key, media_kind(key), result.listed))
        result.listed += 1
        if len(batch) >= COPY_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _register_first(conn: asyncpg.Connection, project_id: int, cap: int,
                          keys: AsyncIterable[str], result: IngestResult, match: Any) -> None:
    """First ingest of an empty project: COPY the first `cap` keys straight into items."""
    async for batch in _batches(keys, result, match):
        room = cap - result.added
        rows = [(project_id, key, kind) for key, kind, _ in batch[:max(room, 0)]]
        if rows:
            await conn.copy_records_to_table("items", records=rows,
                                             columns=["project_id", "key", "media_kind"])
        result.added += len(rows)
        result.over_cap += len(batch) - len(rows)


async def register(conn: asyncpg.Connection, project_id: int, cap: int, keys: AsyncIterable[str],
                   *, kind: str, match: Any = None, detect_missing: bool = False,
                   unique_keys: bool = False) -> IngestResult:
    """Register `keys` (inside the caller's transaction, under the project lock).

    `unique_keys` promises no key repeats (a datastore listing), which lets the first
    ingest of an empty project skip the staging table.
    """
    started = time.monotonic()
    result = IngestResult(kind=kind, cap=cap)
    match = match or (lambda _k: True)
    existing = await conn.fetchval(_COUNT, project_id)
    if existing == 0 and unique_keys:
        await _register_first(conn, project_id, cap, keys, result, match)
        return _finish(result, 0, started)
    await conn.execute(_CREATE_INCOMING)
    async for batch in _batches(keys, result, match):
        await conn.copy_records_to_table("incoming", records=batch,
                                         columns=["key", "media_kind", "ord"])
    # Temporary tables have no statistics; without them the planner may nest-loop.
    await conn.execute("ANALYZE incoming")
    row = await conn.fetchrow(_INSERT_NEW, project_id, max(cap - existing, 0))
    result.added, result.over_cap = row["added"], row["fresh"] - row["added"]
    if detect_missing:
        result.missing = _count(await conn.execute(_MARK_MISSING, project_id))
        result.restored = _count(await conn.execute(_RESTORE, project_id))
    await conn.execute("DROP TABLE incoming")
    return _finish(result, existing, started)


def _finish(result: IngestResult, existing: int, started: float) -> IngestResult:
    result.total_items = existing + result.added
    result.seconds = round(time.monotonic() - started, 3)
    result.finished_at = datetime.now(UTC).isoformat()
    return result


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def ingest_binding(conn: asyncpg.Connection, project_id: int, cap: int, store: Datastore,
                         pattern: str, *, kind: str, detect_missing: bool) -> IngestResult:
    """List the datastore through the binding's pattern and register what it finds."""
    compiled = compile_pattern(pattern)
    result = await register(conn, project_id, cap, store.list_keys(compiled.list_prefix),
                            kind=kind, match=compiled.matches, detect_missing=detect_missing,
                            unique_keys=True)
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
