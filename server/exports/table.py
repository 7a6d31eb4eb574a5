"""CSV for classification: one row per image.

Columns: `image` (the item's key), `label` (multiclass: the label's full path) or `labels`
(multilabel: a JSON array of full paths, so no separator can clash with a label name),
`confidence` (the labelers' agreement; 1 when one person decided), `decided_by` (single,
consensus, reviewer, import), `decided_by_users` (JSON array), `status`, and with raw
annotations `labeler_annotations` (JSON: each labeler's own labels). UTF-8 without a byte
order mark; the csv module quotes commas, quotes and line breaks in label names.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from server.exports.source import Record
from server.exports.writer import Context


class CsvWriter:
    def __init__(self, path: Path, ctx: Context) -> None:
        self.ctx = ctx
        self.multi = ctx.task_type == "multilabel"
        self.fp = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        self.csv = csv.writer(self.fp)
        header = ["image", "labels" if self.multi else "label", "confidence", "decided_by",
                  "decided_by_users", "status"]
        if ctx.filters.raw_annotations:
            header.append("labeler_annotations")
        self.csv.writerow(header)

    def _paths(self, data: dict[str, Any] | None) -> list[str]:
        return [self.ctx.labels.path(c) for c in (data or {}).get("classes", [])]

    def _labels(self, data: dict[str, Any] | None) -> str:
        paths = self._paths(data)
        if self.multi:
            return json.dumps(paths, ensure_ascii=False)
        return paths[0] if paths else ""

    def write(self, records: list[Record]) -> None:
        rows = []
        for r in records:
            confidence = "" if r.final is None else (1.0 if r.agreement is None else round(r.agreement, 4))
            row: list[Any] = [r.key, self._labels(r.final), confidence, r.decided_by or "",
                              json.dumps(r.decided_by_users, ensure_ascii=False), r.status]
            if self.ctx.filters.raw_annotations:
                row.append(json.dumps([{"labeler": a.labeler, "labels": self._paths(a.data)}
                                       for a in r.raw], ensure_ascii=False))
            rows.append(row)
        self.csv.writerows(rows)

    def close(self) -> list[str]:
        self.fp.close()
        return []
