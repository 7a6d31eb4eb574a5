"""What every export format shares: the writer protocol, which formats fit which task types,
and the zip layout of the per-image formats (masks, VOC, YOLO)."""

from __future__ import annotations

import gc
import posixpath
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from server.exports.source import Filters, LabelTable, Record

# Formats and the task types whose labels they can carry.
# The export formats, as request bodies name them (FORMATS says which task types each takes).
Format = Literal["coco", "jsonl", "csv", "masks", "voc", "yolo"]
FORMATS: dict[str, tuple[str, ...]] = {
    "coco": ("multiclass", "multilabel", "bbox", "polygon", "semantic"),
    "jsonl": ("multiclass", "multilabel", "bbox", "polygon"),
    "csv": ("multiclass", "multilabel"),
    "masks": ("semantic",),
    "voc": ("bbox",),
    "yolo": ("bbox", "polygon"),
}
SUFFIX = {"coco": ".json", "jsonl": ".jsonl", "csv": ".csv", "masks": ".zip", "voc": ".zip", "yolo": ".zip"}
MEDIA_TYPE = {"coco": "application/json", "jsonl": "application/jsonl", "csv": "text/csv; charset=utf-8",
              "masks": "application/zip", "voc": "application/zip", "yolo": "application/zip"}


@dataclass(frozen=True)
class Context:
    """Everything a writer needs besides the records."""

    project_name: str
    task_type: str
    labels: LabelTable
    filters: Filters
    image_url_prefix: str


class Writer(Protocol):
    def write(self, records: list[Record]) -> None:
        """Append a batch (items in id order)."""

    def close(self) -> list[str]:
        """Finish the file; return warnings about what could not be written."""


class Warnings:
    """Items a writer had to leave incomplete, counted per reason and turned into sentences."""

    EXAMPLES = 5

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._examples: dict[str, list[str]] = {}

    def add(self, reason: str, key: str) -> None:
        self._counts[reason] = self._counts.get(reason, 0) + 1
        examples = self._examples.setdefault(reason, [])
        if len(examples) < self.EXAMPLES:
            examples.append(key)

    def sentences(self) -> list[str]:
        return [f"{n} item(s) {reason} (e.g. {', '.join(self._examples[reason])})"
                for reason, n in self._counts.items()]


# An export allocates a few dicts and lists per item (its parsed label, the rows written) and
# holds a batch or two of them at once: at the default gen-0 threshold (700) the collector
# runs dozens of times per batch and, as survivors pile up, full collections over the whole
# process heap follow; that took about as long as the export's own work. Nearly all of it
# is freed by reference counting, so collections are made rarer while any export runs.
EXPORT_GC_THRESHOLD = 50_000
_relaxed = {"depth": 0, "saved": 0}


@contextmanager
def relaxed_gc() -> Iterator[None]:
    """Raise the gen-0 collection threshold while an export runs (process-wide: the first
    export to start raises it, the last to finish restores it)."""
    if _relaxed["depth"] == 0:
        _relaxed["saved"] = gc.get_threshold()[0]
        gc.set_threshold(max(EXPORT_GC_THRESHOLD, _relaxed["saved"]), *gc.get_threshold()[1:])
    _relaxed["depth"] += 1
    try:
        yield
    finally:
        _relaxed["depth"] -= 1
        if _relaxed["depth"] == 0:
            gc.set_threshold(_relaxed["saved"], *gc.get_threshold()[1:])


def renamed(key: str, suffix: str) -> str:
    """The item's key with its extension replaced, folders kept: a/b/c.jpg -> a/b/c.txt."""
    root, _ = posixpath.splitext(key)
    return root + suffix


def labels_in(annotation: dict[str, Any] | None, labels: LabelTable) -> dict[str, Any]:
    """An annotation in plain JSON with label ids replaced by their full paths (provenance)."""
    if not annotation:
        return {}
    out = dict(annotation)
    if "classes" in annotation:
        out["classes"] = [labels.path(c) for c in annotation["classes"]]
    if "shapes" in annotation:
        out["shapes"] = [{**s, "label": labels.path(s["label"])} for s in annotation["shapes"]]
    return out


class ZipExport:
    """A zip written entry by entry, with a provenance.jsonl spilled to disk until the end."""

    def __init__(self, path: Path, ctx: Context) -> None:
        self.ctx = ctx
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self._provenance = tempfile.TemporaryFile()

    def add(self, name: str, data: bytes | str, *, compress: bool = True) -> None:
        self.zip.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)

    def note(self, record: Record) -> None:
        line: dict[str, Any] = {"image": record.key, **record.provenance()}
        if self.ctx.filters.raw_annotations:
            line["raw_annotations"] = [
                {"labeler": a.labeler, "submitted_at": a.submitted_at.isoformat(),
                 "annotation": labels_in(a.data, self.ctx.labels)} for a in record.raw]
        self._provenance.write(orjson.dumps(line) + b"\n")

    def close(self) -> None:
        self._provenance.seek(0)
        with self.zip.open("provenance.jsonl", "w", force_zip64=True) as entry:
            while chunk := self._provenance.read(1 << 20):
                entry.write(chunk)
        self._provenance.close()
        self.zip.close()
