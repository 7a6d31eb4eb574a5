"""Probing image sizes in the background: a project whose datastore cannot be reached is
left for later, its items are not marked broken, and other projects are probed meanwhile.
On a database of its own, so that no other process's prober takes part."""

from __future__ import annotations

import asyncio
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
