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

    def add(self, other: Applied) -> None:
        """Count another batch's work in."""
        self.labeled += other.labeled
        self.prelabeled += other.prelabeled
        self.kept_human_labels += other.kept_human_labels


async def apply(conn: asyncpg.Connection, user_id: int, labels_as: LabelsAs,
                rows: Iterable[Labeled]) -> Applied:
    """Write the rows inside the caller's transaction (one batch of statements: imports
    write many); return what was done."""
    out = Applied()
    used: set[int] = set()
    final: list[tuple[Any, ...]] = []
    prelabels: list[tuple[Any, ...]] = []
    for row in rows:
        if labels_as == "final":
            if row.item["decided_by"] not in (None, "imported"):
                out.kept_human_labels += 1  # a person already decided this item; their label wins
                continue
            final.append((row.item["id"], row.annotation, user_id))
        else:
            pre = dict(row.annotation)
            if row.confidence is not None:
                pre["confidence"] = row.confidence
            prelabels.append((row.item["id"], pre))
        used.update(row.annotation.get("classes", []))
        used.update(s["label"] for s in row.annotation.get("shapes", []))
    if final:
        await conn.executemany(_SET_FINAL, final)
    if prelabels:
        await conn.executemany(_SET_PRELABEL, prelabels)
    out.labeled, out.prelabeled = len(final), len(prelabels)
    if used:
        await conn.execute(_MARK_USED, sorted(used))
    return out
