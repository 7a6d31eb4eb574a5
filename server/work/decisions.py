"""Deciding an item from its submits: the rules of a submit (which leases may still
submit), consensus over the item's annotations, and the one statement that records it all.

A submit is decided in Postgres, the truth, inside one transaction; the queue in Redis
learns the outcome after the commit (see service.py). A submit is acknowledged only after
its transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from server.database import Database
from server.work import consensus
from server.work.errors import WorkError
from server.work.plan import CLOSED, consensus_plan

# A submit's first statement locks the lease and its item. It must come before the read of
# the item's annotations: under READ COMMITTED a statement that waits for a row lock reads
# its sub-queries from the snapshot it took before the wait, so a submit queued behind
# another on the same item would not see that one's annotation and never decide the item.
LEASE_FOR_UPDATE = """
SELECT l.id, l.project_id, l.item_id, l.user_id, l.state, l.expires_at, l.prelabel_version
FROM leases l JOIN items i ON i.id = l.item_id WHERE l.id = $1
FOR UPDATE OF l, i
"""
# The item (already locked) with what the decision needs: earlier annotations and other
# live leases.
_ITEM_STATE = """
SELECT i.id, i.status, coalesce(i.target, $2) AS target,
       (SELECT coalesce(jsonb_agg(a.data ORDER BY a.id), '[]'::jsonb)
        FROM annotations a WHERE a.item_id = i.id) AS annotations,
       (SELECT count(*) FROM leases o WHERE o.item_id = i.id AND o.id <> $3
        AND o.state = 'active' AND o.expires_at > now()) AS others
FROM items i WHERE i.id = $1
FOR UPDATE OF i
"""
# A newer lease of the same labeler on the item, open or finished: a late submit of an old
# one would make two annotations of one labeler (or undo their skip).
_NEWER_LEASE = """
SELECT 1 FROM leases WHERE item_id = $1 AND user_id = $2 AND id <> $3
  AND state IN ('active', 'submitted', 'skipped')
