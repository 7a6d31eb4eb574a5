"""Apply the numbered `.sql` files in this folder, once each, in order.

Two processes starting together both call `migrate`; a session advisory lock makes the
second wait and then find nothing left to do. Each file runs in its own transaction
together with the row that records it, so a failed file leaves no trace.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent
# Arbitrary constant shared by every Colabel process: "colabel" in ASCII.
ADVISORY_LOCK_KEY = 0x636F6C6162656C
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The migrations folder or the database's record of it is inconsistent."""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in order; numbers must be unique."""
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"badly named migration file: {path.name}")
        if m.group(1) in found:
            raise MigrationError(f"two migrations numbered {m.group(1)}")
        found[m.group(1)] = Migration(path.name, path.read_text())
    return [found[k] for k in sorted(found)]


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied by this call."""
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
        try:
            await conn.execute(_CREATE_TABLE)
            rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
            applied = {r["name"]: r["checksum"] for r in rows}
            known = {m.name for m in migrations}
            for name in applied:
                if name not in known:
                    raise MigrationError(f"database has migration {name} that this code lacks")
            done: list[str] = []
            for mig in migrations:
                if mig.name in applied:
                    if applied[mig.name] != mig.checksum:
                        raise MigrationError(f"{mig.name} changed after it was applied")
                    continue
                async with conn.transaction():
                    await conn.execute(mig.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                        mig.name,
                        mig.checksum,
                    )
                log.info("applied migration %s", mig.name)
                done.append(mig.name)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    finally:
        await conn.close()
