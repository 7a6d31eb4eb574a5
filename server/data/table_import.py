"""MLTable import: table rows (read by table_files.py) that name images and may carry labels.

The category cell follows the Azure ML AutoML image schema. Multiclass takes one label; multilabel takes a
JSON array of labels or a string of labels separated by ';' (a cell starting with '[' is read as JSON, so a
label whose name contains ';' needs the array form); bbox takes `[{"label", "topX", "topY", "bottomX",
"bottomY", "isCrowd"?}]`; polygon takes `[{"label", "polygon": [[x0, y0, x1, y1, ...], ...]}]`. Labels are
full paths ("Animal/Cat") or bare names where only one label has that name. An empty cell leaves the image
unlabeled; an explicit empty list (`[]`) marks it as having no classes or no shapes.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import asyncpg

from server.data import imported_labels, ingest
from server.data.datastores.base import UnsafeKey
from server.data.datastores.factory import open_datastore
from server.data.datastores.keys import accepted, check_key
from server.data.datastores.local import LocalDatastore
from server.data.table_files import BadRow, Format, TabularError, detect_format, read_columns, read_rows
from server.errors import Unprocessable
from server.projects.label_tree import LabelIndex
from server.settings import Settings

TASK_TYPES = ("multiclass", "multilabel", "bbox", "polygon", "semantic")
MAX_ROWS = 1_000_000
MAX_REPORTED_ERRORS = 1000
_SEMANTIC = "semantic segmentation labels cannot be imported from a table; import masks instead"
_LABEL_ROWS = "SELECT id, parent_id, name FROM labels WHERE project_id = $1 ORDER BY position"
_ITEM_IDS = "SELECT id, key, decided_by FROM items WHERE project_id = $1 AND key = ANY($2::text[])"


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


@dataclass
class TableImport:
    """What an import did: the items its rows name, the labels written and the registration."""

    items: int
    applied: imported_labels.Applied
    ingest: ingest.IngestResult


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
    checked = False
    for number, cells in enumerate(rows, start=1):
        plan.total = number
        if isinstance(cells, BadRow):
            plan.errors.append(RowError(number, "", cells.message))
            continue
        if not checked:
            check_columns(cells, mapping)
            checked = True
        row = planner.plan(number, cells)
        if isinstance(row, ImportRow):
            plan.rows.append(row)
        else:
            plan.errors += row
    return plan


@dataclass
class _RowPlanner:
    """Checks one data row's cells at a time; remembers each image's first row to refuse repeats."""

    mapping: ColumnMapping
    task_type: str
    labels: LabelIndex
    resolve_image: Callable[[str], str]
    first_row: dict[str, int] = field(default_factory=dict)

    def plan(self, number: int, cells: dict[str, Any]) -> ImportRow | list[RowError]:
        """The row to import, or every problem its cells have."""
        errors: list[RowError] = []
        key = self._key(number, cells, errors)
        confidence = self._confidence(number, cells, errors)
        annotation = self._annotation(number, cells, confidence, errors)
        if errors or key is None:
            return errors
        return ImportRow(number, key, annotation, confidence)

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
        if key in self.first_row:
            message = f"duplicate image {key!r}: first seen on row {self.first_row[key]}"
            errors.append(RowError(number, column, message))
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
    columns = read_columns(path, fmt)
    if columns is not None:
        check_columns(columns, mapping)
    rows = read_rows(path, fmt, max_rows, columns=mapping.columns() if fmt == "parquet" else None)
    return plan_import(rows, mapping, task_type, labels, resolve_image)


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


async def plan_staged(db: asyncpg.Pool | asyncpg.Connection, settings: Settings, pid: int,
                      binding: dict[str, Any], task_type: str, path: Path, filename: str,
                      declared_format: str | None, mapping: ColumnMapping, *,
                      accept_partial: bool) -> ImportPlan:
    """Plan an uploaded table's import into a project, off the event loop. TabularError when the
    file as a whole is unusable; 422 listing the bad rows, unless `accept_partial`."""
    local_root = await _local_root(settings, pid, binding)
    label_rows = await db.fetch(_LABEL_ROWS, pid)

    def plan() -> ImportPlan:
        fmt = detect_format(filename, declared_format)
        return plan_file(path, fmt, mapping, task_type, LabelIndex.from_rows(label_rows),
                         image_resolver(binding, local_root), MAX_ROWS)

    result = await asyncio.to_thread(plan)
    if result.errors and not accept_partial:
        raise Unprocessable(
            f"{len(result.errors)} of {result.total} rows have errors; nothing was imported "
            "(send accept_partial=true to import the valid rows)",
            code="rows_invalid", details={"errors": reported(result), "total": result.total},
        )
    return result


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


async def apply(conn: asyncpg.Connection, pid: int, user_id: int, max_items: int,
                labels_as: imported_labels.LabelsAs, plan: ImportPlan) -> TableImport:
    """Register the plan's images as items and write their labels, inside the caller's
    transaction with the project row locked."""
    keys = [r.key for r in plan.rows]
    await ingest.lock_project(conn, pid, wait=True)
    result = await ingest.register_keys(conn, pid, max_items, keys, kind="import")
    items = {r["key"]: r for r in await conn.fetch(_ITEM_IDS, pid, keys)}
    applied = await imported_labels.apply(conn, user_id, labels_as, (
        imported_labels.Labeled(items[row.key], row.annotation, row.confidence)
        for row in plan.rows if row.key in items and row.annotation is not None))
    return TableImport(len(items), applied, result)
