"""The `jobs` table as people see it: queue a job, read one or a project's page of them, ask
for a cancel, and the JSON shape. runner.py claims and runs them."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import asyncpg

from server.database import Database
from server.errors import NotFound

Kind = Literal["bind", "refresh", "label_import", "table_import"]
Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection | Database"

# Told to every worker on commit, so a queued job starts without waiting for a poll.
CHANNEL = "colabel_jobs"
COLUMNS = """id, project_id, kind, params, status, done, total, result, error, attempts,
cancel_requested, created_by, created_at, started_at, finished_at"""
_INSERT = f"""
INSERT INTO jobs (project_id, kind, params, created_by) VALUES ($1, $2, $3, $4)
RETURNING {COLUMNS}
"""
_ONE = f"SELECT {COLUMNS} FROM jobs WHERE id = $1"
_PAGE = f"""
SELECT {COLUMNS} FROM jobs WHERE project_id = $1 AND ($2::text IS NULL OR status = $2)
ORDER BY id DESC LIMIT $3 OFFSET $4
"""
_WAITING = f"""
SELECT {COLUMNS} FROM jobs
WHERE project_id = $1 AND kind = ANY($2::text[]) AND status = 'queued'
ORDER BY id DESC LIMIT 1
"""
# A queued job is cancelled at once; a running one when its worker next looks (runner.py).
_CANCEL = f"""
UPDATE jobs SET
    status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
    cancel_requested = (status = 'running')
WHERE id = $1 AND status IN ('queued', 'running')
RETURNING {COLUMNS}
"""


def job_json(row: asyncpg.Record) -> dict[str, Any]:
    """A job's status, progress and outcome."""
    return {
        "id": row["id"],
        "project_id": row["project_id"],
        "kind": row["kind"],
        "params": row["params"],
        "status": row["status"],
        "done": row["done"],
        "total": row["total"],
        "result": row["result"],
        "error": row["error"],
        "attempts": row["attempts"],
        "cancel_requested": row["cancel_requested"],
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "started_at": row["started_at"].isoformat() if row["started_at"] else None,
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "url": f"/api/v1/jobs/{row['id']}",
    }


async def queue(db: Db, project_id: int, kind: Kind, params: dict[str, Any],
                user_id: int) -> dict[str, Any]:
    """Queue a job (inside the caller's transaction when given one: it runs only once that
    commits) and wake the workers; the new job's JSON."""
    row = await db.fetchrow(_INSERT, project_id, kind, params, user_id)
    await db.execute("SELECT pg_notify($1, $2)", CHANNEL, str(row["id"]))
    return job_json(row)


async def waiting(db: Db, project_id: int, kinds: list[str]) -> dict[str, Any] | None:
    """The project's newest job of these kinds that has not started, if any."""
    row = await db.fetchrow(_WAITING, project_id, kinds)
    return job_json(row) if row else None


async def get(db: Db, job_id: int) -> asyncpg.Record:
    """The job's row; whoever asks must still be checked against its project."""
    row: asyncpg.Record | None = await db.fetchrow(_ONE, job_id)
    if row is None:
        raise NotFound("no such job", code="job_not_found")
    return row


async def page(db: Db, project_id: int, status: str | None, limit: int,
               offset: int) -> list[dict[str, Any]]:
    """A page of the project's jobs, newest first."""
    return [job_json(r) for r in await db.fetch(_PAGE, project_id, status, limit, offset)]


async def cancel(db: Db, job_id: int) -> asyncpg.Record | None:
    """Cancel a queued job, or ask its worker to stop a running one (what it did so far is
    rolled back); None when the job had already finished."""
    row: asyncpg.Record | None = await db.fetchrow(_CANCEL, job_id)
    return row
