"""Probing items' sizes and frame counts from their files' headers, in the background and
for exports that need pixel sizes. Items are claimed with `FOR UPDATE SKIP LOCKED`, so
every process can probe at once without doing the same item twice."""

from __future__ import annotations

import asyncio
import io

from . import media
from .datastores.base import Datastore, DatastoreError
from .datastores.factory import open_datastore
from .datastores.keys import extension
from .datastores.local import LocalDatastore
from .errors import ApiError
from .services import Services

PROBE_BATCH = 64
_CLAIM = """
SELECT i.id, i.project_id, i.key, p.dataset FROM items i JOIN projects p ON p.id = i.project_id
WHERE i.width IS NULL AND i.probe_error IS NULL AND i.status <> 'missing' AND p.dataset IS NOT NULL
  AND ($2::bigint IS NULL OR i.project_id = $2)
ORDER BY i.id LIMIT $1
FOR UPDATE OF i SKIP LOCKED
"""
_SET_SIZE = "UPDATE items SET width = $2, height = $3, frames = $4 WHERE id = $1"
_SET_ERROR = "UPDATE items SET probe_error = $2 WHERE id = $1"


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
    given); return how many."""
    settings = services.settings
    async with services.db.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_CLAIM, PROBE_BATCH, project_id)
        stores: dict[int, Datastore] = {}
        try:
            for row in rows:
                pid = row["project_id"]
                if pid not in stores:
                    stores[pid] = open_datastore(settings, pid, row["dataset"])
                try:
                    p = await _probe_one(stores[pid], row["key"], settings.media_max_bytes,
                                         settings.media_max_pixels)
                    await conn.execute(_SET_SIZE, row["id"], p.width, p.height, p.frames)
                except (ApiError, DatastoreError, OSError) as exc:
                    message = exc.message if isinstance(exc, ApiError) else str(exc)
                    await conn.execute(_SET_ERROR, row["id"], message[:500])
        finally:
            for store in stores.values():
                await store.close()
    return len(rows)
