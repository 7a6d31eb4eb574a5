"""Semantic masks as a zip: one indexed PNG per labeled image under `masks/` (the item's key
with a .png extension), pixel value = class index, 0 = unlabeled; `classes.csv` maps each
index to the label's id, full path and palette colour. With up to 255 labels the PNGs are
palette images (viewable as colours, read as indices); beyond that, 16-bit grayscale.
`provenance.jsonl` says how each image was decided and by whom."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from server.exports import geometry
from server.exports.source import Record
from server.exports.writer import Context, Warnings, ZipExport, renamed

NO_SIZE = "have no known size (not probed, or unreadable); no mask was written"


def palette(n: int) -> list[tuple[int, int, int]]:
    """Distinct colours for indices 0..n-1 (0 black), the PASCAL VOC bit-interleaving scheme."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


class MasksWriter:
    def __init__(self, path: Path, ctx: Context) -> None:
        self.ctx = ctx
        self.zip = ZipExport(path, ctx)
        self.warnings = Warnings()
        ids = [x.id for x in ctx.labels.labels]
        self.indexed = len(ids) <= 255
        self.colors = palette(len(ids) + 1)
        # label id -> class index, as a sorted lookup for np.searchsorted
        self.ids = np.array(sorted(ids), dtype=np.uint32)
        self.index_of = np.array([ctx.labels.position(int(i)) + 1 for i in self.ids], dtype=np.uint16)

    def write(self, records: list[Record]) -> None:
        for r in records:
            self.zip.note(r)
            mask = (r.final or {}).get("mask")
            if mask is None:
                continue
            if not (r.width and r.height):
                self.warnings.add(NO_SIZE, r.key)
                continue
            values = geometry.mask_from_tiles(mask, r.width, r.height)
            classes = np.zeros(values.shape, dtype=np.uint16)
            labeled = values != 0
            if labeled.any():
                classes[labeled] = self.index_of[np.searchsorted(self.ids, values[labeled])]
            self.zip.add(f"masks/{renamed(r.key, '.png')}", self._png(classes), compress=False)

    def _png(self, classes: npt.NDArray[np.uint16]) -> bytes:
        if self.indexed:
            image = Image.fromarray(classes.astype(np.uint8))
            image.putpalette([v for rgb in self.colors for v in rgb])  # "L" becomes "P"
        else:
            image = Image.fromarray(classes.astype(np.uint16))
        buf = io.BytesIO()
        # Masks are flat regions: zlib's fastest level encodes them 3x faster than its
        # default for files about a third larger (a few kB each).
        image.save(buf, format="PNG", optimize=False, compress_level=1)
        return buf.getvalue()

    def close(self) -> list[str]:
        table = io.StringIO()
        out = csv.writer(table)
        out.writerow(["index", "label_id", "path", "color"])
        out.writerow([0, "", "", "#000000"])
        for i, label in enumerate(self.ctx.labels.labels, start=1):
            r, g, b = self.colors[i]
            out.writerow([i, label.id, label.path, f"#{r:02x}{g:02x}{b:02x}"])
        self.zip.add("classes.csv", table.getvalue())
        self.zip.close()
        return self.warnings.sentences()
