"""Items: the SQL that reads them, their JSON form, and the on-disk cache of their thumbnails."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import asyncpg

STATUSES = ("unlabeled", "in_progress", "labeled", "needs_review", "missing", "skipped")
ITEM_COLUMNS = """id, key, media_kind, width, height, frames, probe_error, status, decided_by,
              created_at, updated_at, missing_since"""
_LIST = f"""
SELECT {ITEM_COLUMNS} FROM items
WHERE project_id = $1 AND id > $2 AND ($3::text IS NULL OR status = $3)
ORDER BY id LIMIT $4
"""
_ONE = f"""
SELECT {ITEM_COLUMNS}, final, prelabel, agreement, target, decided_at, decided_by_user
FROM items WHERE project_id = $1 AND id = $2
"""
_LABELERS = """
SELECT l.user_id, u.name, l.state FROM leases l JOIN users u ON u.id = l.user_id
WHERE l.item_id = $1 AND l.state IN ('active', 'submitted') ORDER BY l.created_at
"""


def item_json(row: asyncpg.Record, full: bool = False) -> dict[str, Any]:
    """The item's JSON form; `full` adds its final label and prelabel."""
    out = {
        "id": row["id"],
        "key": row["key"],
        "media_kind": row["media_kind"],
        "width": row["width"],
        "height": row["height"],
        "frames": row["frames"],
        "probe_error": row["probe_error"],
        "status": row["status"],
        "decided_by": row["decided_by"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "missing_since": row["missing_since"].isoformat() if row["missing_since"] else None,
    }
    if full:
        out["final"] = row["final"]
        out["prelabel"] = row["prelabel"]
    return out


async def page(db: asyncpg.Pool | asyncpg.Connection, pid: int, after: int, status: str | None,
               limit: int) -> list[asyncpg.Record]:
    """Up to `limit` of the project's items after id `after`, in id order, of one status or all."""
    rows: list[asyncpg.Record] = await db.fetch(_LIST, pid, after, status, limit)
    return rows


async def one(db: asyncpg.Pool | asyncpg.Connection, pid: int,
              iid: int) -> asyncpg.Record | None:
    """The item with its final label and prelabel; None when the project has no such item."""
    row: asyncpg.Record | None = await db.fetchrow(_ONE, pid, iid)
    return row


async def labelers(db: asyncpg.Pool | asyncpg.Connection, iid: int) -> list[dict[str, Any]]:
    """Whose documents on this item a reviewer can watch: labelers at work and done."""
    return [{"user": {"id": r["user_id"], "name": r["name"]}, "state": r["state"]}
            for r in await db.fetch(_LABELERS, iid)]


def media_etag(file_etag: str, size: str, frame: int | None, wc: float | None,
               ww: float | None) -> str:
    """The ETag of a rendering: the file's own ETag and every parameter that changes the image."""
    params = f"{file_etag}|{size}|{frame}|{wc}|{ww}"
    return '"' + hashlib.sha256(params.encode()).hexdigest()[:32] + '"'


def thumb_path(cache_dir: Path, pid: int, iid: int, etag: str) -> Path:
    """Where the thumbnail with this ETag is cached; a new ETag means a new file."""
    return cache_dir / "media" / str(pid) / f"{iid}-{etag.strip(chr(34))}"


def thumb_type(body: bytes) -> str:
    """The content type of a cached thumbnail (rendered as PNG or JPEG)."""
    return "image/png" if body.startswith(b"\x89PNG") else "image/jpeg"


def write_thumb(path: Path, body: bytes) -> None:
    """Cache a thumbnail; written aside and renamed, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(body)
    tmp.replace(path)
