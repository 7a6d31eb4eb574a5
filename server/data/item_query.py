"""Which of a project's items a data-manager listing shows, in what order: filters and sort
read from a query string, turned into one SQL statement, keyset-paged by an opaque cursor.

The statement is assembled from fixed fragments only; every value the caller sends is a
bind parameter. It runs unchanged on the embedded PostgreSQL, which has no extensions
beyond plpgsql, so the file-name filter is a plain ILIKE over the project's keys (see
docs/decisions.md, "Data manager", for what that costs at 500,000 items).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from server.data.items import STATUSES
from server.errors import field_error

# Sort name -> column. Every sort is completed by the id, so the order is total and a
# cursor (value, id) names one place in it.
SORTS = {"id": "i.id", "key": "i.key", "updated_at": "i.updated_at", "status": "i.status"}
# How an item's label was reached, or how its labelers disagreed (see `_AGREEMENT`).
AGREEMENTS = ("consensus", "single", "reviewed", "imported", "disagreement", "raised")
_AGREEMENT = {
    "consensus": "i.decided_by = 'consensus'",
    "single": "i.decided_by = 'single'",
    "reviewed": "i.decided_by = 'owner'",
    "imported": "i.decided_by = 'imported'",
    # Some labeler disagreed with the others (decided or not).
    "disagreement": "i.agreement < 1",
    # Disagreement raised the number of labelers the item needs above the project's min.
    "raised": "i.target > {min}",
}
MAX_NAME = 200
# The most items of its order one page of a file-name search examines: a rare name then
# comes back over several short requests (the page says how far it got) rather than in one
# scan of the whole project.
NAME_SCAN = 5_000
MAX_IDS = 10_000
# Counting stops here: "10,000+ items match" is all a person needs, and a full count of a
# broad filter over 500,000 items would cost more than the page itself.
COUNT_CAP = 10_000

_HAS_PRELABEL = """(i.prelabel IS NOT NULL OR i.id IN (
    SELECT p.item_id FROM ml_predictions p WHERE p.project_id = $1 AND p.prelabel <> '{}'::jsonb))"""
_LABELER = """i.id IN (SELECT l.item_id FROM leases l
    WHERE l.project_id = $1 AND l.user_id = {user} AND l.state IN ('active', 'submitted'))"""
LIST_COLUMNS = """i.id, i.key, i.media_kind, i.width, i.height, i.frames, i.probe_error, i.status,
    i.decided_by, i.created_at, i.updated_at, i.missing_since, i.agreement, i.target,
    i.final - 'mask' AS final,
    (i.prelabel IS NOT NULL OR EXISTS (SELECT 1 FROM ml_predictions p WHERE p.item_id = i.id
                                       AND p.prelabel <> '{}'::jsonb)) AS has_prelabel"""


@dataclass(frozen=True)
class ItemFilter:
    """What a listing (or an action on "everything matching") selects; empty selects all."""

    statuses: tuple[str, ...] = ()
    labeler: int | None = None
    agreement: str | None = None
    needs_review: bool | None = None
    has_prelabel: bool | None = None
    name: str | None = None
    ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Order:
    sort: str = "id"
    desc: bool = False


@dataclass(frozen=True)
class Cursor:
    """A place in one order: the sort value and id of an item; `back` pages towards the start."""

    order: Order
    value: Any
    id: int
    back: bool = False

    def encode(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, datetime) else self.value
        raw = orjson.dumps([self.order.sort, self.order.desc, value, self.id, self.back])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, order: Order) -> Cursor:
        """The cursor in `text`, which must belong to `order`; 422 otherwise."""
        bad = field_error("cursor", "is not a cursor of this listing (filters or sort changed?)")
        try:
            sort, desc, value, iid, back = orjson.loads(
                base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise bad from None
        if (sort, desc) != (order.sort, order.desc) or type(iid) is not int or type(back) is not bool:
            raise bad
        if sort == "id":
            value = iid
        elif sort == "updated_at":
            try:
                value = datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise bad from None
            if value.tzinfo is None:
                raise bad
        elif not isinstance(value, str) or "\x00" in value:
            raise bad
        return cls(order, value, iid, back)


def _bool(raw: str, name: str) -> bool:
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise field_error(name, "must be true or false")


def _values(q: Mapping[str, Sequence[str]], name: str) -> list[str]:
    """Every value of a repeated or comma-separated parameter, blanks dropped."""
    return [v for raw in q.get(name, ()) for v in raw.split(",") if v != ""]


def _one(q: Mapping[str, Sequence[str]], name: str) -> str | None:
    got = [v for v in q.get(name, ()) if v != ""]
    if len(got) > 1:
        raise field_error(name, "may be given once")
    return got[0] if got else None


def parse_filter(q: Mapping[str, Sequence[str]]) -> ItemFilter:
    """The filter in a query string (each name mapped to its values); 422 naming the field."""
    # Several statuses are several `status` parameters ("a,b" is no status: refused).
    statuses = tuple(dict.fromkeys(v for v in q.get("status", ()) if v != ""))
    for s in statuses:
        if s not in STATUSES:
            raise field_error("status", f"must be one of {', '.join(STATUSES)}")
    labeler_raw = _one(q, "labeler")
    if labeler_raw is not None and not (labeler_raw.isdigit() and len(labeler_raw) < 19):
        raise field_error("labeler", "must be a user id")
    agreement = _one(q, "agreement")
    if agreement is not None and agreement not in AGREEMENTS:
        raise field_error("agreement", f"must be one of {', '.join(AGREEMENTS)}")
    review_raw, prelabel_raw = _one(q, "needs_review"), _one(q, "has_prelabel")
    name = _one(q, "name")
    if name is not None and (len(name) > MAX_NAME or "\x00" in name):
        raise field_error("name", f"must be at most {MAX_NAME} characters, without NUL")
    ids_raw = _values(q, "ids")
    if len(ids_raw) > MAX_IDS or not all(v.isdigit() and len(v) < 19 for v in ids_raw):
        raise field_error("ids", f"must be at most {MAX_IDS} item ids")
    return ItemFilter(
        statuses=statuses,
        labeler=int(labeler_raw) if labeler_raw is not None else None,
        agreement=agreement,
        needs_review=_bool(review_raw, "needs_review") if review_raw is not None else None,
        has_prelabel=_bool(prelabel_raw, "has_prelabel") if prelabel_raw is not None else None,
        name=name,
        ids=tuple(sorted({int(v) for v in ids_raw})),
    )


def parse_order(q: Mapping[str, Sequence[str]]) -> Order:
    """`sort=key` ascending, `sort=-key` descending; by id when absent."""
    raw = _one(q, "sort") or "id"
    desc = raw.startswith("-")
    name = raw[1:] if desc else raw
    if name not in SORTS:
        raise field_error("sort", f"must be one of {', '.join(SORTS)} (prefix - for descending)")
    return Order(name, desc)


def _like(text: str) -> str:
    """A substring pattern for ILIKE: the text's own wildcards match only themselves."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass
