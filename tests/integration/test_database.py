"""The pool's deadlines against a real Postgres: what a slow statement, bulk work and a
cancelled transaction do to a request and to the pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from server.database import Database, DatabaseUnavailable
from server.services import init_connection

TIMEOUT_S = 0.5


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    # One connection, so that "the same connection" can be checked by its backend pid.
    pool = await Database.open(database_url, timeout_s=TIMEOUT_S, bulk_timeout_s=5,
                               min_size=1, max_size=1, init=init_connection)
    yield pool
    await pool.close()


async def test_a_statement_past_its_deadline_is_cancelled_and_the_connection_kept(db: Database) -> None:
    backend = await db.fetchval("SELECT pg_backend_pid()")
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="statement timeout"):
        await db.fetchval("SELECT pg_sleep(3)")
    assert time.monotonic() - started < TIMEOUT_S + 0.4
    # Postgres cancelled it in time, so the connection stays in the pool.
    assert await db.fetchval("SELECT pg_backend_pid()") == backend


async def test_bulk_connections_may_run_long_statements_until_they_go_back(db: Database) -> None:
    async with db.bulk() as conn:
        await conn.execute("SELECT pg_sleep(1.2)")  # past the short deadline
        assert await conn.fetchval("SHOW statement_timeout") == "5s"
    assert await db.fetchval("SHOW statement_timeout") == "500ms"
    with pytest.raises(DatabaseUnavailable):
        await db.fetchval("SELECT pg_sleep(1.2)")


async def test_a_cancelled_transaction_stays_cancelled_and_the_pool_goes_on(db: Database) -> None:
    async def slow_transaction() -> None:
        async with db.bulk() as conn, conn.transaction():
            await conn.execute("CREATE TEMP TABLE scratch (x int) ON COMMIT DROP")
            await conn.execute("SELECT pg_sleep(4)")

    task = asyncio.create_task(slow_transaction())
    await asyncio.sleep(0.3)
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1
    assert await db.fetchval("SELECT 1") == 1
