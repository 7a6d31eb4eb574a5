"""Reading tables for import: CSV, JSON Lines or Parquet, streamed row by row as dicts.

A row that cannot be read (a line that is not a JSON object, a CSV row with more cells than
the header) comes out as a BadRow so the caller can report it and go on; a file that cannot
be read at all raises TabularError.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast

Format = Literal["csv", "jsonl", "parquet"]
_EXTENSIONS: Mapping[str, Format] = {
    ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"
}
_DECLARED: Mapping[str, Format] = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "parquet": "parquet"}
_BATCH_ROWS = 4096


class TabularError(Exception):
    """A problem with the whole file: unreadable, unknown format, missing mapped column or too many rows."""


class BadRow(dict[str, Any]):
    """A row that could not be read at all; `plan_import` records it as a RowError with an empty column."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


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


def read_rows(
    path: Path, fmt: Format, max_rows: int, *, columns: Sequence[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Stream the data rows; an unreadable JSON Lines line or ragged CSV row comes out as a BadRow.

    `columns` limits which Parquet columns are read; other formats ignore it.
    """
    try:
        if fmt == "parquet":
            rows = _parquet_rows(path, max_rows, columns)
        elif fmt == "csv":
            rows = _csv_rows(path)
        else:
            rows = _jsonl_rows(path)
        yield from _at_most(rows, max_rows)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TabularError(f"cannot read the {fmt} file: {e}") from e


def _at_most(rows: Iterator[dict[str, Any]], max_rows: int) -> Iterator[dict[str, Any]]:
    for count, row in enumerate(rows, start=1):
        if count > max_rows:
            raise TabularError(f"the file has more than {max_rows} rows")
        yield row


def _parquet_rows(path: Path, max_rows: int, columns: Sequence[str] | None) -> Iterator[dict[str, Any]]:
    with _parquet_file(path) as pfile:
        # The metadata knows the row count: a file that is too long is refused unread.
        if pfile.metadata.num_rows > max_rows:
            raise TabularError(f"the file has more than {max_rows} rows")
        for batch in pfile.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            yield from cast(list[dict[str, Any]], batch.to_pylist())


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
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
            if len(cells) > len(header):
                # Usually an unquoted comma inside a label name.
                extra = len(cells) - len(header)
                yield BadRow(f"the row has {extra} more cell(s) than the header has columns")
            else:
                yield dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=True))


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as e:
                yield BadRow(f"line {number} is not valid JSON: {e}")
                continue
            yield obj if isinstance(obj, dict) else BadRow(f"line {number} is not a JSON object")
