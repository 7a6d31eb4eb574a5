"""Project statistics: item counts, throughput, per-labeler quality, agreement and the live queue.

Every section is one aggregate query over the project's rows, served by the existing indexes
(items_status, annotations_project_time, leases_project_active); Python only shapes the few
aggregated rows. All sections read one REPEATABLE READ snapshot, so they agree with each other.

A labeler's agreement rate is the share of their annotations on items decided by a labeler
(status labeled, decided_by single or consensus) that match the item's final label. "Match"
is an approximation that SQL can judge without decoding geometry:
  multiclass, multilabel  the same set of classes;
  bbox, polygon           the same multiset of shape labels (geometry is not compared);
  semantic                the identical annotation (masks are not decoded).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

from server.projects.projects import ITEM_COUNTS

STATUSES = ("unlabeled", "in_progress", "labeled", "needs_review", "missing", "skipped")
# Statuses whose items still need a labeler's work.
QUEUED = ("unlabeled", "in_progress")
DEFAULT_HOURS, MAX_HOURS = 24, 720
BUCKETS = 10
ACTIVE_WINDOW_MINUTES = 15


# Hours are cut on UTC boundaries whatever the session's time zone; date_bin from a UTC origin
# does that without the per-row zone arithmetic of date_trunc(..., 'UTC'). decided_at is only
# set on labeled items; saying so lets the planner use items_status.
_UTC_HOUR = "date_bin('1 hour', {col}, timestamptz '2000-01-01 00:00:00+00')"
THROUGHPUT_SQL = f"""
WITH since AS (
    SELECT {_UTC_HOUR.format(col="now()")} - make_interval(hours => $2::int - 1) AS t
), submitted AS (
    SELECT {_UTC_HOUR.format(col="a.created_at")} AS hour, count(*) AS n
    FROM annotations a, since
    WHERE a.project_id = $1 AND a.created_at >= since.t
    GROUP BY 1
), decided AS (
    SELECT {_UTC_HOUR.format(col="i.decided_at")} AS hour, count(*) AS n
    FROM items i, since
    WHERE i.project_id = $1 AND i.status = 'labeled' AND i.decided_at >= since.t
    GROUP BY 1
)
SELECT hour, coalesce(submitted.n, 0) AS annotations, coalesce(decided.n, 0) AS decided
FROM submitted FULL JOIN decided USING (hour)
ORDER BY hour
"""

# Does annotation a match its item's final label i.final? $2 is the project's task type; see the
# module docstring. jsonb containment both ways is set equality (order and duplicates ignored).
_SAME_CLASSES = """
    coalesce(a.data -> 'classes', '[]') @> coalesce(i.final -> 'classes', '[]')
    AND coalesce(i.final -> 'classes', '[]') @> coalesce(a.data -> 'classes', '[]')"""
_SHAPE_LABELS = """
    ARRAY(SELECT (s ->> 'label')::bigint
          FROM jsonb_array_elements(coalesce({doc} -> 'shapes', '[]')) AS s ORDER BY 1)"""
_MATCHES = f"""
    CASE WHEN $2::text IN ('multiclass', 'multilabel') THEN {_SAME_CLASSES}
         WHEN $2::text IN ('bbox', 'polygon')
         THEN {_SHAPE_LABELS.format(doc="a.data")} = {_SHAPE_LABELS.format(doc="i.final")}
         ELSE a.data = i.final
    END"""
# Labelers are the project's labeler members plus anyone else who submitted (owners may label).
# The match counts and the medians are separate aggregates: the medians' sort then carries two
# narrow columns instead of every annotation's and final label's jsonb.
LABELERS_SQL = f"""
WITH decided AS (
    SELECT a.user_id, count(*) AS on_decided, count(*) FILTER (WHERE {_MATCHES}) AS matching
    FROM annotations a JOIN items i ON i.id = a.item_id
    WHERE a.project_id = $1 AND i.project_id = $1 AND i.status = 'labeled'
          AND i.decided_by IN ('single', 'consensus')
    GROUP BY a.user_id
), timing AS (
    SELECT user_id, count(*) AS submitted,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) / 1000 AS median_seconds
    FROM annotations WHERE project_id = $1
    GROUP BY user_id
), who AS (
    SELECT user_id FROM memberships WHERE project_id = $1 AND role = 'labeler'
    UNION
    SELECT user_id FROM timing
)
SELECT u.id, u.name, coalesce(t.submitted, 0) AS submitted, coalesce(d.on_decided, 0) AS on_decided,
       coalesce(d.matching, 0) AS matching, t.median_seconds
