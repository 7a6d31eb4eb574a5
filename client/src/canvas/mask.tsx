// Semantic segmentation on the live document: the mask drawn from its tiles in per-class
// colours at a chosen opacity, and the brush / eraser that paint into the tiles.
import { useEffect, useRef } from "preact/hooks";
import type * as Y from "yjs";
import { paintStroke, readTiles, roots, tileSize } from "../doc/annotation";
import type { History } from "../doc/history";
import type { Point, PointerKind, View } from "./Stage";

/** "#rrggbb" or "hsl(...)" to [r, g, b] through a 1x1 canvas (any CSS colour works). */
const rgbCache = new Map<string, [number, number, number]>();
function rgb(color: string): [number, number, number] {
  let v = rgbCache.get(color);
  if (!v) {
    const c = document.createElement("canvas").getContext("2d")!;
    c.fillStyle = color;
    c.fillRect(0, 0, 1, 1);
    const d = c.getImageData(0, 0, 1, 1).data;
    v = [d[0], d[1], d[2]];
    rgbCache.set(color, v);
  }
  return v;
}

export function MaskLayer({ doc, width, height, opacity, color, version }: {
  doc: Y.Doc; width: number; height: number; opacity: number; color: (label: number) => string; version: number;
}) {
  const ref = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    const canvas = ref.current;
    if (!canvas) return;
    const ctx = canvas.getContext("2d")!;
    const img = ctx.createImageData(width, height);
    const size = tileSize(doc);
    for (const [key, values] of readTiles(doc)) {
      const [tx, ty] = key.split(",").map(Number);
      for (let y = 0; y < size; y++) {
        const py = ty * size + y;
        if (py >= height) break;
        for (let x = 0; x < size; x++) {
          const px = tx * size + x;
          if (px >= width) break;
          const label = values[y * size + x];
          if (!label) continue;
          const [r, g, b] = rgb(color(label));
          const o = (py * width + px) * 4;
          img.data[o] = r;
          img.data[o + 1] = g;
          img.data[o + 2] = b;
          img.data[o + 3] = 255;
        }
      }
    }
    ctx.putImageData(img, 0, 0);
  }, [doc, width, height, version]);
  return <canvas class="mask" ref={ref} width={width} height={height} style={{ opacity }} data-testid="mask" />;
}

/** Brush and eraser: strokes are painted as the pointer moves, one transaction per step. */
export function useBrush(opts: {
  doc: Y.Doc | null; size: { w: number; h: number } | null; radius: number; label: number | null;
  erase: boolean; author: string; active: boolean; history?: History;
}) {
  const last = useRef<Point | null>(null);
  const onPointer = (kind: PointerKind, p: Point, _e: PointerEvent, _view: View): boolean => {
    const { doc, size } = opts;
    if (!opts.active || !doc || !size || (!opts.erase && opts.label == null)) return false;
    if (kind === "up") {
      last.current = null;
      opts.history?.endStroke();
      return true;
    }
    if (kind === "move" && !last.current) return false;
    const from = last.current ?? p;
    const steps = Math.max(1, Math.ceil(Math.hypot(p.x - from.x, p.y - from.y) / Math.max(1, opts.radius / 2)));
    const pts: Point[] = [];
    for (let i = 1; i <= steps; i++) pts.push({ x: from.x + ((p.x - from.x) * i) / steps, y: from.y + ((p.y - from.y) * i) / steps });
    if (kind === "down") {
      pts.unshift(p);
      opts.history?.beginStroke(); // the whole stroke is one step to undo
    }
    paintStroke(doc, pts, opts.radius, opts.erase ? 0 : opts.label!, size.w, size.h, opts.author);
    last.current = p;
    return true;
  };
  return { onPointer };
}

export function maskIsEmpty(doc: Y.Doc): boolean {
  return [...roots(doc).mask.keys()].every((k) => k === "tile_size");
}
