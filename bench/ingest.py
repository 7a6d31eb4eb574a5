"""Ingest benchmark: register 500,000 items from a local folder listing into a project.

    .venv/bin/python bench/ingest.py [--items 500000] [--folder /tmp/colabel-bench-500k]

The folder holds N empty `.jpg` files (created once and reused). Printed figures, each
next to its target where the product has one:
- `ingest_s` (target 2.5 s): a first ingest end to end, listing streamed into COPY, as
  binding a folder runs it;
- `refresh_s` (target 1.5 s): a refresh that finds the same files again;
- the breakdown: `list_s` (walking the folder alone), `select_s` (filtering the listing by
  pattern and extension alone), `copy_s` (the COPY of the rows into items alone, rolled
  back: the database's share), `register_s` (`register` fed the listing from memory, rolled
  back), `refresh_changed_s` (a refresh where one file vanished and one appeared);
- `probe_items_per_s` for the background size probing, measured separately on real PNGs.
Needs PostgreSQL (COLABEL_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1/postgres),
in which it creates and drops its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch_db import scratch_database  # noqa: E402
from server.data import ingest  # noqa: E402
from server.data.datastores.base import list_batches  # noqa: E402
from server.data.datastores.keys import compile_pattern, select  # noqa: E402
from server.data.datastores.local import LocalDatastore  # noqa: E402
from server.services import init_connection  # noqa: E402

PROBE_ITEMS = 2000
# The product's published targets for 500,000 items.
INGEST_TARGET_S = 2.5
REFRESH_TARGET_S = 1.5


def make_folder(folder: Path, n: int) -> None:
    """N empty files spread over 1,000 sub-folders; reused when already complete."""
    marker = folder / f".complete-{n}"
    if marker.exists():
        return
    for i in range(n):
        sub = folder / f"d{i % 1000:03d}"
        if i < 1000:
            sub.mkdir(parents=True, exist_ok=True)
        os.close(os.open(sub / f"img{i:07d}.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    marker.touch()


async def new_project(conn: asyncpg.Connection, binding: dict[str, object]) -> int:
    uid = await conn.fetchval(
        "INSERT INTO users (email, name, password_hash) VALUES ($1, 'b', 'x') RETURNING id",
        f"{uuid.uuid4().hex}@bench")
    pid: int = await conn.fetchval(
        "INSERT INTO projects (name, task_type, consensus, ml_assist, created_by, dataset) "
        "VALUES ($1, 'multiclass', '{\"enabled\": false}', '{\"enabled\": false}', $2, $3) "
        "RETURNING id", uuid.uuid4().hex, uid, binding)
    return pid


async def timed_rollback(conn: asyncpg.Connection, work: Callable[[], Awaitable[object]]) -> float:
    """Seconds `work` takes inside a transaction that is then rolled back."""
    tr = conn.transaction()
    await tr.start()
    try:
        t = time.perf_counter()
        await work()
        return time.perf_counter() - t
    finally:
        await tr.rollback()


async def breakdown(conn: asyncpg.Connection, store: LocalDatastore, binding: dict[str, object],
                    items: int) -> dict[str, float]:
    """The parts of an ingest, each alone."""
    t = time.perf_counter()
    batches = [b async for b in list_batches(store, "")]
    list_s = time.perf_counter() - t
    pattern = compile_pattern("**/*.*")
    t = time.perf_counter()
    keys = list(itertools.chain.from_iterable(select(b, pattern) for b in batches))
    select_s = time.perf_counter() - t
    assert len(keys) == items, len(keys)
    rows = [ingest._copy_text(keys[i:i + 10_000], "{pid}\t") for i in range(0, items, 10_000)]

    async def copy() -> None:
        pid = await new_project(conn, binding)
        lead = b"%d\t" % pid

        async def source() -> AsyncIterator[bytes]:
            for chunk in rows:
                yield chunk.replace(b"{pid}\t", lead)

        await conn.copy_to_table("items", source=source(), columns=["project_id", "key", "media_kind"])

    async def register() -> None:
        async def from_memory() -> AsyncIterator[str]:
            for k in keys:
                yield k

        pid = await new_project(conn, binding)
        res = await ingest.register(conn, pid, items, from_memory(), kind="bench", unique_keys=True)
        assert res.added == items, res

    return {"list_s": list_s, "select_s": select_s,
            "copy_s": await timed_rollback(conn, copy),
            "register_s": await timed_rollback(conn, register)}


async def timed_ingest(conn: asyncpg.Connection, pid: int, store: LocalDatastore, items: int, *,
                       detect_missing: bool) -> tuple[float, ingest.IngestResult]:
    t = time.perf_counter()
    async with conn.transaction():
        res = await ingest.ingest_binding(conn, pid, items, store, "**/*.*", kind="bench",
                                          detect_missing=detect_missing)
    return time.perf_counter() - t, res


async def changed_refresh(conn: asyncpg.Connection, pid: int, store: LocalDatastore,
                          items: int) -> float:
    """A refresh that finds one file gone and one new (the same file renamed); the folder
    is put back and refreshed again afterwards, so it stays reusable."""
    gone = store.root / "d000" / "img0000000.jpg"
    new = store.root / "d000" / "renamed.jpg"
    os.rename(gone, new)
    try:
        seconds, res = await timed_ingest(conn, pid, store, items + 1, detect_missing=True)
        assert (res.added, res.missing, res.restored) == (1, 1, 0), res
    finally:
        os.rename(new, gone)
    _, res = await timed_ingest(conn, pid, store, items + 1, detect_missing=True)
    assert (res.added, res.missing, res.restored) == (0, 1, 1), res
    return seconds


async def run(args: argparse.Namespace) -> dict[str, object]:
    async with scratch_database() as url:
        conn = await asyncpg.connect(url)
        await init_connection(conn)
        # Probing first, while the only unprobed items are the real PNGs it measures.
        probe_rate = await probe_rate_on_pngs(conn, url)
        store = LocalDatastore(args.folder)
        binding = {"datastore": {"kind": "local", "path": str(args.folder)}, "pattern": "**/*.*"}
        parts = await breakdown(conn, store, binding, args.items)

        pid = await new_project(conn, binding)
        ingest_s, res = await timed_ingest(conn, pid, store, args.items, detect_missing=False)
        assert res.added == args.items, res
        # Refresh with nothing new: the steady-state cost of a scheduled refresh.
        refresh_s, res = await timed_ingest(conn, pid, store, args.items, detect_missing=True)
        assert (res.added, res.missing, res.restored, res.listed) == (0, 0, 0, args.items), res
        refresh_changed_s = await changed_refresh(conn, pid, store, args.items)
        await conn.close()
        return {
            "bench": "ingest", "source": "local folder listing", "items": args.items,
            "ingest_s": round(ingest_s, 3), "ingest_target_s": INGEST_TARGET_S,
            "refresh_s": round(refresh_s, 3), "refresh_target_s": REFRESH_TARGET_S,
            "ingest_items_per_s": round(args.items / ingest_s),
            **{k: round(v, 3) for k, v in parts.items()},
            "refresh_changed_s": round(refresh_changed_s, 3),
            "probe_items_per_s": probe_rate,
        }


async def probe_rate_on_pngs(conn: asyncpg.Connection, url: str) -> float:
    """Background probing throughput on real 640x480 PNGs, one process."""
    from dataclasses import replace

    from server.data.probing import probe_batch
    from server.services import Services
    from server.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pngs"
        folder.mkdir()
        img = Image.new("RGB", (640, 480), (90, 120, 200))
        for i in range(PROBE_ITEMS):
            img.save(folder / f"p{i:05d}.png")
        binding = {"datastore": {"kind": "local", "path": str(folder)}, "pattern": "**/*.*"}
        pid = await new_project(conn, binding)
        async with conn.transaction():
            await ingest.ingest_binding(conn, pid, PROBE_ITEMS, LocalDatastore(folder), "**/*.*",
                                        kind="bench", detect_missing=False)
        settings = replace(Settings(data_dir=Path(tmp)), database_url=url,
                           redis_url="redis://127.0.0.1:6379/0")
        services = await Services.open(settings)
        try:
            t = time.perf_counter()
            while await probe_batch(services):
                pass
            seconds = time.perf_counter() - t
        finally:
            await services.close()
        done = await conn.fetchval("SELECT count(*) FROM items WHERE project_id = $1 AND width = 640",
                                   pid)
        assert done == PROBE_ITEMS, done
        return round(PROBE_ITEMS / seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=500_000)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    args.folder = args.folder or Path(tempfile.gettempdir()) / f"colabel-bench-{args.items}"
    make_folder(args.folder, args.items)
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
