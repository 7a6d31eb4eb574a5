"""Going back: the items a labeler submitted in this sign-in session, and correcting one of
them while its item is not yet decided.

An open item (unlabeled or in progress) always has fewer annotations than its current
target: the submit that brings it to the target decides it, raises the target or sends it
to review. So a correction never decides anything by itself: it replaces the labeler's
annotation, and the item is decided as before, when the last labeler it needs submits,
now with the corrected annotation among the others. Once the item is decided (labeled, or
waiting for review) the labeler's annotation is what counted, and it is read-only to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from server.data.items import ITEM_COLUMNS, item_json
from server.database import Database
from server.errors import Conflict
from server.work.plan import OPEN

# Newest first; `i.*` columns as the item listing shows them.
_HISTORY = f"""
SELECT a.lease_id, a.created_at AS submitted_at, a.amended_at,
       {", ".join("i." + c.strip() for c in ITEM_COLUMNS.split(","))}
FROM annotations a JOIN items i ON i.id = a.item_id
WHERE a.project_id = $1 AND a.user_id = $2 AND a.created_at >= $3
ORDER BY a.created_at DESC, a.id DESC LIMIT $4
"""
_SESSION_START = "SELECT created_at FROM sessions WHERE id_hash = $1"
# The lease's item, locked against a submit deciding it at the same moment (submits lock
# their items too, so the two take turns).
_ITEM_OF_LEASE = """
SELECT i.id, i.status FROM leases l JOIN items i ON i.id = l.item_id
WHERE l.id = $1 FOR UPDATE OF i
"""
_CORRECT = """
WITH used AS (
    UPDATE labels SET used_at = now() WHERE id = ANY($3::bigint[]) AND used_at IS NULL
)
UPDATE annotations SET data = $2, amended_at = now(),
       duration_ms = CASE WHEN $4::int IS NULL THEN duration_ms
                          ELSE coalesce(duration_ms, 0) + $4::int END
WHERE lease_id = $1 RETURNING id
"""
_TOUCH_ITEM = "UPDATE items SET updated_at = now() WHERE id = $1"


def editable(status: str) -> bool:
    """Whether a labeler may still correct what they submitted on an item in this state: it
    is still being labeled (not decided, in review, skipped by its owner or missing)."""
    return status in OPEN


async def session_start(db: Database, session_hash: bytes | None) -> datetime | None:
    """When the caller's sign-in session began (None for API tokens, which have none)."""
    if session_hash is None:
        return None
    start: datetime | None = await db.fetchval(_SESSION_START, session_hash)
    return start


async def history(db: Database, project_id: int, user_id: int, since: datetime,
                  limit: int) -> list[dict[str, Any]]:
    """The caller's submissions in the project since `since`, newest first."""
    rows = await db.fetch(_HISTORY, project_id, user_id, since, limit)
    return [{"lease_id": r["lease_id"], "item": item_json(r),
             "submitted_at": r["submitted_at"].isoformat(),
             "corrected_at": r["amended_at"].isoformat() if r["amended_at"] else None,
             "editable": editable(r["status"])} for r in rows]


@dataclass(frozen=True)
class Corrected:
    annotation_id: int
    item_id: int
    item_status: str


def _labels_in(annotation: dict[str, Any]) -> list[int]:
    ids = set(annotation.get("classes", []))
    ids.update(s["label"] for s in annotation.get("shapes", []))
    return sorted(int(i) for i in ids)


async def record(db: Database, lease_id: str, annotation: dict[str, Any],
                 duration_ms: int | None) -> Corrected:
    """Replace the annotation submitted under `lease_id` (a submitted lease) unless its item
    has been decided meanwhile (409 item_closed)."""
    async with db.acquire() as conn, conn.transaction():
        item = await conn.fetchrow(_ITEM_OF_LEASE, lease_id)
        if not editable(item["status"]):
            raise Conflict("this item has been decided (or sent to review, or taken out of "
                           "labeling) since you submitted it: it can no longer be changed",
                           code="item_closed", details={"item_status": item["status"]})
        annotation_id = await _write(conn, lease_id, annotation, duration_ms)
        await conn.execute(_TOUCH_ITEM, item["id"])
    return Corrected(annotation_id, item["id"], item["status"])


async def _write(conn: asyncpg.Connection, lease_id: str, annotation: dict[str, Any],
                 duration_ms: int | None) -> int:
    annotation_id: int = await conn.fetchval(_CORRECT, lease_id, annotation,
                                             _labels_in(annotation), duration_ms)
    return annotation_id
