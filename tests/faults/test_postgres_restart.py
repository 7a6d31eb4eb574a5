"""Postgres stops and starts again under an open pool: calls fail fast, then work again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from server.database import Database, DatabaseUnavailable
from server.embedded import EmbeddedPostgres
from server.services import init_connection
from tests.reliability import Measured

TIMEOUT_S = 1.0


async def unavailable_in(db: Database) -> tuple[float, float]:
    """Seconds a plain call and a transaction take to fail with DatabaseUnavailable."""
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        await db.fetchval("SELECT 1")
    plain = time.monotonic() - started
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        async with db.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1")
    return plain, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.reliability(
    area="Faults",
    attack="Postgres is shut down under a server's open connection pool (idle connections "
           "broken), then started again",
    promise="while it is down every call fails within the database deadline as "
            "DatabaseUnavailable (503 at the edge); once it is back the same pool serves again, "
            "its broken connections replaced")
async def test_a_postgres_restart_fails_fast_then_the_same_pool_serves(tmp_path: Path,
                                                                      measured: Measured) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    url = await asyncio.to_thread(pg.start)
    db = await Database.open(url, timeout_s=TIMEOUT_S, bulk_timeout_s=10, min_size=2, max_size=2,
                             init=init_connection)
    try:
        assert await db.fetchval("SELECT 1") == 1
        await asyncio.to_thread(pg.stop)
        plain_s, transaction_s = await unavailable_in(db)
        assert await asyncio.to_thread(pg.start) == url
        started = time.monotonic()
        while True:
            try:
                assert await db.fetchval("SELECT 1") == 1
                break
            except DatabaseUnavailable:
                assert time.monotonic() - started < 10, "the pool did not recover"
                await asyncio.sleep(0.1)
        back_s = time.monotonic() - started
        async with db.acquire() as conn, conn.transaction():
            assert await conn.fetchval("SELECT 2") == 2
        measured(f"down: a call failed in {plain_s:.2f} s, a transaction in {transaction_s:.2f} s "
                 f"(deadline {TIMEOUT_S} s); served again {back_s:.2f} s after the restart")
        assert plain_s < TIMEOUT_S + 1 and transaction_s < TIMEOUT_S + 1
    finally:
        await db.close()
        await asyncio.to_thread(pg.stop)
