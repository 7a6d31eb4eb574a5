// Reading and editing the annotation document's root maps (DESIGN.md "document schema"):
// `classes` label id -> true, `shapes` shape id -> Y.Map {kind, label, x, y, w, h | points,
// source, confidence, created_by}, `mask` "tx,ty" -> RLE bytes plus `tile_size`.
// Geometry is normalized to [0, 1]; mask tiles are in image pixels.
import * as Y from "yjs";

/** The origin of every edit made in this tab. Undo tracks only this origin: updates that come
 * from the server (collaborators, model prelabels, consensus) carry the provider as origin. */
export const LOCAL_EDIT = Symbol("colabel local edit");

export interface Shape {
  id: string;
  kind: "box" | "polygon";
  label: number;
  x?: number;
  y?: number;
  w?: number;
  h?: number;
  points?: number[];
  source: "human" | "model";
  confidence: number | null;
}

export const DEFAULT_TILE = 256;

export const roots = (doc: Y.Doc) => ({
  meta: doc.getMap("meta"),
  classes: doc.getMap<boolean>("classes"),
  shapes: doc.getMap<Y.Map<unknown>>("shapes"),
  mask: doc.getMap<unknown>("mask"),
});

export function readClasses(doc: Y.Doc): number[] {
  const out: number[] = [];
  roots(doc).classes.forEach((v, k) => {
    if (v === true && /^\d+$/.test(k)) out.push(Number(k));
  });
  return out.sort((a, b) => a - b);
}

/** Toggle a class; for multiclass the chosen class replaces any other. */
export function toggleClass(doc: Y.Doc, label: number, single: boolean, author: string): void {
  const { classes } = roots(doc);
  doc.transact(() => {
    const key = String(label);
    const on = classes.get(key) === true;
    if (single) {
      for (const k of [...classes.keys()]) if (k !== key) classes.delete(k);
      if (!on) classes.set(key, true);
    } else if (on) classes.delete(key);
    else classes.set(key, true);
    touch(doc, author);
  }, LOCAL_EDIT);
}

export function setSingleClass(doc: Y.Doc, label: number, author: string): void {
  const { classes } = roots(doc);
  doc.transact(() => {
    for (const k of [...classes.keys()]) if (k !== String(label)) classes.delete(k);
    classes.set(String(label), true);
    touch(doc, author);
  }, LOCAL_EDIT);
}

/** Who changed the document last, and when; every edit and every undo or redo calls it. */
export function touch(doc: Y.Doc, author: string): void {
  const meta = roots(doc).meta;
  meta.set("updated_by", author);
  meta.set("updated_at", new Date().toISOString());
  if (meta.get("status") !== "draft") meta.set("status", "draft");
}

export function readShapes(doc: Y.Doc): Shape[] {
  const out: Shape[] = [];
  roots(doc).shapes.forEach((m, id) => {
    if (!(m instanceof Y.Map)) return;
    const s = m.toJSON() as Omit<Shape, "id">;
    if (s.kind === "box" && [s.x, s.y, s.w, s.h].every((v) => typeof v === "number")) out.push({ ...s, id });
    if (s.kind === "polygon" && Array.isArray(s.points) && s.points.length >= 6) out.push({ ...s, id });
  });
  return out.sort((a, b) => (a.id < b.id ? -1 : 1));
}

