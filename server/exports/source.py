"""What an export reads: the project's label table and its items in id order, one batch at
a time (keyset pagination, so memory stays bounded and no transaction is held open)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from server.data import item_query
from server.projects.label_tree import LabelIndex

BATCH = 2000

_LABELS = "SELECT id, parent_id, name FROM labels WHERE project_id = $1 ORDER BY position"
# final::text is parsed with orjson: several times faster than the pool's json codec.
_ITEMS = """
SELECT i.id, i.key, i.width, i.height, i.status, i.final::text AS final, i.decided_by,
       i.agreement, i.decided_at, u.email AS decider
FROM items i LEFT JOIN users u ON u.id = i.decided_by_user
WHERE {where} AND i.id > {after}
ORDER BY i.id LIMIT {limit}
"""
_LABELERS = """
SELECT a.item_id, u.email, CASE WHEN $2 THEN a.data::text END AS data, a.created_at
FROM annotations a JOIN users u ON u.id = a.user_id
WHERE a.item_id = ANY($1::bigint[]) ORDER BY a.item_id, a.id
"""
# How a final label was reached, in export vocabulary.
_DECIDED_BY = {"single": "single", "consensus": "consensus", "owner": "reviewer", "imported": "import"}


@dataclass(frozen=True)
class Filters:
    needs_review: bool = False      # also items waiting for review (no final label yet)
    raw_annotations: bool = False   # every labeler's own annotation beside the final one
    # Only these items (the data manager's selection): an item_query.ItemFilter's fields
    # plus "min" (the project's min labelers); matched when the export runs.
    selection: dict[str, Any] | None = None

    def where(self, project_id: int) -> item_query.Statement:
        """The exported items' conditions ($1 the project), without the keyset."""
        if self.selection is None:
            st = item_query.Statement()
            st.terms.append(f"i.project_id = {st.bind(project_id)}")
        else:
            sel = dict(self.selection)
            low = int(sel.pop("min", 1))
            sel = {k: tuple(v) if isinstance(v, list) else v for k, v in sel.items()}
            st = item_query.conditions(project_id, item_query.ItemFilter(**sel), low)
        st.terms.append(f"i.status = ANY({st.bind(self.statuses)}::text[])")
        return st

    @property
    def statuses(self) -> list[str]:
        return ["labeled", "needs_review"] if self.needs_review else ["labeled"]


@dataclass(frozen=True)
class Label:
    id: int
    path: str


class LabelTable:
    """The label tree flattened in display order, each label with its full path."""

    def __init__(self, labels: list[Label]) -> None:
        self.labels = labels
        self._paths = {x.id: x.path for x in labels}
        self._positions = {x.id: i for i, x in enumerate(labels)}

    @classmethod
    def from_rows(cls, rows: list[Mapping[str, Any]]) -> LabelTable:
        index = LabelIndex.from_rows(rows)
        return cls([Label(r["id"], index.paths[r["id"]]) for r in rows])

    def path(self, label_id: int) -> str:
        return self._paths[label_id]

    def position(self, label_id: int) -> int:
        """0-based position in display order (YOLO class index; masks add one for background)."""
        return self._positions[label_id]


@dataclass
class RawAnnotation:
    labeler: str
    data: dict[str, Any]
    submitted_at: datetime


@dataclass
class Record:
    """One item as exports see it: its final label (or None) and how it was decided."""

    item_id: int
    key: str
    width: int | None
    height: int | None
    status: str
    final: dict[str, Any] | None
    decided_by: str | None
    decided_by_users: list[str]
    agreement: float | None
    decided_at: datetime | None
    raw: list[RawAnnotation] = field(default_factory=list)

    def provenance(self) -> dict[str, Any]:
        """Who decided the label and how, as every format writes it."""
        return {
            "item_id": self.item_id,
            "status": self.status,
            "decided_by": self.decided_by,
            "decided_by_users": self.decided_by_users,
            "agreement": None if self.agreement is None else round(self.agreement, 4),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }


async def label_table(db: asyncpg.Pool | asyncpg.Connection, project_id: int) -> LabelTable:
    return LabelTable.from_rows(list(await db.fetch(_LABELS, project_id)))


async def count(db: asyncpg.Pool | asyncpg.Connection, project_id: int, filters: Filters) -> int:
    st = filters.where(project_id)
    n: int = await db.fetchval(f"SELECT count(*) FROM items i WHERE {st.where}", *st.params)
    return n


async def batches(db: asyncpg.Pool | asyncpg.Connection, project_id: int, filters: Filters,
                  size: int = BATCH) -> AsyncIterator[list[Record]]:
    """The exported items in id order, `size` at a time."""
    after = 0
    st = filters.where(project_id)
    sql = _ITEMS.format(where=st.where, after=f"${len(st.params) + 1}", limit=f"${len(st.params) + 2}")
    while True:
        rows = await db.fetch(sql, *st.params, after, size)
        if not rows:
            return
        after = rows[-1]["id"]
        labelers = await _labelers(db, rows, filters.raw_annotations)
        yield [_record(r, labelers.get(r["id"], []), filters.raw_annotations) for r in rows]


async def _labelers(db: asyncpg.Pool | asyncpg.Connection, rows: list[asyncpg.Record],
                    raw: bool) -> dict[int, list[asyncpg.Record]]:
    """Annotations of the items whose provenance names their labelers (or all, for raw)."""
    wanted = [r["id"] for r in rows if raw or r["decided_by"] in ("single", "consensus")]
    out: dict[int, list[asyncpg.Record]] = {}
    if wanted:
        for a in await db.fetch(_LABELERS, wanted, raw):
            out.setdefault(a["item_id"], []).append(a)
    return out


def _record(row: asyncpg.Record, annotations: list[asyncpg.Record], raw: bool) -> Record:
    how = _DECIDED_BY.get(row["decided_by"]) if row["decided_by"] else None
    if how in ("single", "consensus"):
        users = [a["email"] for a in annotations]
    else:
        users = [row["decider"]] if row["decider"] else []
    return Record(
        item_id=row["id"], key=row["key"], width=row["width"], height=row["height"],
        status=row["status"], final=orjson.loads(row["final"]) if row["final"] else None,
        decided_by=how, decided_by_users=users, agreement=row["agreement"],
        decided_at=row["decided_at"],
        raw=[RawAnnotation(a["email"], orjson.loads(a["data"]), a["created_at"])
             for a in annotations] if raw else [],
    )
