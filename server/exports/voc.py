"""Pascal VOC: a zip with one XML per image under `Annotations/` (the item's key with a .xml
extension), boxes in 1-based integer pixel corners as the VOC devkit writes them, object
names the labels' full paths; `labels.txt` lists the names and `provenance.jsonl` says how
each image was decided and by whom. Images need a known size."""

from __future__ import annotations

import posixpath
from pathlib import Path
from xml.etree import ElementTree as ET

from server.exports.source import Record
from server.exports.writer import Context, Warnings, ZipExport, renamed

NO_SIZE = "have no known size (not probed, or unreadable); no XML was written"


def _sub(parent: ET.Element, tag: str, text: str | int) -> ET.Element:
    node = ET.SubElement(parent, tag)
    node.text = str(text)
    return node


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
        assert r.width and r.height and r.final is not None
        root = ET.Element("annotation")
        folder, name = posixpath.split(r.key)
        _sub(root, "folder", folder)
        _sub(root, "filename", name)
        _sub(root, "path", r.key)
        _sub(_sub(root, "source", ""), "database", "Colabel")
        size = ET.SubElement(root, "size")
        _sub(size, "width", r.width)
        _sub(size, "height", r.height)
        _sub(size, "depth", 3)
        _sub(root, "segmented", 0)
        for s in r.final.get("shapes", []):
            obj = ET.SubElement(root, "object")
            _sub(obj, "name", self.ctx.labels.path(s["label"]))
            _sub(obj, "pose", "Unspecified")
            _sub(obj, "truncated", 0)
            _sub(obj, "difficult", 0)
            box = ET.SubElement(obj, "bndbox")
            x0, y0 = round(s["x"] * r.width), round(s["y"] * r.height)
            x1, y1 = round((s["x"] + s["w"]) * r.width), round((s["y"] + s["h"]) * r.height)
            _sub(box, "xmin", x0 + 1)
            _sub(box, "ymin", y0 + 1)
            _sub(box, "xmax", max(x1, x0 + 1))
            _sub(box, "ymax", max(y1, y0 + 1))
        data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        return data

    def close(self) -> list[str]:
        self.zip.add("labels.txt", "".join(f"{x.path}\n" for x in self.ctx.labels.labels))
        self.zip.close()
        return self.warnings.sentences()
