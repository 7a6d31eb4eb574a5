// Semantic segmentation on the live document: the mask drawn from its tiles in per-class
// colours at a chosen opacity, and the brush / eraser that paint into the tiles.
import { useEffect, useRef } from "preact/hooks";
import type * as Y from "yjs";
import { decodeTile, paintStroke, roots, tileSize } from "../doc/annotation";
import type { History } from "../doc/history";
import type { Point, PointerKind, View } from "./Stage";

/** "#rrggbb" or "hsl(...)" as one little-endian RGBA pixel word, through a 1x1 canvas (any
 * CSS colour works). */
const pixelCache = new Map<string, number>();
function pixel(color: string): number {
  let v = pixelCache.get(color);
  if (v === undefined) {
    const c = document.createElement("canvas").getContext("2d")!;
    c.fillStyle = color;
    c.fillRect(0, 0, 1, 1);
    const d = c.getImageData(0, 0, 1, 1).data;
    v = (255 << 24 | d[2] << 16 | d[1] << 8 | d[0]) >>> 0;
    pixelCache.set(color, v);
  }
  return v;
}

/** The mask in per-class colours, one small canvas per painted tile. It follows the document
 * itself rather than the page's renders, and a change redraws only the tiles it touched: a
 * brush step touches one to four 256-pixel tiles of a 4000×3000 mask (192 tiles). One canvas
 * per tile, not one for the whole mask, because the browser then re-rasterises and uploads
 * only the changed tiles each frame (measured: about 10 ms per brush move against 16 ms with
 * a single 4000×3000 canvas, 100 ms when the whole mask was redrawn at every move).
 * `color` should be a stable function (memoized): a new one redraws everything. */
export function MaskLayer({ doc, width, height, opacity, color }: {
  doc: Y.Doc; width: number; height: number; opacity: number; color: (label: number) => string;
}) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const box = ref.current;
    if (!box) return;
    const { mask } = roots(doc);
    const words = new Map<number, number>();
    const word = (label: number) => {
      let w = words.get(label);
      // "transparent": a label hidden from view is not drawn.
      if (w === undefined) words.set(label, (w = color(label) === "transparent" ? 0 : pixel(color(label))));
      return w;
    };
    const canvases = new Map<string, HTMLCanvasElement>();
    const buffers = new Map<string, ImageData>();
    let size = tileSize(doc);
    const drawTile = (key: string) => {
      const m = /^(\d+),(\d+)$/.exec(key);
      if (!m) return;
      const x0 = Number(m[1]) * size, y0 = Number(m[2]) * size;
      const w = Math.min(size, width - x0), h = Math.min(size, height - y0);
      if (w <= 0 || h <= 0) return;
      const raw = mask.get(key);
      let values: Uint32Array | null = null;
      try {
        if (raw instanceof Uint8Array) values = decodeTile(raw, size);
      } catch {
        values = null; // a tile that breaks the schema is not drawn, as the server skips it
      }
      let canvas = canvases.get(key);
      if (!values) {
        canvas?.remove();
        canvases.delete(key);
        return;
      }
      if (!canvas) {
        canvas = document.createElement("canvas");
        canvas.width = w;
        canvas.height = h;
        canvas.style.left = `${x0}px`;
        canvas.style.top = `${y0}px`;
        box.appendChild(canvas);
        canvases.set(key, canvas);
      }
      const ctx = canvas.getContext("2d")!;
      // One pixel buffer per tile size, reused: a fresh one per brush step is garbage to collect.
      let img = buffers.get(`${w}x${h}`);
      if (!img) buffers.set(`${w}x${h}`, (img = ctx.createImageData(w, h)));
      const out = new Uint32Array(img.data.buffer);
      out.fill(0);
      for (let y = 0; y < h; y++) {
        const row = y * size, at = y * w;
        for (let x = 0; x < w; x++) {
          const label = values[row + x];
          if (label) out[at + x] = word(label);
        }
      }
      ctx.putImageData(img, 0, 0);
    };
    const clear = () => {
      canvases.forEach((c) => c.remove());
      canvases.clear();
    };
    const drawAll = () => {
      clear();
      size = tileSize(doc);
      mask.forEach((_, key) => drawTile(key));
    };
    drawAll();
    const changed = (event: Y.YMapEvent<unknown>) => {
      if (event.keysChanged.has("tile_size")) drawAll();
      else event.keysChanged.forEach(drawTile);
    };
    mask.observe(changed);
    return () => {
      mask.unobserve(changed);
      clear();
    };
  }, [doc, width, height, color]);
  return (
    <div class="mask" ref={ref} style={{ width: `${width}px`, height: `${height}px`, opacity }} data-testid="mask" />
  );
}

/** Brush and eraser: strokes are painted as the pointer moves, one transaction per step. */
export function useBrush(opts: {
  doc: Y.Doc | null; size: { w: number; h: number } | null; radius: number; label: number | null;
  erase: boolean; author: string; active: boolean; history?: History;
  /** Labels whose pixels the brush and the eraser leave as they are (locked). */
  keep?: ReadonlySet<number>;
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
    paintStroke(doc, pts, opts.radius, opts.erase ? 0 : opts.label!, size.w, size.h, opts.author, opts.keep);
    last.current = p;
    return true;
  };
  return { onPointer };
}

export function maskIsEmpty(doc: Y.Doc): boolean {
  return [...roots(doc).mask.keys()].every((k) => k === "tile_size");
}
