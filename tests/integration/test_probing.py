"""Probing image sizes in the background: a project whose datastore cannot be reached is
left for later, its items are not marked broken, and other projects are probed meanwhile.
On a database of its own, so that no other process's prober takes part."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from migrations.runner import migrate
from server.data import probing
from server.services import Services
from server.settings import Settings

STALLED_ITEMS = 70  # more than one batch: the reachable project's items come after them


async def test_an_unreachable_datastore_does_not_hold_up_other_projects(
        fresh_database: Callable[[], str], redis_url: str, tmp_path: Path) -> None:
    url = fresh_database()
    await migrate(url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, redis_url=redis_url,
                        redis_prefix="probe-test:", secret_key="x", background_jobs=False)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (10 + i, 7)).save(folder / f"{i}.png")
    services = await Services.open(settings)
    backed_off: dict[int, float] = getattr(probing, "_unreachable", {})
    backed_off.clear()
    try:
        async with services.db.acquire() as conn:
            insert = ("INSERT INTO projects (name, task_type, status, consensus, ml_assist, dataset) "
                      "VALUES ($1, 'multiclass', 'running', '{}', '{}', $2) RETURNING id")
            # Loopback is not allowed by default: the store is unreachable at once.
            stalled = await conn.fetchval(insert, "stalled", {
                "datastore": {"kind": "azure_blob", "account_url": "https://127.0.0.1:9/acct",
                              "container": "c", "prefix": "", "sas_token": "sv=x&sig=y"},
                "pattern": "**/*.*"})
            local = await conn.fetchval(insert, "local", {
                "datastore": {"kind": "local", "path": str(folder)}, "pattern": "**/*.*"})
            await conn.executemany("INSERT INTO items (project_id, key, media_kind) VALUES ($1, $2, 'image')",
                                   [(stalled, f"{i:03d}.png") for i in range(STALLED_ITEMS)]
                                   + [(local, f"{i}.png") for i in range(3)])
        began = time.monotonic()
        while await services.db.fetchval(
                "SELECT count(*) FROM items WHERE project_id = $1 AND width IS NULL", local):
            assert time.monotonic() - began < 20, "the reachable project was never probed"
            await probing.probe_batch(services)
        sizes = await services.db.fetch("SELECT key, width, height FROM items WHERE project_id = $1 "
                                        "ORDER BY key", local)
        assert [(r["width"], r["height"]) for r in sizes] == [(10, 7), (11, 7), (12, 7)]
        # The unreachable project's items wait for their datastore: not marked broken.
        left = await services.db.fetchrow(
            "SELECT count(*) FILTER (WHERE width IS NULL) AS unprobed, "
            "count(*) FILTER (WHERE probe_error IS NOT NULL) AS broken FROM items WHERE project_id = $1",
            stalled)
        assert (left["unprobed"], left["broken"]) == (STALLED_ITEMS, 0)
        assert stalled in backed_off
        # Nothing more to do until the back-off ends: a batch settles nothing and returns at once.
        assert await asyncio.wait_for(probing.probe_batch(services), 5) == 0
    finally:
        backed_off.clear()
        await services.close()


def _rows_visited(plan: dict[str, object]) -> int:
    """Rows a plan node and those under it produced or filtered out, over all its loops."""
    loops = int(plan.get("Actual Loops", 1))  # type: ignore[call-overload]
    here = (int(plan.get("Actual Rows", 0)) + int(plan.get("Rows Removed by Filter", 0))) * loops  # type: ignore[call-overload]
    return here + sum(_rows_visited(p) for p in plan.get("Plans", []))  # type: ignore[attr-defined]


async def test_a_poll_passes_over_items_it_cannot_take_without_reading_them(
        fresh_database: Callable[[], str], redis_url: str, tmp_path: Path) -> None:
    """Every node polls for unprobed items every few seconds: items of a project without a
    dataset, of one whose datastore is backed off, and files gone missing must not be read
    one by one on each poll (they were: 85 ms a poll at 500,000 items)."""
    url = fresh_database()
    await migrate(url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, redis_url=redis_url,
                        redis_prefix="probe-scan-test:", secret_key="x", background_jobs=False)
    services = await Services.open(settings)
    many = 20_000
    try:
        async with services.db.acquire() as conn:
            insert = ("INSERT INTO projects (name, task_type, status, consensus, ml_assist, dataset) "
                      "VALUES ($1, 'multiclass', 'running', '{}', '{}', $2) RETURNING id")
            dataset = {"datastore": {"kind": "local", "path": str(tmp_path)}, "pattern": "**/*.*"}
            bare = await conn.fetchval(insert, "no dataset", None)
            gone = await conn.fetchval(insert, "files gone", dataset)
            away = await conn.fetchval(insert, "backed off", dataset)
            todo = await conn.fetchval(insert, "to probe", dataset)
            rows = [(pid, f"{pid}-{i}.png", status, "image") for pid, status in
                    ((bare, "unlabeled"), (gone, "missing"), (away, "unlabeled")) for i in range(many)]
            rows += [(todo, f"{todo}-{i}.png", "unlabeled", "image") for i in range(3)]
            await conn.copy_records_to_table("items", records=rows,
                                             columns=["project_id", "key", "status", "media_kind"])
            await conn.execute("ANALYZE items")
            async with conn.transaction():
                plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {probing._CLAIM}",
                                           probing.PROBE_BATCH, None, [away], probing.PROBE_LOCK_NS)
            async with conn.transaction():
                claimed = await conn.fetch(probing._CLAIM, probing.PROBE_BATCH, None, [away],
                                           probing.PROBE_LOCK_NS)
        assert sorted(r["key"] for r in claimed) == sorted(f"{todo}-{i}.png" for i in range(3))
        visited = _rows_visited(json.loads(plan)[0]["Plan"])
        assert visited < 100, f"a poll read {visited} rows to claim 3 items"
    finally:
        await services.close()
