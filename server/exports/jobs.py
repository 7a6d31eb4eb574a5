"""Export jobs as people ask for them: the SQL that queues, lists and deletes rows of the
`exports` table, what a format can carry, and the JSON shape. `runner` does the work."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import asyncpg

from server.errors import Conflict, NotFound
from server.exports import runner
from server.exports.writer import FORMATS, SUFFIX
from server.projects import projects
from server.settings import Settings

_COLUMNS = """id, project_id, format, filters, image_url_prefix, status, done, total, file_name,
size_bytes, warnings, error, created_by, created_at, started_at, finished_at"""
INSERT = f"""
INSERT INTO exports (project_id, format, filters, image_url_prefix, created_by)
VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}
"""
ONE = f"SELECT {_COLUMNS} FROM exports WHERE id = $1"
LIST = f"SELECT {_COLUMNS} FROM exports WHERE project_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
DELETE = "DELETE FROM exports WHERE id = $1"


def export_json(row: Any) -> dict[str, Any]:
    """An export's status and progress, with its download link once it is done."""
    done = row["status"] == "done"
    return {
        "id": row["id"],
        "project_id": row["project_id"],
        "format": row["format"],
        "filters": row["filters"],
        "image_url_prefix": row["image_url_prefix"],
        "status": row["status"],
        "done": row["done"],
        "total": row["total"],
        "size_bytes": row["size_bytes"],
        "warnings": row["warnings"],
        "error": row["error"],
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "started_at": row["started_at"].isoformat() if row["started_at"] else None,
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "download_url": f"/api/v1/exports/{row['id']}/download" if done else None,
    }


def default_prefix(binding: dict[str, Any] | None) -> str:
    """Image URLs point into the Azure container for Azure datasets; bare keys otherwise."""
    store = (binding or {}).get("datastore", {})
    if store.get("kind") != "azure_blob":
        return ""
    prefix = f"{store['prefix'].strip('/')}/" if store.get("prefix") else ""
    return f"{store['account_url'].rstrip('/')}/{store['container']}/{prefix}"


def check_format(fmt: str, task_type: str) -> None:
    """Refuse a format that cannot carry the project's kind of labels."""
    if task_type not in FORMATS[fmt]:
        fits = sorted(f for f, types in FORMATS.items() if task_type in types)
        # The request is well formed; the project's task type is what rules it out.
        raise Conflict(
            f"{fmt} cannot carry {task_type} labels; use one of: {', '.join(fits)}",
            code="format_unsupported", details={"task_type": task_type, "formats": fits})


async def queue(
    db: asyncpg.Pool | asyncpg.Connection,
    project: asyncpg.Record,
    fmt: str,
    filters: dict[str, Any],
    image_url_prefix: str | None,
    user_id: int,
) -> dict[str, Any]:
    """Queue an export of the project for a worker process; the new export's JSON."""
    check_format(fmt, project["task_type"])
    prefix = image_url_prefix if image_url_prefix is not None else default_prefix(project["dataset"])
    row = await db.fetchrow(INSERT, project["id"], fmt, filters, prefix, user_id)
    # Wakes the workers' export loops (server/background.py) once this commits.
    await db.execute("SELECT pg_notify('colabel_exports', '')")
    return export_json(row)


async def page(db: asyncpg.Pool | asyncpg.Connection, project_id: int, limit: int,
               offset: int) -> list[dict[str, Any]]:
    """One page of the project's exports, newest first."""
    return [export_json(r) for r in await db.fetch(LIST, project_id, limit, offset)]


async def get(db: asyncpg.Pool | asyncpg.Connection, export_id: int) -> asyncpg.Record:
    """The export's row; whoever asks must still be checked against its project."""
    row: asyncpg.Record | None = await db.fetchrow(ONE, export_id)
    if row is None:
        raise NotFound("no such export", code="export_not_found")
    return row


def finished_file(settings: Settings, row: asyncpg.Record) -> Path:
    """Where a finished export's file is; 409 while it is being written, 404 once gone."""
    if row["status"] != "done":
        raise Conflict(f"the export is {row['status']}; download it once it is done",
                       code="export_not_ready", details={"status": row["status"]})
    path = runner.file_path(settings, row["project_id"], row["file_name"])
    if not path.is_file():
        raise NotFound("the export's file is gone; request a new export", code="export_file_missing")
    return path


async def download_name(db: asyncpg.Pool | asyncpg.Connection, row: asyncpg.Record) -> str:
    """A file name people recognise: the project's name (made safe), the export's id and suffix."""
    name = await projects.name_of(db, row["project_id"])
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "project"
    return f"{slug}-export-{row['id']}{SUFFIX[row['format']]}"


async def delete(db: asyncpg.Pool | asyncpg.Connection, settings: Settings, row: asyncpg.Record) -> None:
    """Delete the export and its file (a running one then leaves nothing behind either)."""
    await db.execute(DELETE, row["id"])
    if row["file_name"]:
        runner.file_path(settings, row["project_id"], row["file_name"]).unlink(missing_ok=True)
