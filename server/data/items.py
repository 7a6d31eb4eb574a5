"""An item's row as the API shows it: the columns every item answer reads, and its JSON."""

from __future__ import annotations

from typing import Any

import asyncpg

STATUSES = ("unlabeled", "in_progress", "labeled", "needs_review", "missing")
ITEM_COLUMNS = """id, key, media_kind, width, height, frames, probe_error, status, decided_by,
              created_at, updated_at, missing_since"""

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
