"""Writing imported labels onto items, for table imports and labeled-dataset imports alike:
as final labels (`decided_by` imported, by the importing user) or as prelabels a labeler
must confirm. A final label a person already decided is never overwritten."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

_SET_FINAL = """
UPDATE items SET final = $2, decided_by = 'imported', decided_by_user = $3, decided_at = now(),
                 agreement = NULL, status = 'labeled', updated_at = now()
WHERE id = $1
"""
_SET_PRELABEL = "UPDATE items SET prelabel = $2, updated_at = now() WHERE id = $1"
_MARK_USED = "UPDATE labels SET used_at = now() WHERE id = ANY($1::bigint[]) AND used_at IS NULL"

LabelsAs = Literal["final", "prelabel"]


@dataclass(frozen=True)
class Labeled:
    """One item's imported annotation (plain JSON with label ids) and optional confidence."""

    item: Mapping[str, Any]          # at least id and decided_by
    annotation: dict[str, Any]
    confidence: float | None = None


@dataclass
class Applied:
    labeled: int = 0
    prelabeled: int = 0
    kept_human_labels: int = 0


async def apply(conn: asyncpg.Connection, user_id: int, labels_as: LabelsAs,
                rows: Iterable[Labeled]) -> Applied:
    """Write the rows inside the caller's transaction; return what was done."""
    out = Applied()
    used: set[int] = set()
    for row in rows:
        if labels_as == "final":
            if row.item["decided_by"] not in (None, "imported"):
                out.kept_human_labels += 1  # a person already decided this item; their label wins
                continue
            await conn.execute(_SET_FINAL, row.item["id"], row.annotation, user_id)
            out.labeled += 1
        else:
            pre = dict(row.annotation)
            if row.confidence is not None:
                pre["confidence"] = row.confidence
            await conn.execute(_SET_PRELABEL, row.item["id"], pre)
            out.prelabeled += 1
        used.update(row.annotation.get("classes", []))
        used.update(s["label"] for s in row.annotation.get("shapes", []))
    if used:
        await conn.execute(_MARK_USED, sorted(used))
    return out
