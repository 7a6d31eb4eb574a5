"""MLTable import: table rows (read by table_files.py) that name images and may carry labels.

The category cell follows the Azure ML AutoML image schema. Multiclass takes one label; multilabel takes a
JSON array of labels or a string of labels separated by ';' (a cell starting with '[' is read as JSON, so a
label whose name contains ';' needs the array form); bbox takes `[{"label", "topX", "topY", "bottomX",
"bottomY", "isCrowd"?}]`; polygon takes `[{"label", "polygon": [[x0, y0, x1, y1, ...], ...]}]`. Labels are
full paths ("Animal/Cat") or bare names where only one label has that name. An empty cell leaves the image
unlabeled; an explicit empty list (`[]`) marks it as having no classes or no shapes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import asyncpg
from pydantic import Field

from server.data import imported_labels, ingest
from server.data.datastores.base import UnsafeKey
from server.data.datastores.factory import open_datastore
from server.data.datastores.keys import accepted, check_key
from server.data.datastores.local import LocalDatastore
from server.data.import_transaction import Check, import_transaction
from server.data.progress import Progress, Reporter, batches_in_thread
from server.data.table_files import BadRow, Format, TabularError, detect_format, read_columns, read_rows
from server.database import Database
from server.errors import Unprocessable
from server.projects.label_tree import LabelIndex
from server.settings import Settings
from server.validation import Strict

TASK_TYPES = ("multiclass", "multilabel", "bbox", "polygon", "semantic")
MAX_ROWS = 1_000_000
MAX_REPORTED_ERRORS = 1000
_SEMANTIC = "semantic segmentation labels cannot be imported from a table; import masks instead"
_LABEL_ROWS = "SELECT id, parent_id, name FROM labels WHERE project_id = $1 ORDER BY position"


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns hold the image, the category and the confidence."""

    image: str
    category: str | None = None
    confidence: str | None = None

    def columns(self) -> list[str]:
        """The mapped column names, image first."""
        return [c for c in (self.image, self.category, self.confidence) if c is not None]


@dataclass(frozen=True)
class ImportRow:
    """One importable row: the image's key, its annotation in plain JSON form (or None) and a confidence."""

    row: int
    key: str
    annotation: dict[str, Any] | None
    confidence: float | None


@dataclass(frozen=True)
class RowError:
    """A problem with one cell (or, with an empty column, the whole row) of one data row."""

    row: int
    column: str
    message: str


@dataclass
class ImportPlan:
    """The rows to import, the rows' errors and how many data rows the file had."""

    rows: list[ImportRow]
    errors: list[RowError]
    total: int


def check_columns(columns: Iterable[str], mapping: ColumnMapping) -> None:
    """Raise TabularError naming any mapped column that the file lacks."""
    have = set(columns)
    missing = [c for c in mapping.columns() if c not in have]
    if missing:
        raise TabularError("mapped column(s) not in the file: " + ", ".join(repr(c) for c in missing))


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _confidence(value: Any) -> float | None:
    if isinstance(value, float) and math.isnan(value):
        return None  # pandas writes missing numbers to Parquet as NaN
    if _empty(value):
        return None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"confidence {value!r} is not a number") from None
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError(f"confidence must be a number, not {type(value).__name__}")
    if not 0 <= number <= 1:
        raise ValueError(f"confidence {value!r} is not between 0 and 1")
    return number


def _json_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as e:
            raise ValueError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list, not {type(value).__name__}")
    return value


def _label(text: Any, labels: LabelIndex, problems: list[str], where: str = "") -> int | None:
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{where}label must be a non-empty string, not {text!r}")
        return None
    found = labels.resolve(text)
    if found is None:
        problems.append(where + labels.problem(text))
    return found


def _unit(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}{name} must be a number, not {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"{where}{name} {value} is outside [0, 1]; coordinates are normalized")
    return float(value)


