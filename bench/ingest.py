"""Ingest benchmark: register 500,000 items from a local folder listing into a project.

    .venv/bin/python bench/ingest.py [--items 500000] [--folder /tmp/colabel-bench-500k]

The folder holds N empty `.jpg` files (created once and reused). Printed figures:
`list_s` (walking the folder), `register_s` (COPY + insert of the listed keys, the
target: <= 5 s), `ingest_s` (the two streamed together, as a real ingest runs), and
`probe_items_per_s` for the background size probing, measured separately on real PNGs.
Needs PostgreSQL (COLABEL_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1/postgres),
in which it creates and drops its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from migrations.runner import migrate  # noqa: E402
from server.data import ingest
from server.data.datastores.local import LocalDatastore
from server.services import init_connection  # noqa: E402

PROBE_ITEMS = 2000


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


async def run(args: argparse.Namespace) -> dict[str, object]:
    admin_url = os.environ.get("COLABEL_BENCH_DATABASE_URL",
                               "postgresql://postgres@127.0.0.1:5432/postgres")
    dbname = f"colabel_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + dbname
    try:
        await migrate(url)
        conn = await asyncpg.connect(url)
        await init_connection(conn)
        # Probing first, while the only unprobed items are the real PNGs it measures.
        probe_rate = await probe_rate_on_pngs(conn, url)
        store = LocalDatastore(args.folder)
        binding = {"datastore": {"kind": "local", "path": str(args.folder)}, "pattern": "**/*.*"}

        t = time.perf_counter()
        keys = [k async for k in store.list_keys("")]
        list_s = time.perf_counter() - t

        async def from_memory() -> AsyncIterator[str]:
            for k in keys:
                yield k

        pid = await new_project(conn, binding)
        t = time.perf_counter()
        async with conn.transaction():
            res = await ingest.register(conn, pid, args.items, from_memory(), kind="bench",
                                        unique_keys=True)
        register_s = time.perf_counter() - t
        assert res.added == args.items, res

        pid2 = await new_project(conn, binding)
        t = time.perf_counter()
        async with conn.transaction():
            res2 = await ingest.ingest_binding(conn, pid2, args.items, store, "**/*.*",
                                               kind="bench", detect_missing=False)
        ingest_s = time.perf_counter() - t
        assert res2.added == args.items, res2

        # Refresh with nothing new: the steady-state cost of a scheduled refresh.
        t = time.perf_counter()
        async with conn.transaction():
            res3 = await ingest.ingest_binding(conn, pid2, args.items, store, "**/*.*",
                                               kind="bench", detect_missing=True)
        refresh_s = time.perf_counter() - t
        assert res3.added == 0 and res3.missing == 0, res3

        await conn.close()
        return {
            "bench": "ingest", "source": "local folder listing", "items": args.items,
            "list_s": round(list_s, 3), "register_s": round(register_s, 3),
            "register_items_per_s": round(args.items / register_s),
            "ingest_s": round(ingest_s, 3), "ingest_items_per_s": round(args.items / ingest_s),
            "refresh_unchanged_s": round(refresh_s, 3),
            "probe_items_per_s": probe_rate, "target_register_s": 5.0,
            "seconds": round(register_s, 3), "items_per_s": round(args.items / register_s),
        }
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()


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
