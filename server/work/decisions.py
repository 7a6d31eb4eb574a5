"""Deciding an item from its submits: the rules of a submit (which leases may still
submit), consensus over the item's annotations, and the one statement that records it all.

A submit is decided in Postgres, the truth, inside one transaction; the queue in Redis
learns the outcome after the commit (see service.py). A submit is acknowledged only after
its transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from server.database import Database
from server.work import consensus
from server.work.errors import LeaseNotFound, WorkError
from server.work.plan import CLOSED, consensus_plan

# A batch's first statement locks its leases and their items, in item order so that two
# batches on different nodes cannot wait on each other. It must come before the read of the
# items' annotations: under READ COMMITTED a statement that waits for a row lock reads its
# sub-queries from the snapshot it took before the wait, so a submit queued behind another
# on the same item would not see that one's annotation and never decide the item.
LEASES_FOR_UPDATE = """
SELECT l.id, l.project_id, l.item_id, l.user_id, l.state, l.expires_at, l.prelabel_version,
       i.key AS item_key
FROM leases l JOIN items i ON i.id = l.item_id WHERE l.id = ANY($1::text[])
ORDER BY i.id, l.id
FOR UPDATE OF l, i
"""
# The items (already locked) with what a decision needs: their annotations so far and their
# live leases.
_ITEM_STATES = """
SELECT i.id, i.status, i.target,
       (SELECT coalesce(jsonb_agg(a.data ORDER BY a.id), '[]'::jsonb)
        FROM annotations a WHERE a.item_id = i.id) AS annotations,
       (SELECT coalesce(array_agg(o.id), '{}') FROM leases o WHERE o.item_id = i.id
        AND o.state = 'active' AND o.expires_at > now()) AS live
FROM items i WHERE i.id = ANY($1::bigint[])
"""
# A newer lease of the same labeler on the item, open or finished: a late submit of an old
# one would make two annotations of one labeler (or undo their skip).
_NEWER_LEASE = """
SELECT 1 FROM leases WHERE item_id = $1 AND user_id = $2 AND id <> $3
  AND state IN ('active', 'submitted', 'skipped')
"""
# Everything a batch writes, in one statement: the annotations, their leases, the labels
# they use and the items whose state changed.
_RECORD_SUBMITS = """
WITH ins AS (
    INSERT INTO annotations (project_id, item_id, user_id, lease_id, data, duration_ms)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::jsonb[],
                         $6::int[])
    RETURNING id, lease_id
), lease AS (
    UPDATE leases SET state = 'submitted', finished_at = now() WHERE id = ANY($4::text[])
), used AS (
    UPDATE labels SET used_at = now() WHERE id = ANY($7::bigint[]) AND used_at IS NULL
), item AS (
    UPDATE items SET status = c.status, final = c.final, decided_by = c.how,
                     agreement = c.agreement, target = c.target,
                     decided_at = CASE WHEN c.status = 'labeled' THEN now() END, updated_at = now()
    FROM unnest($8::bigint[], $9::text[], $10::jsonb[], $11::text[], $12::real[], $13::smallint[])
         AS c(id, status, final, how, agreement, target)
    WHERE items.id = c.id
)
SELECT id, lease_id FROM ins
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


@dataclass(frozen=True)
class Submit:
    """One lease's submission, as a batch records it."""

    project: asyncpg.Record
    lease_id: str
    annotation: dict[str, Any]
    duration_ms: int | None


@dataclass
class _Item:
    """An item's state while a batch decides its submits one after another."""

    status: str
    target: int
    annotations: list[dict[str, Any]]
    live: set[str]
    change: Change | None = None