def _classes(value: Any, task_type: str, labels: LabelIndex, problems: list[str]) -> dict[str, Any] | None:
    if isinstance(value, str):
        text = value.strip()
        if task_type == "multiclass" and (labels.resolve(text) is not None or not text.startswith("[")):
            value = [text]
        elif task_type == "multilabel" and not text.startswith("["):
            value = [part for part in text.split(";") if part.strip()]
    names = _json_list(value, "the label list")
    if task_type == "multiclass" and len(names) > 1:
        raise ValueError(f"multiclass takes one label per image, got {len(names)}")
    if task_type == "multiclass" and not names:
        return None
    ids: list[int] = []
    for name in names:
        found = _label(name, labels, problems)
        if found is not None and found not in ids:
            ids.append(found)
    return {"classes": ids}


def _geometry(obj: Mapping[str, Any], task_type: str, where: str) -> list[dict[str, Any]]:
    if task_type == "bbox":
        x0, y0, x1, y1 = (_unit(obj.get(k), k, where) for k in ("topX", "topY", "bottomX", "bottomY"))
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"{where}topX/topY must be less than bottomX/bottomY")
        # isCrowd is accepted for AutoML compatibility; shapes have no crowd flag.
        if obj.get("isCrowd") not in (None, True, False):
            raise ValueError(f"{where}isCrowd must be true or false")
        return [{"kind": "box", "x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0}]
    rings = obj.get("polygon")
    if not isinstance(rings, list) or not rings:
        raise ValueError(f"{where}polygon must be a non-empty list of coordinate lists")
    out = []
    for r, ring in enumerate(rings, start=1):
        at = f"{where}ring {r}: "
        if not isinstance(ring, list) or len(ring) % 2 or len(ring) < 6:
            raise ValueError(f"{at}needs at least 3 points as an even number of coordinates")
        points = [_unit(v, f"coordinate {i}", at) for i, v in enumerate(ring)]
        out.append({"kind": "polygon", "points": points})
    return out


def _shapes(
    value: Any, task_type: str, row: int, confidence: float | None, labels: LabelIndex, problems: list[str]
) -> dict[str, Any]:
    shapes: list[dict[str, Any]] = []
    for n, obj in enumerate(_json_list(value, f"the {task_type} list"), start=1):
        where = f"{'box' if task_type == 'bbox' else 'polygon'} {n}: "
        if not isinstance(obj, dict):
            problems.append(f"{where}must be an object, not {type(obj).__name__}")
            continue
        label = _label(obj.get("label"), labels, problems, where)
        try:
            geometry = _geometry(obj, task_type, where)
        except ValueError as e:
            problems.append(str(e))
            continue
        for g in geometry if label is not None else []:
            kind = g.pop("kind")
            shapes.append({"id": f"import-{row}-{len(shapes)}", "kind": kind, "label": label,
                           **g, "source": "import", "confidence": confidence})
    return {"shapes": shapes}


def plan_import(
    rows: Iterable[dict[str, Any]], mapping: ColumnMapping, task_type: str, labels: LabelIndex,
    resolve_image: Callable[[str], str],
) -> ImportPlan:
    """Check every row against the mapping, task type and label tree; collect importable rows and errors."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}")
    plan = ImportPlan([], [], 0)
    planner = _RowPlanner(mapping, task_type, labels, resolve_image)
    for number, _, row, errors in _checked(rows, mapping, planner):
        plan.total = number
        if row is not None:
            plan.rows.append(row)
        plan.errors += errors
    return plan


Checked = tuple[int, str | None, ImportRow | None, list[RowError]]


def _checked(rows: Iterable[dict[str, Any]], mapping: ColumnMapping,
             planner: _RowPlanner) -> Iterator[Checked]:
    """Each data row's number, image key (if it has one), row to import (unless it has
    errors) and errors."""
    checked = False
    for number, cells in enumerate(rows, start=1):
        if isinstance(cells, BadRow):
            yield number, None, None, [RowError(number, "", cells.message)]
            continue
        if not checked:
            check_columns(cells, mapping)
            checked = True
        yield number, *planner.check(number, cells)


def duplicate(key: str, first: int) -> str:
    return f"duplicate image {key!r}: first seen on row {first}"


@dataclass
class _RowPlanner:
    """Checks one data row's cells at a time; remembers each image's first row to refuse repeats."""

    mapping: ColumnMapping
    task_type: str
    labels: LabelIndex
    resolve_image: Callable[[str], str]
    # Each image's first row; None leaves repeats to the caller (a streaming import finds
    # them in SQL rather than hold every key).
    first_row: dict[str, int] | None = field(default_factory=dict)

    def plan(self, number: int, cells: dict[str, Any]) -> ImportRow | list[RowError]:
        """The row to import, or every problem its cells have."""
        key, row, errors = self.check(number, cells)
        return row if row is not None else errors

    def check(self, number: int,
              cells: dict[str, Any]) -> tuple[str | None, ImportRow | None, list[RowError]]:
        """The row's image key (when it has one), the row to import unless it has errors, and
        its errors."""
        errors: list[RowError] = []
        key = self._key(number, cells, errors)
        confidence = self._confidence(number, cells, errors)
        annotation = self._annotation(number, cells, confidence, errors)
        if errors or key is None:
            return key, None, errors
        return key, ImportRow(number, key, annotation, confidence), errors

    def _key(self, number: int, cells: dict[str, Any], errors: list[RowError]) -> str | None:
        column = self.mapping.image
        image = cells.get(column)
        if not isinstance(image, str) or not image.strip():
            errors.append(RowError(number, column, f"image must be a non-empty string, not {image!r}"))
            return None
        try:
            key = self.resolve_image(image.strip())
        except ValueError as e:
            errors.append(RowError(number, column, str(e)))
            return None
        if self.first_row is None:
            return key
        if key in self.first_row:
            errors.append(RowError(number, column, duplicate(key, self.first_row[key])))
        else:
            self.first_row[key] = number
        return key

    def _confidence(self, number: int, cells: dict[str, Any], errors: list[RowError]) -> float | None:
        column = self.mapping.confidence
        if column is None:
            return None
        try:
            return _confidence(cells.get(column))
        except ValueError as e:
            errors.append(RowError(number, column, str(e)))
            return None

    def _annotation(self, number: int, cells: dict[str, Any], confidence: float | None,
                    errors: list[RowError]) -> dict[str, Any] | None:
        column = self.mapping.category
        value = None if column is None else cells.get(column)
        if column is None or _empty(value):
            return None
        problems: list[str] = []
        annotation = None
        try:
            if self.task_type == "semantic":
                raise ValueError(_SEMANTIC)
            if self.task_type in ("multiclass", "multilabel"):
                annotation = _classes(value, self.task_type, self.labels, problems)
            else:
                annotation = _shapes(value, self.task_type, number, confidence, self.labels, problems)
        except ValueError as e:
            problems.append(str(e))
        errors += [RowError(number, column, p) for p in problems]
        return annotation


def plan_file(
    path: Path, fmt: Format, mapping: ColumnMapping, task_type: str, labels: LabelIndex,
    resolve_image: Callable[[str], str], max_rows: int,
) -> ImportPlan:
    """Read a file and plan its import, checking the mapped columns even when the file has no data rows."""
    return plan_import(_file_rows(path, fmt, mapping, max_rows), mapping, task_type, labels, resolve_image)


def _file_rows(path: Path, fmt: Format, mapping: ColumnMapping, max_rows: int) -> Iterator[dict[str, Any]]:
    columns = read_columns(path, fmt)
    if columns is not None:
        check_columns(columns, mapping)
    return read_rows(path, fmt, max_rows, columns=mapping.columns() if fmt == "parquet" else None)


def image_resolver(binding: dict[str, Any], local_root: Path | None) -> Callable[[str], str]:
    """A function turning a table's image cell into a datastore key, or ValueError."""
    store = binding["datastore"]
    base = None
    if store["kind"] == "azure_blob":
        prefix = f"{store['prefix']}/" if store.get("prefix") else ""
        base = f"{store['account_url']}/{store['container']}/{prefix}"

    def resolve(value: str) -> str:
        value = value.strip()
        if "://" in value:
            if base is None or not value.startswith(base):
                raise ValueError("URLs must point inside this project's Azure Blob container"
                                 if base else "give the file's path in the datastore, not a URL")
            value = unquote(value[len(base):].split("?", 1)[0])
        try:
            key = check_key(value)
        except UnsafeKey:
            raise ValueError(f"unsafe path {value!r}") from None
        if not accepted(key):
            raise ValueError(f"{key}: not an accepted image or DICOM file type")
        if local_root is not None and not os.path.isfile(local_root / key):
            raise ValueError(f"{key}: no such file in the datastore")
        return key

    return resolve


async def _local_root(settings: Settings, pid: int, binding: dict[str, Any]) -> Path | None:
    """The folder holding the datastore's files when they are on this server (a local or
    upload datastore), so that each row's file can be checked to exist; None otherwise."""
    store = open_datastore(settings, pid, binding)
    local_root = store.root if isinstance(store, LocalDatastore) else None
    await store.close()
    return local_root


def reported(plan: ImportPlan) -> list[dict[str, Any]]:
    """The plan's row errors as the API lists them, at most MAX_REPORTED_ERRORS."""
    return [{"row": e.row, "column": e.column, "message": e.message}
            for e in plan.errors[:MAX_REPORTED_ERRORS]]


# --- importing a file with bounded memory ----------------------------------------------------
# The rows are checked on a reading thread and COPYed in batches into a temporary table of
# the import's transaction; SQL finds repeated images and joins the rows with their items,
# so only a batch and the first errors are ever held.

class MappingBody(Strict):
    image: str = Field(min_length=1, max_length=200)
    category: str | None = Field(None, min_length=1, max_length=200)
    confidence: str | None = Field(None, min_length=1, max_length=200)


class ImportOptions(Strict):
    mapping: MappingBody
    labels_as: Literal["final", "prelabel"] = "final"
    accept_partial: bool = False
    format: Literal["csv", "jsonl", "parquet"] | None = None


BATCH = 5000
WRITE_BATCH = 1000
_STAGING = """
CREATE TEMP TABLE import_rows (row integer PRIMARY KEY, key text COLLATE "C" NOT NULL,
                               annotation jsonb, confidence double precision, ok boolean NOT NULL)
ON COMMIT DROP
"""
_REPEATS = """
SELECT row, key, first FROM (
    SELECT row, key, min(row) OVER (PARTITION BY key) AS first FROM import_rows) d
WHERE row > first ORDER BY row
"""
_DROP_REPEATS = """
DELETE FROM import_rows WHERE row IN (
    SELECT row FROM (SELECT row, min(row) OVER (PARTITION BY key) AS first FROM import_rows) d
    WHERE row > first)
"""
_KEYS = "SELECT key FROM import_rows WHERE ok ORDER BY row"
_IMPORTED = """
SELECT count(*) FROM import_rows r JOIN items it ON it.project_id = $1 AND it.key = r.key WHERE r.ok
"""
_LABELED = """
SELECT r.annotation, r.confidence, it.id, it.decided_by
FROM import_rows r JOIN items it ON it.project_id = $1 AND it.key = r.key
WHERE r.ok AND r.annotation IS NOT NULL ORDER BY r.row
"""


@dataclass
class _ErrorLog:
    """Every row error counted, the first MAX_REPORTED_ERRORS (by row) kept."""

    found: int = 0
    _kept: list[tuple[int, int, RowError]] = field(default_factory=list)

    def add(self, errors: Iterable[RowError], first: int = 1) -> None:
        """Add one row's errors; `first` orders them among that row's others."""
        for n, e in enumerate(errors, start=first):
            self.found += 1
            self._kept.append((e.row, n, e))
        if len(self._kept) >= 2 * MAX_REPORTED_ERRORS:
            self._kept.sort(key=lambda k: k[:2])
            del self._kept[MAX_REPORTED_ERRORS:]

    def reported(self) -> list[dict[str, Any]]:
        self._kept.sort(key=lambda k: k[:2])
        return reported(ImportPlan([], [e for _, _, e in self._kept], 0))


async def import_table_file(db: Database, settings: Settings, pid: int, user_id: int,
                            binding: dict[str, Any], task_type: str, path: Path, filename: str,
                            opts: ImportOptions, progress: Progress | None = None, *,
                            check: Check | None = None) -> dict[str, Any]:
    """Register a table's images as items and write their labels, in one transaction under
    the project row lock and the ingest lock; `check` runs first under the project lock.
    422 (bad_table, or the bad rows) with nothing changed unless `opts.accept_partial`."""
    mapping = ColumnMapping(opts.mapping.image, opts.mapping.category, opts.mapping.confidence)
    try:
        fmt = detect_format(filename, opts.format)
    except TabularError as exc:
        raise Unprocessable(str(exc), code="bad_table") from None
    local_root = await _local_root(settings, pid, binding)
    report = Reporter(progress)
    log = _ErrorLog()
    async with import_transaction(db, pid, check) as conn:
        label_index = LabelIndex.from_rows(await conn.fetch(_LABEL_ROWS, pid))
        planner = _RowPlanner(mapping, task_type, label_index, image_resolver(binding, local_root),
                              first_row=None)
        await conn.execute(_STAGING)
        try:
            total = await _stage_rows(conn, path, fmt, mapping, planner, log, report)
        except TabularError as exc:
            raise Unprocessable(str(exc), code="bad_table") from None
        async for row in _fetch_rows(conn, _REPEATS):
            log.add([RowError(row["row"], mapping.image, duplicate(row["key"], row["first"]))], first=0)
        await conn.execute(_DROP_REPEATS)
        if log.found and not opts.accept_partial:
            raise Unprocessable(
                f"{log.found} of {total} rows have errors; nothing was imported "
                "(send accept_partial=true to import the valid rows)",
                code="rows_invalid", details={"errors": log.reported(), "total": total})
        keys = [r["key"] for r in await conn.fetch(_KEYS)]
        result = await ingest.register_keys(conn, pid, settings.max_items_per_project, keys,
                                            kind="import")
        del keys
        imported: int = await conn.fetchval(_IMPORTED, pid)
        applied = await _write_labels(conn, pid, user_id, opts.labels_as, imported, report)
    await report(imported, imported, force=True)
    return {
        "rows": total,
        "imported": imported,
        "labeled": applied.labeled,
        "prelabeled": applied.prelabeled,
        "kept_human_labels": applied.kept_human_labels,
        "errors": log.reported(),
        "ingest": result.to_json(),
    }


async def _stage_rows(conn: asyncpg.Connection, path: Path, fmt: Format, mapping: ColumnMapping,
                      planner: _RowPlanner, log: _ErrorLog, report: Reporter) -> int:
    """Check the file's rows on a thread, COPY those with an image key into import_rows and
    log the errors; return how many data rows the file has."""
    if planner.task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {planner.task_type!r}")

    def checked() -> Iterator[Checked]:
        yield from _checked(_file_rows(path, fmt, mapping, MAX_ROWS), mapping, planner)

    total = 0
    async for batch in batches_in_thread(checked, BATCH):
        staged = []
        for number, key, row, errors in batch:
            log.add(errors)
            if key is not None:
                staged.append((number, key, row and row.annotation, row and row.confidence,
                               row is not None))
        if staged:
            await conn.copy_records_to_table("import_rows", records=staged)
        total = batch[-1][0]
        await report(total, None)
    return total


async def _write_labels(conn: asyncpg.Connection, pid: int, user_id: int,
                        labels_as: imported_labels.LabelsAs, imported: int,
                        report: Reporter) -> imported_labels.Applied:
    applied = imported_labels.Applied()
    done = 0
    async for rows in _fetch_chunks(conn, _LABELED, pid):
        applied.add(await imported_labels.apply(conn, user_id, labels_as, (
            imported_labels.Labeled(r, r["annotation"], r["confidence"]) for r in rows)))
        done += len(rows)
        await report(done, imported)
    return applied


async def _fetch_chunks(conn: asyncpg.Connection, query: str,
                        *args: Any) -> AsyncIterator[list[asyncpg.Record]]:
    cursor = await conn.cursor(query, *args)
    while rows := await cursor.fetch(WRITE_BATCH):
        yield rows


async def _fetch_rows(conn: asyncpg.Connection, query: str, *args: Any) -> AsyncIterator[asyncpg.Record]:
    async for rows in _fetch_chunks(conn, query, *args):
        for row in rows:
            yield row