export function newShapeId(): string {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

export function addShape(doc: Y.Doc, shape: Omit<Shape, "id" | "source" | "confidence">, author: string): string {
  const id = newShapeId();
  doc.transact(() => {
    const m = new Y.Map<unknown>();
    for (const [k, v] of Object.entries({ ...shape, source: "human", confidence: null, created_by: author })) {
      m.set(k, v);
    }
    roots(doc).shapes.set(id, m);
    touch(doc, author);
  }, LOCAL_EDIT);
  return id;
}

export function updateShape(doc: Y.Doc, id: string, fields: Partial<Shape>, author: string): void {
  const m = roots(doc).shapes.get(id);
  if (!(m instanceof Y.Map)) return;
  doc.transact(() => {
    for (const [k, v] of Object.entries(fields)) if (k !== "id") m.set(k, v);
    touch(doc, author);
  }, LOCAL_EDIT);
}

export function deleteShapes(doc: Y.Doc, ids: string[], author: string): void {
  doc.transact(() => {
    for (const id of ids) roots(doc).shapes.delete(id);
    touch(doc, author);
  }, LOCAL_EDIT);
}

/** Accept model prelabels: they become the labeler's own shapes. */
export function acceptShapes(doc: Y.Doc, ids: string[], author: string): void {
  doc.transact(() => {
    for (const id of ids) {
      const m = roots(doc).shapes.get(id);
      if (m instanceof Y.Map) {
        m.set("source", "human");
        m.set("confidence", null);
      }
    }
    touch(doc, author);
  }, LOCAL_EDIT);
}

// --- mask tiles: LEB128 varint pairs (run length, label id), rows top to bottom -------------

export function rleDecode(data: Uint8Array, n: number): Uint32Array {
  const out = new Uint32Array(n);
  let pos = 0;
  let i = 0;
  const varint = (): number => {
    let value = 0;
    let shift = 0;
    for (;;) {
      if (i >= data.length) throw new Error("truncated RLE");
      const b = data[i++];
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
      shift += 7;
    }
  };
  while (i < data.length) {
    const run = varint();
    const label = varint();
    if (pos + run > n) throw new Error("RLE longer than the tile");
    out.fill(label, pos, pos + run);
    pos += run;
  }
  if (pos !== n) throw new Error("RLE shorter than the tile");
  return out;
}

export function rleEncode(values: Uint32Array): Uint8Array {
  const bytes: number[] = [];
  const push = (v: number) => {
    while (v >= 0x80) {
      bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    bytes.push(v);
  };
  let start = 0;
  for (let i = 1; i <= values.length; i++) {
    if (i === values.length || values[i] !== values[start]) {
      push(i - start);
      push(values[start]);
      start = i;
    }
  }
  return new Uint8Array(bytes);
}

// Decoded tiles by their stored bytes: the brush and the mask layer both need a tile's labels
// at every pointer move, and decoding is most of the cost. Y keeps a value's bytes as the same
// object, so identity is the key; a WeakMap lets replaced tiles go.
const decoded = new WeakMap<Uint8Array, Uint32Array>();

/** A stored tile's labels, decoded once per stored value. Read-only: copy before changing. */
export function decodeTile(raw: Uint8Array, size: number): Uint32Array {
  let values = decoded.get(raw);
  if (!values || values.length !== size * size) {
    values = rleDecode(raw, size * size);
    decoded.set(raw, values);
  }
  return values;
}

export function tileSize(doc: Y.Doc): number {
  const size = roots(doc).mask.get("tile_size");
  return typeof size === "number" ? size : DEFAULT_TILE;
}

/** How many mask tiles hold paint (counted from the keys: decoding them all is slow). */
export function paintedTiles(doc: Y.Doc): number {
  let n = 0;
  roots(doc).mask.forEach((v, k) => {
    if (v instanceof Uint8Array && /^\d+,\d+$/.test(k)) n++;
  });
  return n;
}

/** Every tile as label ids, keyed "tx,ty". */
export function readTiles(doc: Y.Doc): Map<string, Uint32Array> {
  const size = tileSize(doc);
  const out = new Map<string, Uint32Array>();
  roots(doc).mask.forEach((v, k) => {
    if (/^\d+,\d+$/.test(k) && v instanceof Uint8Array) {
      try {
        out.set(k, decodeTile(v, size));
      } catch {
        // a tile that breaks the schema is skipped, as the server does
      }
    }
  });
  return out;
}

/** Paint a disc (label, or 0 to erase) along a stroke of image-pixel points, tile by tile,
 * in one transaction so everyone sees the stroke at once. */
export function paintStroke(doc: Y.Doc, points: { x: number; y: number }[], radius: number, label: number,
  width: number, height: number, author: string, keep?: ReadonlySet<number>): void {
  const { mask } = roots(doc);
  const size = tileSize(doc);
  const tiles = new Map<string, Uint32Array>();
  const tileOf = (tx: number, ty: number): Uint32Array => {
    const key = `${tx},${ty}`;
    let t = tiles.get(key);
    if (!t) {
      const raw = mask.get(key);
      t = raw instanceof Uint8Array ? decodeTile(raw, size).slice() : new Uint32Array(size * size);
      tiles.set(key, t);
    }
    return t;
  };
  // Row by row, each row's span of the disc filled tile by tile: a per-pixel loop with a tile
  // lookup for every pixel is most of a brush step's time at large radii.
  const r2 = radius * radius;
  for (const p of points) {
    const y0 = Math.max(0, Math.floor(p.y - radius)), y1 = Math.min(height - 1, Math.ceil(p.y + radius));
    for (let y = y0; y <= y1; y++) {
      const dy = y + 0.5 - p.y;
      const span2 = r2 - dy * dy;
      if (span2 < 0) continue;
      // Pixels whose centre is within the radius: |x + 0.5 - p.x| <= half.
      const half = Math.sqrt(span2);
      const xa = Math.max(0, Math.ceil(p.x - 0.5 - half)), xb = Math.min(width - 1, Math.floor(p.x - 0.5 + half));
      const ty = Math.floor(y / size), row = (y % size) * size;
      for (let x = xa; x <= xb;) {
        const tx = Math.floor(x / size);
        const end = Math.min(xb, (tx + 1) * size - 1);
        const tile = tileOf(tx, ty), from = row + x - tx * size, to = row + end - tx * size + 1;
        if (!keep?.size) tile.fill(label, from, to);
        else {
          // Pixels of locked labels keep their label: neither painted over nor erased.
          for (let i = from; i < to; i++) if (!keep.has(tile[i])) tile[i] = label;
        }
        x = end + 1;
      }
    }
  }
  doc.transact(() => {
    if (mask.get("tile_size") !== size) mask.set("tile_size", size);
    for (const [key, values] of tiles) {
      if (label === 0 && values.every((v) => v === 0)) mask.delete(key);
      else {
        const raw = rleEncode(values);
        decoded.set(raw, values);
        mask.set(key, raw);
      }
    }
    touch(doc, author);
  }, LOCAL_EDIT);
}

export function bytesToBase64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/** Model suggestions for classes: a class whose value is a confidence (a number) rather than
 * `true` is suggested, not chosen, until the labeler accepts it. */
export function readSuggestions(doc: Y.Doc): { label: number; confidence: number }[] {
  const out: { label: number; confidence: number }[] = [];
  roots(doc).classes.forEach((v, k) => {
    if (typeof v === "number" && /^\d+$/.test(k)) out.push({ label: Number(k), confidence: v });
  });
  return out.sort((a, b) => b.confidence - a.confidence);
}

/** Accept (the suggested classes become chosen) or reject (they go) every suggestion. */
export function resolveSuggestions(doc: Y.Doc, accept: boolean, single: boolean, author: string): void {
  const { classes } = roots(doc);
  const suggested = readSuggestions(doc);
  if (!suggested.length) return;
  doc.transact(() => {
    for (const s of suggested) classes.delete(String(s.label));
    if (accept) {
      if (single) for (const k of [...classes.keys()]) classes.delete(k);
      for (const s of single ? suggested.slice(0, 1) : suggested) classes.set(String(s.label), true);
    }
    touch(doc, author);
  }, LOCAL_EDIT);
}