async def record_submits(conn: asyncpg.Connection, submits: list[Submit],
                         ) -> list[Recorded | WorkError]:
    """Record a batch of submits inside the caller's transaction, deciding each item that can
    be, as if they had come one after another in this order. Each gets its own outcome: a
    refused one (a `WorkError`) writes nothing and does not stop the others.

    Three statements for the whole batch: one locks the leases and their items, one reads
    the items with their annotations and live leases, one writes every annotation, lease,
    label and item change.
    """
    locked = {r["id"]: r for r in await conn.fetch(LEASES_FOR_UPDATE, [s.lease_id for s in submits])}
    items = {r["id"]: r for r in await conn.fetch(
        _ITEM_STATES, sorted({r["item_id"] for r in locked.values()}))} if locked else {}
    state: dict[int, _Item] = {}
    done: set[str] = set()
    annotated: set[tuple[int, int]] = set()
    outcomes: list[Recorded | WorkError] = []
    for s in submits:
        lease_row = locked.get(s.lease_id)
        if lease_row is None or lease_row["project_id"] != s.project["id"]:
            outcomes.append(LeaseNotFound())
            continue
        low, high, threshold = consensus_plan(s.project)
        row = items[lease_row["item_id"]]
        item = state.setdefault(row["id"], _Item(row["status"], int(row["target"] or low),
                                                 list(row["annotations"]), set(row["live"])))
        refused = await _refusal(conn, lease_row, item, done, annotated)
        if refused is not None:
            outcomes.append(refused)
            continue
        decision, final, change = decide(s.project["task_type"], [*item.annotations, s.annotation],
                                         item.target, low, high, threshold)
        done.add(s.lease_id)
        annotated.add((lease_row["item_id"], lease_row["user_id"]))
        item.annotations.append(s.annotation)
        if change is not None:
            item.change = change
            item.status, item.target = change[0], change[4]
        outcomes.append(Recorded(lease_row, Decision(0, *decision), final))
    accepted = [(s, o) for s, o in zip(submits, outcomes, strict=True) if isinstance(o, Recorded)]
    if accepted:
        changed = [(iid, it.change) for iid, it in state.items() if it.change is not None]
        rows = await conn.fetch(
            _RECORD_SUBMITS,
            [s.project["id"] for s, _ in accepted], [o.lease["item_id"] for _, o in accepted],
            [o.lease["user_id"] for _, o in accepted], [s.lease_id for s, _ in accepted],
            [s.annotation for s, _ in accepted], [s.duration_ms for s, _ in accepted],
            sorted({i for s, _ in accepted for i in _labels_in(s.annotation)}),
            [iid for iid, _ in changed], [c[0] for _, c in changed], [c[1] for _, c in changed],
            [c[2] for _, c in changed], [c[3] for _, c in changed], [c[4] for _, c in changed])
        ids = {r["lease_id"]: r["id"] for r in rows}
        outcomes = [Recorded(o.lease, replace(o.decision, annotation_id=ids[o.lease["id"]]), o.final)
                    if isinstance(o, Recorded) else o for o in outcomes]
    return outcomes


async def _refusal(conn: asyncpg.Connection, lease_row: asyncpg.Record, item: _Item,
                   done: set[str], annotated: set[tuple[int, int]]) -> WorkError | None:
    """Why this lease may not submit now (None if it may). `done`: the leases accepted earlier
    in the batch; `annotated`: their (item, labeler) pairs."""
    if lease_row["state"] == "submitted" or lease_row["id"] in done:
        return WorkError("already_submitted", "already submitted")
    if lease_row["state"] == "skipped":
        return WorkError("lease_skipped", "this item was skipped")
    if item.status in CLOSED:
        return WorkError("item_closed", "this item has already been decided")
    expired = lease_row["state"] in ("expired", "released") or (
        lease_row["state"] == "active" and lease_row["expires_at"] <= datetime.now(UTC))
    if not expired:
        return None
    # Another lease of theirs on the item, submitted earlier in this batch (two of their
    # expired leases in one batch: neither is newer in the table until the batch is written)
    # or found in the table.
    if (lease_row["item_id"], lease_row["user_id"]) in annotated or await conn.fetchval(
            _NEWER_LEASE, lease_row["item_id"], lease_row["user_id"], lease_row["id"]):
        return WorkError("lease_superseded",
                         "this item was leased to you again since; that lease is the one to submit")
    # Live leases of others still hold slots; those submitted earlier in this batch are
    # annotations by now.
    others = len(item.live - done - {lease_row["id"]})
    if others + len(item.annotations) >= item.target:
        return WorkError("slot_taken", "the lease expired and its slot went to someone else")
    return None


async def record_submit(conn: asyncpg.Connection, project: asyncpg.Record, lease_id: str,
                        annotation: dict[str, Any], duration_ms: int | None) -> Recorded:
    """Record one submit inside the caller's transaction (a batch of one); raise its
    `WorkError` if it is refused."""
    outcome = (await record_submits(conn, [Submit(project, lease_id, annotation, duration_ms)]))[0]
    if isinstance(outcome, WorkError):
        raise outcome
    return outcome


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