class Statement:
    """A WHERE clause under construction; $1 is always the project."""

    params: list[Any] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    @property
    def where(self) -> str:
        return " AND ".join(self.terms)


def conditions(pid: int, f: ItemFilter, low: int, name: bool = True) -> Statement:
    """The WHERE clause selecting the filter's items of project `pid` (`low`: its min labelers);
    without the file-name term when `name` is False."""
    st = Statement()
    st.terms.append(f"i.project_id = {st.bind(pid)}")
    # Statuses, the labeler and the min are checked values, written into the statement as
    # constants: a prepared statement (asyncpg caches them) falls back to a generic plan
    # after a few runs, and a generic plan for "status = ANY($n)" cannot know that the
    # statuses asked for are rare and walk the status index (200 ms instead of 1 ms).
    if f.statuses:
        assert all(s in STATUSES for s in f.statuses)
        st.terms.append("i.status IN (" + ", ".join(f"'{s}'" for s in f.statuses) + ")")
    if f.needs_review is not None:
        st.terms.append("i.status = 'needs_review'" if f.needs_review else "i.status <> 'needs_review'")
    if f.agreement is not None:
        term = _AGREEMENT[f.agreement]
        st.terms.append(term.format(min=int(low)))
    if f.has_prelabel is not None:
        st.terms.append(_HAS_PRELABEL if f.has_prelabel else f"NOT {_HAS_PRELABEL}")
    if f.labeler is not None:
        st.terms.append(_LABELER.format(user=int(f.labeler)))
    if f.name and name:
        st.terms.append(f"i.key ILIKE {st.bind(_like(f.name))}")
    if f.ids:
        st.terms.append(f"i.id = ANY({st.bind(list(f.ids))}::bigint[])")
    return st


