"""What an export reads: the project's label table and its items in id order, one batch at
a time (keyset pagination, so memory stays bounded and no transaction is held open)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from server.data import item_query
from server.projects.label_tree import LabelIndex

BATCH = 2000
# Batches read ahead while the previous one is written: Postgres works on the next one meanwhile.
AHEAD = 1

_LABELS = "SELECT id, parent_id, name FROM labels WHERE project_id = $1 ORDER BY position"
# final::text is parsed with orjson: several times faster than the pool's json codec. The
# labelers of single and consensus decisions come in the same row, as user ids (their emails
# are looked up once per export, in Emails): one round trip per batch and an index probe per
# item. The columns are read by position in _record.
_ITEMS = """
SELECT i.id, i.key, i.width, i.height, i.status, i.final::text AS final, i.decided_by,
       i.agreement, i.decided_at, i.decided_by_user,
       CASE WHEN i.decided_by IN ('single', 'consensus') THEN ARRAY(
           SELECT a.user_id FROM annotations a WHERE a.item_id = i.id ORDER BY a.id) END AS labelers
FROM items i
WHERE {where} AND i.id > {after}
ORDER BY i.id LIMIT {limit}
"""
_EMAILS = "SELECT id, email FROM users WHERE id = ANY($1::bigint[])"
_RAW = """
SELECT a.item_id, u.email, a.data::text AS data, a.created_at
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


@dataclass(slots=True)
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
    emails = Emails()
    while True:
        rows = await db.fetch(sql, *st.params, after, size)
        if not rows:
            return
        after = rows[-1][0]
        await emails.learn(db, rows)
        if filters.raw_annotations:
            raw = await _raw(db, [r[0] for r in rows])
            yield [_record(r, emails, raw.get(r[0], [])) for r in rows]
        else:
            yield [_record(r, emails, []) for r in rows]


class Emails:
    """Users' emails by id, fetched as batches name new users: a project has far fewer
    labelers than items, so each is read once per export."""

    def __init__(self) -> None:
        self.by_id: dict[int, str] = {}

    async def learn(self, db: asyncpg.Pool | asyncpg.Connection, rows: list[asyncpg.Record]) -> None:
        known = self.by_id
        new = {u for r in rows for u in (r[10] or ()) if u not in known}
        new.update(r[9] for r in rows if r[9] is not None and r[9] not in known)
        if new:
            known.update((u["id"], u["email"]) for u in await db.fetch(_EMAILS, list(new)))

    def names(self, ids: list[int]) -> list[str]:
        return [self.by_id[u] for u in ids if u in self.by_id]


async def read_ahead(batches: AsyncIterator[list[Record]], depth: int = AHEAD) -> AsyncIterator[list[Record]]:
    """The same batches, the next `depth` fetched while the caller works on the current one.
    Memory holds at most depth + 1 batches besides the caller's."""
    queue: asyncio.Queue[list[Record] | BaseException | None] = asyncio.Queue(maxsize=depth)

    async def fill() -> None:
        try:
            async for batch in batches:
                await queue.put(batch)
            await queue.put(None)
        except Exception as exc:  # noqa: BLE001 - handed to the reader, which raises it
            await queue.put(exc)

    task = asyncio.create_task(fill())
    try:
        while (got := await queue.get()) is not None:
            if isinstance(got, BaseException):
                raise got
            yield got
        await task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _raw(db: asyncpg.Pool | asyncpg.Connection, ids: list[int]) -> dict[int, list[RawAnnotation]]:
    """Every labeler's own annotation of these items, in submission order."""
    out: dict[int, list[RawAnnotation]] = {}
    for a in await db.fetch(_RAW, ids):
        out.setdefault(a["item_id"], []).append(
            RawAnnotation(a["email"], orjson.loads(a["data"]), a["created_at"]))
    return out


def _record(row: asyncpg.Record, emails: Emails, raw: list[RawAnnotation]) -> Record:
    item_id, key, width, height, status, final, decided_by, agreement, decided_at, decider, labelers = row
    how = _DECIDED_BY.get(decided_by) if decided_by else None
    if how in ("single", "consensus"):
        users = emails.names(labelers)
    else:
        users = emails.names([decider]) if decider is not None else []
    return Record(item_id, key, width, height, status, orjson.loads(final) if final else None,
                  how, users, agreement, decided_at, raw)
