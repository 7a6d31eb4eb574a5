// Taking a labeler's work into the item's final document in one click: their whole annotation
// (it replaces what the final holds) or one of their shapes (added to it). Each is one
// transaction with this tab's edit origin, so one undo takes it back; copied shapes get new
// ids, `source: human` (a person chose them) and `created_by` the reviewer, who wrote them into
// this document (the labeler's own document keeps theirs).
import * as Y from "yjs";
import { LOCAL_EDIT, newShapeId, roots, touch, type Shape } from "../../doc/annotation";

function shapeMap(shape: Shape, author: string): Y.Map<unknown> {
  const geometry = shape.kind === "box"
    ? { x: shape.x, y: shape.y, w: shape.w, h: shape.h }
    : { points: [...shape.points!] };
  const m = new Y.Map<unknown>();
  const fields = { kind: shape.kind, label: shape.label, ...geometry, source: "human", confidence: null,
    created_by: author };
  for (const [k, v] of Object.entries(fields)) m.set(k, v);
  return m;
}

/** Add copies of shapes to the document; returns their new ids. */
export function copyShapes(doc: Y.Doc, shapes: Shape[], author: string): string[] {
  const ids = shapes.map(() => newShapeId());
  doc.transact(() => {
    shapes.forEach((s, i) => roots(doc).shapes.set(ids[i], shapeMap(s, author)));
    touch(doc, author);
  }, LOCAL_EDIT);
  return ids;
}

/** Make the document's shapes exactly copies of these. */
export function replaceShapes(doc: Y.Doc, shapes: Shape[], author: string): void {
  doc.transact(() => {
    const root = roots(doc).shapes;
    for (const id of [...root.keys()]) root.delete(id);
    for (const s of shapes) root.set(newShapeId(), shapeMap(s, author));
    touch(doc, author);
  }, LOCAL_EDIT);
}

/** Make the document's mask the same as another document's (tile size and every tile). */
export function replaceMask(doc: Y.Doc, from: Y.Doc, author: string): void {
  const source = roots(from).mask;
  doc.transact(() => {
    const mask = roots(doc).mask;
    for (const key of [...mask.keys()]) if (!source.has(key)) mask.delete(key);
    source.forEach((value, key) => mask.set(key, value instanceof Uint8Array ? new Uint8Array(value) : value));
    touch(doc, author);
  }, LOCAL_EDIT);
}

/** Make the document's classes exactly these. */
export function replaceClasses(doc: Y.Doc, classes: number[], author: string): void {
  doc.transact(() => {
    const root = roots(doc).classes;
    const wanted = new Set(classes.map(String));
    for (const k of [...root.keys()]) if (!wanted.has(k)) root.delete(k);
    for (const k of wanted) if (root.get(k) !== true) root.set(k, true);
    touch(doc, author);
  }, LOCAL_EDIT);
}