def page_sql(pid: int, f: ItemFilter, low: int, order: Order, cursor: Cursor | None,
             limit: int) -> tuple[str, list[Any]]:
    """One page (`limit` rows) after `cursor`, or before it when it pages back (then in
    reverse order: the caller turns the rows round).

    With a file-name filter the page examines at most NAME_SCAN items of the order (the
    name cannot be indexed without an extension, see the module docstring): every row then
    also carries `scanned` and the sort value and id of the last item examined
    (`last_v`, `last_id`), and a row of NULLs stands for "no match in this stretch"."""
    st = conditions(pid, f, low, name=False)
    col = SORTS[order.sort]
    backwards = cursor is not None and cursor.back
    desc = order.desc != backwards
    op, way, back_way = ("<", "DESC", "ASC") if desc else (">", "ASC", "DESC")
    if cursor is not None:
        if order.sort in ("id", "key"):
            # Unique within the project: the value alone is the place (and the (project_id,
            # key) index can bound the scan with it; it holds no id for a row comparison).
            st.terms.append(f"{col} {op} {st.bind(cursor.id if order.sort == 'id' else cursor.value)}")
        else:
            value = st.bind(cursor.value)
            st.terms.append(f"({col}, i.id) {op} ({value}, {st.bind(cursor.id)})")
    by = f"i.id {way}" if order.sort == "id" else f"{col} {way}, i.id {way}"
    if not f.name:
        return (f"SELECT {LIST_COLUMNS} FROM items i WHERE {st.where} "
                f"ORDER BY {by} LIMIT {st.bind(limit)}", st.params)
    sort = order.sort
    sql = f"""
WITH scanned AS MATERIALIZED (
    SELECT i.id, i.key, {col} AS v FROM items i WHERE {st.where} ORDER BY {by}
    LIMIT {st.bind(NAME_SCAN)}
), tail AS (
    SELECT (SELECT count(*) FROM scanned) AS scanned, l.v AS last_v, l.id AS last_id
    FROM (SELECT 1) AS one
    LEFT JOIN (SELECT v, id FROM scanned ORDER BY v {back_way}, id {back_way} LIMIT 1) AS l ON true
), hits AS (
    SELECT id FROM scanned WHERE key ILIKE {st.bind(_like(f.name))}
    ORDER BY v {way}, id {way} LIMIT {st.bind(limit)}
)
SELECT t.scanned, t.last_v, t.last_id, r.* FROM tail t LEFT JOIN LATERAL (
    SELECT {LIST_COLUMNS} FROM items i WHERE i.id IN (SELECT id FROM hits)) AS r ON true
ORDER BY r.{sort} {way}, r.id {way}
"""
    return sql, st.params


def count_sql(pid: int, f: ItemFilter, low: int) -> tuple[str, list[Any]]:
    """How many items match, counted up to COUNT_CAP + 1."""
    st = conditions(pid, f, low)
    return (f"SELECT count(*) FROM (SELECT 1 FROM items i WHERE {st.where} "
            f"LIMIT {COUNT_CAP + 1}) AS matching", st.params)


def ids_sql(pid: int, f: ItemFilter, low: int, lock: bool) -> tuple[str, list[Any]]:
    """The ids of every matching item in id order (locked for update when `lock`)."""
    st = conditions(pid, f, low)
    tail = " FOR UPDATE OF i" if lock else ""
    return f"SELECT i.id FROM items i WHERE {st.where} ORDER BY i.id{tail}", st.params


def sort_value(row: Mapping[str, Any], order: Order) -> Any:
    return row[order.sort]