"""
# Everything a submit writes, in one statement ($8 says whether the item changes).
_RECORD_SUBMIT = """
WITH ins AS (
    INSERT INTO annotations (project_id, item_id, user_id, lease_id, data, duration_ms)
    VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
), lease AS (
    UPDATE leases SET state = 'submitted', finished_at = now() WHERE id = $4
), used AS (
    UPDATE labels SET used_at = now() WHERE id = ANY($7::bigint[]) AND used_at IS NULL
), item AS (
    UPDATE items SET status = $9, final = $10, decided_by = $11, agreement = $12, target = $13,
                     decided_at = CASE WHEN $9 = 'labeled' THEN now() END, updated_at = now()
    WHERE id = $2 AND $8
)
SELECT id FROM ins
"""
_UNDECIDED = """
SELECT 1 FROM items WHERE project_id = $1 AND status IN ('unlabeled', 'in_progress', 'needs_review')
LIMIT 1
"""
_COMPLETE = """
UPDATE projects SET status = 'completed', updated_at = now() WHERE id = $1 AND status = 'running'
"""


@dataclass(frozen=True)
class Decision:
    annotation_id: int
    item_status: str
    decided: bool
    target: int
    agreement: float | None
    detail: str


@dataclass(frozen=True)
class Recorded:
    """A submit recorded in the caller's transaction: the locked lease row, the decision
    and, when the item was decided by agreement, its final annotation."""

    lease: asyncpg.Record
    decision: Decision
    final: dict[str, Any] | None


# What a decision writes on the item: (status, final, decided_by, agreement, target).
Change = tuple[str, dict[str, Any] | None, str | None, float | None, int]


def _labels_in(annotation: dict[str, Any]) -> list[int]:
    ids = set(annotation.get("classes", []))
    ids.update(s["label"] for s in annotation.get("shapes", []))
    return sorted(int(i) for i in ids)


async def record_submit(conn: asyncpg.Connection, project: asyncpg.Record, lease_id: str,
                        annotation: dict[str, Any], duration_ms: int | None) -> Recorded:
    """Record a submit inside the caller's transaction and decide the item if it can be.

    Three statements: one locks the lease and its item, one reads the item with its
    annotations and live leases, one writes the annotation, the lease, the labels and the
    item together.
    """
    lease_row = await conn.fetchrow(LEASE_FOR_UPDATE, lease_id)
    if lease_row["state"] == "submitted":
        raise WorkError("already_submitted", "already submitted")
    if lease_row["state"] == "skipped":
        raise WorkError("lease_skipped", "this item was skipped")
    low, high, threshold = consensus_plan(project)
    item = await conn.fetchrow(_ITEM_STATE, lease_row["item_id"], low, lease_row["id"])
    if item["status"] in CLOSED:
        raise WorkError("item_closed", "this item has already been decided")
    earlier: list[dict[str, Any]] = item["annotations"]
    target = int(item["target"])
    expired = lease_row["state"] in ("expired", "released") or (
        lease_row["state"] == "active" and lease_row["expires_at"] <= datetime.now(UTC))
    if expired and await conn.fetchval(_NEWER_LEASE, item["id"], lease_row["user_id"], lease_row["id"]):
        raise WorkError("lease_superseded",
                        "this item was leased to you again since; that lease is the one to submit")
    if expired and item["others"] + len(earlier) >= target:
        raise WorkError("slot_taken", "the lease expired and its slot went to someone else")
    decision, final, change = decide(project["task_type"], [*earlier, annotation], target,
                                     low, high, threshold)
    status, final_value, how, agreement, new_target = change or (None, None, None, None, target)
    ann_id = await conn.fetchval(
        _RECORD_SUBMIT, project["id"], item["id"], lease_row["user_id"], lease_row["id"],
        annotation, duration_ms, _labels_in(annotation), change is not None, status,
        final_value, how, agreement, new_target)
    return Recorded(lease_row, Decision(ann_id, *decision), final)


def decide(task_type: str, annotations: list[dict[str, Any]], target: int, low: int, high: int,
           threshold: float,
           ) -> tuple[tuple[str, bool, int, float | None, str], dict[str, Any] | None, Change | None]:
    """What the submitted annotations mean for the item: (decision fields, final, change).
    Fewer than the target: wait. One labeler without consensus: theirs is final. Else the
    task type's consensus: agreed is final; not agreed, one more labeler up to `high`,
    then a person reviews it."""
    if len(annotations) < target:
        return ("in_progress", False, target, None, "waiting for more labelers"), None, None
    if low == 1 and high == 1:
        final = annotations[-1]
        return (("labeled", True, target, 1.0, "single labeler"), final,
                ("labeled", final, "single", 1.0, target))
    outcome = consensus.decide(task_type, annotations, consensus.ConsensusParams(threshold=threshold))
    if outcome.agreed:
        return (("labeled", True, target, outcome.agreement, outcome.detail), outcome.final,
                ("labeled", outcome.final, "consensus", outcome.agreement, target))
    if target < high:
        return (("in_progress", False, target + 1, outcome.agreement, outcome.detail), None,
                ("in_progress", None, None, outcome.agreement, target + 1))
    return (("needs_review", False, target, outcome.agreement, outcome.detail), None,
            ("needs_review", None, None, outcome.agreement, target))


async def complete_if_done(db: Database | asyncpg.Pool | asyncpg.Connection, project_id: int) -> bool:
    """Mark a running project completed once no item is left undecided. Call it after the
    decision has committed: inside the deciding transaction, two submits deciding the last
    two items at once would each still see the other's item open."""
    if await db.fetchval(_UNDECIDED, project_id) is None:
        status: str = await db.execute(_COMPLETE, project_id)
        return status.endswith(" 1")
    return False
