from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from migrations.runner import MigrationError, discover, migrate

EXPECTED_TABLES = {"users", "sessions", "api_tokens", "projects", "project_names", "labels",
                   "memberships", "schema_migrations"}


async def test_all_migrations_apply_to_an_empty_database_then_rerun_is_a_noop(
    fresh_database: Callable[[], str],
) -> None:
    url = fresh_database()
    names = [m.name for m in discover()]
    assert await migrate(url) == names
    conn = await asyncpg.connect(url)
    try:
        tables = {r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert EXPECTED_TABLES <= tables
        recorded = [r["name"] for r in await conn.fetch(
            "SELECT name FROM schema_migrations ORDER BY name")]
        assert recorded == names
        snapshot = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2")
        assert await migrate(url) == []
        assert await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2") == snapshot
    finally:
        await conn.close()


async def test_two_processes_migrating_at_once_apply_each_file_once(
    fresh_database: Callable[[], str],
) -> None:
    url = fresh_database()
    first, second = await asyncio.gather(migrate(url), migrate(url))
    assert sorted(first + second) == sorted(m.name for m in discover())
    assert not set(first) & set(second)


async def test_failed_file_leaves_no_trace_and_edited_file_is_detected(
    fresh_database: Callable[[], str], tmp_path: Path,
) -> None:
    url = fresh_database()
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE t1 (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE t2 (id int); SELECT nonsense();")
    with pytest.raises(asyncpg.PostgresError):
        await migrate(url, tmp_path)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT to_regclass('t2')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
    finally:
        await conn.close()
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE t2 (id int);")
    assert await migrate(url, tmp_path) == ["0002_bad.sql"]
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE t1 (id bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(url, tmp_path)


def test_badly_named_or_duplicate_numbers_refused(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("")
    with pytest.raises(MigrationError):
        discover(tmp_path)
    (tmp_path / "1_x.sql").unlink()
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0001_b.sql").write_text("")
    with pytest.raises(MigrationError):
        discover(tmp_path)
