"""Probing items' sizes and frame counts from their files' headers, in the background and
for exports that need pixel sizes. Items are claimed with an advisory lock per item, taken
in the claiming transaction, so every process can probe at once without doing the same item
twice; the items' rows are not locked while their files are read (a slow or stalled
datastore would otherwise hold up every lease and submit of those items), and the sizes
are written in one statement at the end."""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

from server.data.datastores.base import OBJECT_ERRORS, Datastore, DatastoreError
from server.data.datastores.factory import open_datastore
from server.data.datastores.keys import extension
from server.data.datastores.local import LocalDatastore
from server.errors import ApiError
from server.media import render as media

if TYPE_CHECKING:
    from server.services import Services

PROBE_BATCH = 64
# A project whose datastore cannot be reached is left alone this long: its items are not
# broken, and probing them again at once would hold up every other project's.
UNREACHABLE_BACKOFF_S = 60.0
# Advisory-lock namespace for "this item is being probed". The key is the item id folded into
# 31 bits: two items sharing one only means one waits for the next batch.
PROBE_LOCK_NS = 0x9B0BE
# The candidates are chosen first (the subquery's LIMIT keeps the lock function out of it):
# evaluated inside, the lock could be tried, and taken, on every unprobed item of the plan.
# They are taken project by project (the first of each project's unprobed items, a range of
# the items_unprobed index), so the projects probing cannot reach cost nothing to pass over.
_CLAIM = """
SELECT c.* FROM (
    SELECT i.* FROM projects p CROSS JOIN LATERAL (
        SELECT i.id, i.project_id, i.key, p.dataset FROM items i
        WHERE i.project_id = p.id AND i.width IS NULL AND i.probe_error IS NULL
          AND i.status <> 'missing'
        ORDER BY i.id LIMIT $1 * 4
    ) i
    WHERE p.dataset IS NOT NULL AND ($2::bigint IS NULL OR p.id = $2)
      AND NOT p.id = ANY($3::bigint[])
    ORDER BY i.id LIMIT $1 * 4
) c
WHERE pg_try_advisory_xact_lock($4, (c.id % 2147483647)::int)
LIMIT $1
"""
# project id -> when (monotonic) its datastore may be tried again, in this process.
_unreachable: dict[int, float] = {}
_SET_SIZES = """
UPDATE items SET width = t.w, height = t.h, frames = t.f
FROM unnest($1::bigint[], $2::int[], $3::int[], $4::int[]) AS t(id, w, h, f) WHERE items.id = t.id
"""
_SET_ERRORS = """
UPDATE items SET probe_error = t.e FROM unnest($1::bigint[], $2::text[]) AS t(id, e)
WHERE items.id = t.id
"""


async def _probe_one(store: Datastore, key: str, max_bytes: int, max_pixels: int) -> media.Probe:
    ext = extension(key)
    if isinstance(store, LocalDatastore):
        # Headers only: Pillow and pydicom read just what they need from the open file.
        def from_file() -> media.Probe:
            with open(store.path_of(key), "rb") as fp:
                return media.probe(fp, ext, max_pixels)

        return await asyncio.to_thread(from_file)
    data = await store.read(key, max_bytes)
    return await asyncio.to_thread(media.probe, io.BytesIO(data), ext, max_pixels)


async def probe_batch(services: Services, project_id: int | None = None) -> int:
    """Fill in size and frames for up to PROBE_BATCH unprobed items (of one project, if
    given); return how many were settled (probed, or found broken)."""
    settings = services.settings
    now = asyncio.get_running_loop().time()
    for pid, until in list(_unreachable.items()):
        if until <= now:
            del _unreachable[pid]
    sizes: list[tuple[int, int | None, int | None, int | None]] = []
    errors: list[tuple[int, str]] = []
    async with services.db.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_CLAIM, PROBE_BATCH, project_id, list(_unreachable), PROBE_LOCK_NS)
        stores: dict[int, Datastore] = {}
        try:
            for row in rows:
                pid = row["project_id"]
                if pid in _unreachable:
                    continue  # its datastore failed earlier in this batch
                if pid not in stores:
                    stores[pid] = open_datastore(settings, pid, row["dataset"])
                try:
                    p = await _probe_one(stores[pid], row["key"], settings.media_max_bytes,
                                         settings.media_max_pixels)
                    sizes.append((row["id"], p.width, p.height, p.frames))
                except (ApiError, *OBJECT_ERRORS, OSError) as exc:
                    message = exc.message if isinstance(exc, ApiError) else str(exc)
                    errors.append((row["id"], message[:500]))
                except DatastoreError:
                    # The datastore, not this file: try the project again later.
                    _unreachable[pid] = asyncio.get_running_loop().time() + UNREACHABLE_BACKOFF_S
        finally:
            for store in stores.values():
                await store.close()
        if sizes:
            await conn.execute(_SET_SIZES, *(list(c) for c in zip(*sizes, strict=True)))
        if errors:
            await conn.execute(_SET_ERRORS, *(list(c) for c in zip(*errors, strict=True)))
    settled = len(sizes) + len(errors)
    return settled
