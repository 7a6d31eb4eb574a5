"""A database of a benchmark's own: created empty and migrated, dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg

from migrations.runner import migrate

# Where benchmarks create their databases: a role that may CREATE DATABASE.
ADMIN_URL = os.environ.get("COLABEL_BENCH_DATABASE_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.asynccontextmanager
async def scratch_database(prefix: str = "colabel_bench") -> AsyncIterator[str]:
    """The URL of a new, migrated database, dropped (whoever is still connected) on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        try:
            await migrate(url)
            yield url
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
