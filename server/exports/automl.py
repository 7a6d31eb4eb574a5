"""JSON Lines in the Azure ML AutoML image schema, one line per image, so datasets labeled
here and with the Azure ML labeling tool are interchangeable:

- multiclass: `"label": "path"`, `"label_confidence": [c]`;
- multilabel: `"label": ["path", ...]`, `"label_confidence": [c, ...]`;
- boxes: `"label": [{"label", "topX", "topY", "bottomX", "bottomY", "isCrowd"}]`, normalized;
- polygons: `"label": [{"label", "isCrowd", "polygon": [[x0, y0, x1, y1, ...]]}]`, normalized.

`image_url` is the export's URL prefix followed by the item's key; `image_details` gives
the format and, when known, the size as "<n>px" strings, as AutoML writes them. A
`colabel` object carries provenance (and every labeler's own label, when asked).
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

import orjson

from server.exports.source import Record
from server.exports.writer import Context


class AutoMLWriter:
    def __init__(self, path: Path, ctx: Context) -> None:
        self.ctx = ctx
        self.out = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, records: list[Record]) -> None:
        self.out.write(b"".join(orjson.dumps(self._line(r)) + b"\n" for r in records))

    def _line(self, r: Record) -> dict[str, Any]:
        details: dict[str, Any] = {"format": posixpath.splitext(r.key)[1].lstrip(".").lower()}
        if r.width and r.height:
            details["width"], details["height"] = f"{r.width}px", f"{r.height}px"
        line: dict[str, Any] = {"image_url": self.ctx.image_url_prefix + r.key, "image_details": details}
        confidence = 1.0 if r.agreement is None else round(r.agreement, 4)
        line.update(self.label(r.final, confidence))
        extra: dict[str, Any] = r.provenance()
        if self.ctx.filters.raw_annotations:
            extra["raw_annotations"] = [
                {"labeler": a.labeler, "submitted_at": a.submitted_at.isoformat(),
                 "label": self.label(a.data, 1.0)["label"]} for a in r.raw]
        line["colabel"] = extra
        return line

    def label(self, data: dict[str, Any] | None, confidence: float) -> dict[str, Any]:
        """The `label` (and `label_confidence`) fields for one annotation; empty without one."""
        task, paths = self.ctx.task_type, self.ctx.labels
        data = data or {}
        if task == "multiclass":
            classes = data.get("classes", [])
            if not classes:
                return {"label": None}
            return {"label": paths.path(classes[0]), "label_confidence": [confidence]}
        if task == "multilabel":
            names = [paths.path(c) for c in data.get("classes", [])]
            return {"label": names, "label_confidence": [confidence] * len(names)}
        out: list[dict[str, Any]] = []
        for s in data.get("shapes", []):
            if s["kind"] == "box":
                out.append({"label": paths.path(s["label"]), "topX": s["x"], "topY": s["y"],
                            "bottomX": round(s["x"] + s["w"], 9), "bottomY": round(s["y"] + s["h"], 9),
                            "isCrowd": 0})
            else:
                out.append({"label": paths.path(s["label"]), "isCrowd": 0, "polygon": [s["points"]]})
        return {"label": out}

    def close(self) -> list[str]:
        self.out.close()
        return []
