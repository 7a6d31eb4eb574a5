"""Running exports: any server process claims a queued export (or one whose process stopped
beating), writes it batch by batch to `<data dir>/exports/<project>/` and reports progress
in Postgres and on the project's live events. The file appears under its final name only
when complete."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from server.data.probing import probe_batch
from server.exports import source
from server.exports.automl import AutoMLWriter
from server.exports.coco import CocoWriter
from server.exports.masks import MasksWriter
from server.exports.table import CsvWriter
from server.exports.voc import VocWriter
from server.exports.writer import SUFFIX, Context, Writer, relaxed_gc
from server.exports.yolo import YoloWriter
from server.settings import Settings

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger(__name__)

WRITERS: dict[str, type[Writer]] = {
    "coco": CocoWriter, "jsonl": AutoMLWriter, "csv": CsvWriter,
    "masks": MasksWriter, "voc": VocWriter, "yolo": YoloWriter,
}
# Formats that write pixel coordinates or image sizes (AutoML's JSON Lines names them in
# image_details) need every item's size first.
NEEDS_SIZE = {"coco", "masks", "voc", "jsonl"}
STALE_S = 120       # a running export not heard of for this long is taken over
PROGRESS_S = 0.5    # progress is saved and announced at most this often
PROBE_WAIT_S = 60   # how long to wait for other processes probing the same project

_CLAIM = """
UPDATE exports SET status = 'running', started_at = now(), heartbeat_at = now(), done = 0
WHERE id = (
    SELECT id FROM exports
    WHERE status = 'queued' OR (status = 'running' AND heartbeat_at < now() - make_interval(secs => $1))
    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, project_id, format, filters, image_url_prefix
"""
_PROJECT = "SELECT name, task_type, dataset FROM projects WHERE id = $1"
_PROGRESS = """
UPDATE exports SET done = $2, total = $3, heartbeat_at = now() WHERE id = $1 AND status = 'running'
"""
_DONE = """
UPDATE exports SET status = 'done', done = $2, file_name = $3, size_bytes = $4, warnings = $5,
                   finished_at = now(), heartbeat_at = now()
WHERE id = $1 AND status = 'running'
"""
_FAILED = """
UPDATE exports SET status = 'failed', error = $2, finished_at = now() WHERE id = $1 AND status = 'running'
"""
_UNPROBED = """
SELECT count(*) FROM items
WHERE project_id = $1 AND width IS NULL AND probe_error IS NULL AND status <> 'missing'
"""


def file_path(settings: Settings, project_id: int, file_name: str) -> Path:
    return settings.exports_dir / str(project_id) / file_name


def file_name(export_id: int, fmt: str) -> str:
    return f"export-{export_id}-{fmt}{SUFFIX[fmt]}"


async def run_next(services: Services) -> int:
    """Claim and run one export; return 1 if there was one, 0 otherwise."""
    row = await services.db.fetchrow(_CLAIM, float(STALE_S))
    if row is None:
        return 0
    await run(services, row)
    return 1


async def run(services: Services, row: asyncpg.Record) -> None:
    db, settings = services.db, services.settings
    export_id, pid, fmt = row["id"], row["project_id"], row["format"]
    name = file_name(export_id, fmt)
    final = file_path(settings, pid, name)
    part = final.with_name(name + ".part")
    progress = _Progress(services, pid, export_id)
    try:
        with relaxed_gc():
            # Reading a whole project may take longer than a request's statements may.
            async with db.bulk() as conn:
                project = await conn.fetchrow(_PROJECT, pid)
                filters = source.Filters(**row["filters"])
                if fmt in NEEDS_SIZE and project["task_type"] in ("bbox", "polygon", "semantic"):
                    await _probe(services, pid)
                ctx = Context(project["name"], project["task_type"], await source.label_table(conn, pid),
                              filters, row["image_url_prefix"])
                total = await source.count(conn, pid, filters)
                await progress.report(0, total, force=True)
                final.parent.mkdir(parents=True, exist_ok=True)
                writer = await asyncio.to_thread(WRITERS[fmt], part, ctx)
                done = 0
                async for batch in source.read_ahead(source.batches(conn, pid, filters)):
                    await asyncio.to_thread(writer.write, batch)
                    done += len(batch)
                    await progress.report(done, total)
        warnings = await asyncio.to_thread(writer.close)
        os.replace(part, final)
        status = await db.execute(_DONE, export_id, done, name, final.stat().st_size, warnings)
        if status.endswith(" 0"):  # deleted (or taken over) meanwhile: leave nothing behind
            final.unlink(missing_ok=True)
            return
        progress.publish("done", done, total, warnings=warnings)
        log.info("export %s of project %s: %d items as %s", export_id, pid, done, fmt)
    except Exception as exc:  # noqa: BLE001 - any failure is the export's, reported on it
        log.exception("export %s of project %s failed", export_id, pid)
        part.unlink(missing_ok=True)
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            await db.execute(_FAILED, export_id, f"{type(exc).__name__}: {exc}"[:1000])
        progress.publish("failed", 0, None, error=str(exc)[:200])


async def _probe(services: Services, project_id: int) -> None:
    """Make sure every item of the project has a size (or a recorded probe error)."""
    deadline = time.monotonic() + PROBE_WAIT_S
    while await probe_batch(services, project_id):
        pass
    # Items another process is probing right now were skipped; wait for it to finish them.
    while await services.db.fetchval(_UNPROBED, project_id) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        await probe_batch(services, project_id)


class _Progress:
    """Saves progress (the heartbeat too) and announces it, at most every PROGRESS_S."""

    def __init__(self, services: Services, project_id: int, export_id: int) -> None:
        self.services = services
        self.project_id = project_id
        self.export_id = export_id
        self.last = 0.0

    async def report(self, done: int, total: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_S:
            return
        self.last = now
        await self.services.db.execute(_PROGRESS, self.export_id, done, total)
        self.publish("running", done, total)

    def publish(self, status: str, done: int, total: int | None, **extra: Any) -> None:
        self.services.work.events.emit(self.project_id, "export", export_id=self.export_id,
                                       status=status, done=done, total=total, **extra)
