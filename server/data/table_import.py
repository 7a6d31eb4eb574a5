"""MLTable import: table rows that name images and may carry labels, from CSV, JSON Lines or Parquet.

The category cell follows the Azure ML AutoML image schema. Multiclass takes one label; multilabel takes a
JSON array of labels or a string of labels separated by ';' (a cell starting with '[' is read as JSON, so a
label whose name contains ';' needs the array form); bbox takes `[{"label", "topX", "topY", "bottomX",
"bottomY", "isCrowd"?}]`; polygon takes `[{"label", "polygon": [[x0, y0, x1, y1, ...], ...]}]`. Labels are
full paths ("Animal/Cat") or bare names where only one label has that name. An empty cell leaves the image
unlabeled; an explicit empty list (`[]`) marks it as having no classes or no shapes.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, cast

from server.projects.label_tree import LabelIndex

Format = Literal["csv", "jsonl", "parquet"]
TASK_TYPES = ("multiclass", "multilabel", "bbox", "polygon", "semantic")
_EXTENSIONS: Mapping[str, Format] = {
    ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"
}
_DECLARED: Mapping[str, Format] = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "parquet": "parquet"}
_BATCH_ROWS = 4096
_SEMANTIC = "semantic segmentation labels cannot be imported from a table; import masks instead"


class TabularError(Exception):
    """A problem with the whole file: unreadable, unknown format, missing mapped column or too many rows."""


class BadRow(dict[str, Any]):
    """A row that could not be read at all; `plan_import` records it as a RowError with an empty column."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


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


def detect_format(filename: str, declared: str | None) -> Format:
    """The file's format: the declared one if given, else by extension."""
    if declared is not None and declared.strip():
        fmt = _DECLARED.get(declared.strip().lower())
        if fmt is None:
            raise TabularError(f"unknown table format {declared!r}; use csv, jsonl or parquet")
        return fmt
    fmt = _EXTENSIONS.get(Path(filename).suffix.lower())
    if fmt is None:
        raise TabularError(
            f"cannot tell the format of {filename!r}; name it .csv, .jsonl, .ndjson or .parquet, "
            "or declare the format"
        )
    return fmt


@contextmanager
def _parquet_file(path: Path) -> Iterator[Any]:
    """pyarrow's Parquet reader, imported on first use: it costs every server process about
    40 MB of memory, and most never read a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as pfile:
            yield pfile
    except pa.ArrowException as e:
        raise TabularError(f"cannot read the parquet file: {e}") from e


def read_columns(path: Path, fmt: Format) -> list[str] | None:
    """The column names: CSV header, Parquet schema or the first JSON Lines object's keys (None if none)."""
    try:
        if fmt == "parquet":
            with _parquet_file(path) as pfile:
                return list(cast(list[str], pfile.schema_arrow.names))
        if fmt == "csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                header = next(csv.reader(f), None)
            if header is None:
                raise TabularError("the CSV file is empty; it needs a header row")
            return header
        first = next((r for r in read_rows(path, fmt, sys.maxsize) if not isinstance(r, BadRow)), None)
        return None if first is None else list(first)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TabularError(f"cannot read the {fmt} file: {e}") from e


def check_columns(columns: Iterable[str], mapping: ColumnMapping) -> None:
    """Raise TabularError naming any mapped column that the file lacks."""
    have = set(columns)
    missing = [c for c in mapping.columns() if c not in have]
    if missing:
        raise TabularError("mapped column(s) not in the file: " + ", ".join(repr(c) for c in missing))


def read_rows(
    path: Path, fmt: Format, max_rows: int, *, columns: Sequence[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Stream the data rows; an unreadable JSON Lines line or ragged CSV row comes out as a BadRow.

    `columns` limits which Parquet columns are read; other formats ignore it.
    """
    count = 0

    def counted() -> None:
        nonlocal count
        count += 1
        if count > max_rows:
            raise TabularError(f"the file has more than {max_rows} rows")

    try:
        if fmt == "parquet":
            with _parquet_file(path) as pfile:
                if pfile.metadata.num_rows > max_rows:
                    raise TabularError(f"the file has more than {max_rows} rows")
                for batch in pfile.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
                    for record in cast(list[dict[str, Any]], batch.to_pylist()):
                        counted()
                        yield record
            return
        with path.open(encoding="utf-8-sig", newline="") as f:
            if fmt == "csv":
                reader = csv.reader(f)
                header = next(reader, None)
                if header is None:
                    raise TabularError("the CSV file is empty; it needs a header row")
                doubled = sorted({c for c in header if c and header.count(c) > 1})
                if doubled:
                    raise TabularError("the header names a column twice: " + ", ".join(map(repr, doubled)))
                for cells in reader:
                    # Spreadsheets export trailing rows of empty cells; they are not data.
                    if not any(c.strip() for c in cells):
                        continue
                    counted()
                    if len(cells) > len(header):
                        # Usually an unquoted comma inside a label name.
                        extra = len(cells) - len(header)
                        yield BadRow(f"the row has {extra} more cell(s) than the header has columns")
                    else:
                        yield dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=True))
                return
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                counted()
                try:
                    obj = json.loads(line)
                except (ValueError, RecursionError) as e:
                    yield BadRow(f"line {number} is not valid JSON: {e}")
                    continue
                yield obj if isinstance(obj, dict) else BadRow(f"line {number} is not a JSON object")
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TabularError(f"cannot read the {fmt} file: {e}") from e


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
    first_row: dict[str, int] = {}
    checked = False
    for number, cells in enumerate(rows, start=1):
        plan.total = number
        if isinstance(cells, BadRow):
            plan.errors.append(RowError(number, "", cells.message))
            continue
        if not checked:
            check_columns(cells, mapping)
            checked = True
        errors: list[RowError] = []
        key: str | None = None
        image = cells.get(mapping.image)
        if not isinstance(image, str) or not image.strip():
            errors.append(RowError(number, mapping.image, f"image must be a non-empty string, not {image!r}"))
        else:
            try:
                key = resolve_image(image.strip())
            except ValueError as e:
                errors.append(RowError(number, mapping.image, str(e)))
        if key is not None and key in first_row:
            message = f"duplicate image {key!r}: first seen on row {first_row[key]}"
            errors.append(RowError(number, mapping.image, message))
        elif key is not None:
            first_row[key] = number
        confidence = None
        if mapping.confidence is not None:
            try:
                confidence = _confidence(cells.get(mapping.confidence))
            except ValueError as e:
                errors.append(RowError(number, mapping.confidence, str(e)))
        annotation = None
        value = cells.get(mapping.category) if mapping.category is not None else None
        if mapping.category is not None and not _empty(value):
            problems: list[str] = []
            try:
                if task_type == "semantic":
                    raise ValueError(_SEMANTIC)
                if task_type in ("multiclass", "multilabel"):
                    annotation = _classes(value, task_type, labels, problems)
                else:
                    annotation = _shapes(value, task_type, number, confidence, labels, problems)
            except ValueError as e:
                problems.append(str(e))
            errors += [RowError(number, mapping.category, p) for p in problems]
        if errors:
            plan.errors += errors
        elif key is not None:
            plan.rows.append(ImportRow(number, key, annotation, confidence))
    return plan


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