FROM who JOIN users u ON u.id = who.user_id
LEFT JOIN timing t ON t.user_id = who.user_id
LEFT JOIN decided d ON d.user_id = who.user_id
ORDER BY submitted DESC, u.id
"""

# Bucket k (0-based) holds [k/10, (k+1)/10); 1.0 joins the last one, [0.9, 1.0]. agreement is a
# real: 0.7 is stored as 0.69999999, so a small epsilon keeps it out of the bucket below.
AGREEMENT_SQL = f"""
SELECT least(floor(agreement::float8 * {BUCKETS} + 1e-6)::int, {BUCKETS - 1}) AS bucket, count(*) AS n
FROM items
WHERE project_id = $1 AND status = 'labeled' AND decided_by IN ('single', 'consensus')
      AND agreement IS NOT NULL
GROUP BY 1
"""

# Queue depth comes from the counts section (same snapshot), so this reads only leases and
# the recent annotations.
QUEUE_SQL = f"""
SELECT
    (SELECT count(*) FROM leases
     WHERE project_id = $1 AND state = 'active' AND expires_at > now()) AS active_leases,
    (SELECT count(*) FROM (
        SELECT user_id FROM leases WHERE project_id = $1 AND state = 'active' AND expires_at > now()
        UNION
        SELECT user_id FROM annotations
        WHERE project_id = $1 AND created_at > now() - interval '{ACTIVE_WINDOW_MINUTES} minutes'
     ) AS recent) AS active_labelers
"""


def clamp_hours(hours: int) -> int:
    """The throughput window in hours, held within 1..MAX_HOURS."""
    return min(max(hours, 1), MAX_HOURS)


def status_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Items per status with every status present, plus their total."""
    counts = dict.fromkeys(STATUSES, 0)
    for row in rows:
        counts[row["status"]] = int(row["n"])
    counts["total"] = sum(counts[s] for s in STATUSES)
    return counts


def throughput(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Hourly rows as JSON: the hour's UTC start, annotations submitted and items decided."""
    return [{"hour": r["hour"].astimezone(UTC).isoformat(), "annotations": int(r["annotations"]),
             "decided": int(r["decided"])} for r in rows]


def agreement_rate(matching: int, decided: int) -> float | None:
    """Share of annotations on decided items that match the final label; None without any."""
    return matching / decided if decided else None


def labelers(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-labeler rows as JSON."""
    return [{"user": {"id": r["id"], "name": r["name"]}, "submitted": int(r["submitted"]),
             "agreement_rate": agreement_rate(int(r["matching"]), int(r["on_decided"])),
             "median_seconds": r["median_seconds"]} for r in rows]


def agreement_buckets(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ten buckets [0, 0.1), ..., [0.9, 1.0] of decided items' agreement, empty ones included."""
    counts = [0] * BUCKETS
    for row in rows:
        counts[int(row["bucket"])] = int(row["n"])
    return [{"from": round(k / BUCKETS, 1), "to": round((k + 1) / BUCKETS, 1), "count": n}
            for k, n in enumerate(counts)]


def queue(counts: Mapping[str, int], row: Mapping[str, Any]) -> dict[str, int]:
    """Items still needing labelers, live leases and labelers at work now."""
    return {"depth": sum(counts[s] for s in QUEUED), "active_leases": int(row["active_leases"]),
            "active_labelers": int(row["active_labelers"])}


async def collect(db: asyncpg.Pool, project_id: int, task_type: str, hours: int) -> dict[str, Any]:
    """Every section of a project's statistics, read from one snapshot."""
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        counts = status_counts(await conn.fetch(ITEM_COUNTS, project_id))
        hourly = await conn.fetch(THROUGHPUT_SQL, project_id, clamp_hours(hours))
        people = await conn.fetch(LABELERS_SQL, project_id, task_type)
        spread = await conn.fetch(AGREEMENT_SQL, project_id)
        live = await conn.fetchrow(QUEUE_SQL, project_id)
    return {
        "counts": counts,
        "throughput": throughput(hourly),
        "labelers": labelers(people),
        "agreement": agreement_buckets(spread),
        "queue": queue(counts, live),
        "generated_at": datetime.now(UTC).isoformat(),
    }
