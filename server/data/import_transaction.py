"""The one transaction a label or table import runs in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from server.data import ingest
from server.database import Database
from server.projects import projects

# Run inside an import's transaction once the project is locked (the caller's own rules:
# its access, a job's commit marker).
Check = Callable[[asyncpg.Connection], Awaitable[None]]


@contextlib.asynccontextmanager
async def import_transaction(db: Database, pid: int,
                             check: Check | None) -> AsyncIterator[asyncpg.Connection]:
    """The project row locked, `check` run, then the project's ingest lock taken (waiting
    for a registration that holds it)."""
    async with db.bulk() as conn, conn.transaction():
        await conn.execute(projects.LOCK, pid)
        if check is not None:
            await check(conn)
        await ingest.lock_project(conn, pid, wait=True)
        yield conn
