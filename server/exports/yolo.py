"""YOLO: a zip with one text file per labeled image under `labels/` (the item's key with a
.txt extension). Boxes are `class cx cy w h`, polygons (the segmentation variant) `class x0
y0 x1 y1 ...`, all normalized to [0, 1]; class = 0-based position of the label in display
order. `classes.txt` and `data.yaml` name the classes; `provenance.jsonl` says how each
image was decided and by whom. An image labeled with no shapes gets an empty file (a
background image), as YOLO expects."""

from __future__ import annotations

import json
from pathlib import Path

from server.exports.source import Record
from server.exports.writer import Context, ZipExport, renamed


def _num(v: float) -> str:
    return f"{v:.6f}"


class YoloWriter:
    def __init__(self, path: Path, ctx: Context) -> None:
        self.ctx = ctx
        self.zip = ZipExport(path, ctx)

    def write(self, records: list[Record]) -> None:
        for r in records:
            self.zip.note(r)
            if r.final is None:
                continue
            lines = []
            for s in r.final.get("shapes", []):
                cls = self.ctx.labels.position(s["label"])
                if s["kind"] == "box":
                    coords = [s["x"] + s["w"] / 2, s["y"] + s["h"] / 2, s["w"], s["h"]]
                else:
                    coords = s["points"]
                lines.append(" ".join([str(cls), *(_num(v) for v in coords)]) + "\n")
            self.zip.add(f"labels/{renamed(r.key, '.txt')}", "".join(lines))

    def close(self) -> list[str]:
        names = [x.path for x in self.ctx.labels.labels]
        self.zip.add("classes.txt", "".join(f"{n}\n" for n in names))
        # JSON strings are valid YAML scalars, so any label name is quoted safely.
        yaml = f"nc: {len(names)}\nnames:\n" + "".join(f"  {i}: {json.dumps(n, ensure_ascii=False)}\n"
                                                    for i, n in enumerate(names))
        self.zip.add("data.yaml", yaml)
        self.zip.close()
        return []
