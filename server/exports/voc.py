"""Pascal VOC: a zip with one XML per image under `Annotations/` (the item's key with a .xml
extension), boxes in 1-based integer pixel corners as the VOC devkit writes them, object
names the labels' full paths; `labels.txt` lists the names and `provenance.jsonl` says how
each image was decided and by whom. Images need a known size."""

from __future__ import annotations

import posixpath
from pathlib import Path

from server.exports.source import Record
from server.exports.writer import Context, Warnings, ZipExport, renamed

NO_SIZE = "have no known size (not probed, or unreadable); no XML was written"


def _el(tag: str, text: str) -> str:
    """An element holding text, written as ElementTree writes it (escaped; empty: self-closed)."""
    if not text:
        return f"<{tag} />"
    if "&" in text or "<" in text or ">" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<{tag}>{text}</{tag}>"


class VocWriter:
    def __init__(self, path: Path, ctx: Context) -> None:
        self.ctx = ctx
        self.zip = ZipExport(path, ctx)
        self.warnings = Warnings()

    def write(self, records: list[Record]) -> None:
        for r in records:
            self.zip.note(r)
            if r.final is None:
                continue
            if not (r.width and r.height):
                self.warnings.add(NO_SIZE, r.key)
                continue
            self.zip.add(f"Annotations/{renamed(r.key, '.xml')}", self._xml(r))

    def _xml(self, r: Record) -> bytes:
        """The image's XML, as ElementTree writes this tree (no indentation), built as text:
        a tree of elements per object took most of the format's time."""
        assert r.width and r.height and r.final is not None
        folder, name = posixpath.split(r.key)
        parts = [f"<?xml version='1.0' encoding='utf-8'?>\n<annotation>{_el('folder', folder)}"
                 f"{_el('filename', name)}{_el('path', r.key)}"
                 f"<source><database>Colabel</database></source><size><width>{r.width}</width>"
                 f"<height>{r.height}</height><depth>3</depth></size><segmented>0</segmented>"]
        for s in r.final.get("shapes", []):
            x0, y0 = round(s["x"] * r.width), round(s["y"] * r.height)
            x1, y1 = round((s["x"] + s["w"]) * r.width), round((s["y"] + s["h"]) * r.height)
            parts.append(f"<object>{_el('name', self.ctx.labels.path(s['label']))}"
                         f"<pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
                         f"<bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{max(x1, x0 + 1)}</xmax>"
                         f"<ymax>{max(y1, y0 + 1)}</ymax></bndbox></object>")
        parts.append("</annotation>")
        return "".join(parts).encode("utf-8")

    def close(self) -> list[str]:
        self.zip.add("labels.txt", "".join(f"{x.path}\n" for x in self.ctx.labels.labels))
        self.zip.close()
        return self.warnings.sentences()
