"""What the dispatcher benchmarks count on the Postgres side: statements sent by the server's
own connections (an asyncpg query logger on each, installed through the server's
connection set-up), and commits and WAL written by the benchmark's database."""

from __future__ import annotations

from collections import Counter
from typing import Any

import asyncpg

import server.services as services_module


class StatementCounter:
    """Counts every statement the server's pool sends (BEGIN and COMMIT included)."""

    def __init__(self) -> None:
        self.statements = 0
        # By statement (its text squeezed to one line), to see which ones a request costs.
        self.by_text: Counter[str] = Counter()

    def count(self, query: Any) -> None:
        self.statements += 1
        self.by_text[" ".join(str(query.query).split())[:100]] += 1

    def install(self) -> None:
        """Count on every connection the server opens from now on (its pools are built with
        `server.services.init_connection`)."""
        base = services_module.init_connection

        async def counted(conn: asyncpg.Connection) -> None:
            await base(conn)
            conn.add_query_logger(self.count)

        services_module.init_connection = counted


async def database_counters(conn: asyncpg.Connection) -> dict[str, float]:
    """Commits of the current database and WAL records/bytes of the cluster so far (the
    statistics are flushed by backends about once a second: read them after a pause)."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    commits = await conn.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    wal = await conn.fetchrow("SELECT wal_records, wal_bytes FROM pg_stat_wal")
    return {"commits": float(commits), "wal_records": float(wal["wal_records"]),
            "wal_bytes": float(wal["wal_bytes"])}
