// Box and polygon tools on the live document: draw, select, move, resize, change label,
// delete; for polygons also drag, insert (double-click an edge) and delete (right-click)
// vertices. Model prelabels are drawn dashed with their confidence. Each shape carries its
// label as a filled tag (tag.tsx). Shapes the caller marks locked are drawn but cannot be
// selected, moved or edited; shapes it hides it simply leaves out of `shapes`.
import type { ComponentChildren } from "preact";
import { useRef, useState } from "preact/hooks";
import type * as Y from "yjs";
import { addShape, updateShape, type Shape } from "../doc/annotation";
import type { Point, PointerKind, View } from "./Stage";
import { ShapeTag, tagAnchor } from "./tag";

export type ShapeTool = "select" | "box" | "polygon" | "pan";

interface Drag {
  id: string;
  mode: "move" | "nw" | "ne" | "sw" | "se" | "vertex";
  vertex?: number;
  start: Point;
  orig: Shape;
}

const clamp = (v: number) => Math.min(1, Math.max(0, v));

export function useShapeTools(opts: {
  doc: Y.Doc | null; shapes: Shape[]; tool: ShapeTool; label: number | null; author: string;
  size: { w: number; h: number } | null; selected: string | null; setSelected: (id: string | null) => void;
  color: (label: number) => string; labelName: (label: number) => string; readonly?: boolean;
  /** Shapes that stay where they are: not selectable, movable or editable (default: none). */
  locked?: (id: string) => boolean;
}) {
  const { doc, shapes, tool, size, author } = opts;
  const locked = opts.locked ?? (() => false);
  const [draft, setDraft] = useState<Point[] | null>(null); // box: [start, end]; polygon: points
  const [hover, setHover] = useState<Point | null>(null);
  const drag = useRef<Drag | null>(null);
  const [preview, setPreview] = useState<Shape | null>(null);

  const norm = (p: Point): Point => (size ? { x: clamp(p.x / size.w), y: clamp(p.y / size.h) } : p);
  const W = size?.w ?? 1, H = size?.h ?? 1;

  const finishPolygon = (pts: Point[]) => {
    if (!doc || opts.label == null || pts.length < 3) return;
    // The new shape is not selected: the next number key chooses the label of the next
    // shape, and must not silently relabel this one.
    addShape(doc, { kind: "polygon", label: opts.label, points: pts.flatMap((p) => [p.x, p.y]) }, author);
    setDraft(null);
  };

  const hitHandle = (p: Point, view: View): Drag | null => {
    const tol = 8 / view.scale;
    const sel = shapes.find((s) => s.id === opts.selected);
    if (!sel || locked(sel.id)) return null;
    if (sel.kind === "box") {
      const x0 = sel.x! * W, y0 = sel.y! * H, x1 = (sel.x! + sel.w!) * W, y1 = (sel.y! + sel.h!) * H;
      const corners: [Drag["mode"], number, number][] = [["nw", x0, y0], ["ne", x1, y0], ["sw", x0, y1], ["se", x1, y1]];
      for (const [mode, cx, cy] of corners) {
        if (Math.abs(p.x - cx) <= tol && Math.abs(p.y - cy) <= tol) return { id: sel.id, mode, start: p, orig: sel };
      }
    } else {
      const pts = sel.points!;
      for (let i = 0; i < pts.length; i += 2) {
        if (Math.abs(p.x - pts[i] * W) <= tol && Math.abs(p.y - pts[i + 1] * H) <= tol) {
          return { id: sel.id, mode: "vertex", vertex: i / 2, start: p, orig: sel };
        }
      }
    }
    return null;
  };

  const inside = (s: Shape, p: Point): boolean => {
    if (s.kind === "box") {
      return p.x >= s.x! * W && p.x <= (s.x! + s.w!) * W && p.y >= s.y! * H && p.y <= (s.y! + s.h!) * H;
    }
    const pts = s.points!;
    let hit = false;
    for (let i = 0, j = pts.length - 2; i < pts.length; j = i, i += 2) {
      const xi = pts[i] * W, yi = pts[i + 1] * H, xj = pts[j] * W, yj = pts[j + 1] * H;
      if ((yi > p.y) !== (yj > p.y) && p.x < ((xj - xi) * (p.y - yi)) / (yj - yi) + xi) hit = !hit;
    }
    return hit;
  };

  const moved = (d: Drag, p: Point): Shape => {
    const dx = (p.x - d.start.x) / W, dy = (p.y - d.start.y) / H;
    const o = d.orig;
    if (o.kind === "polygon") {
      const pts = [...o.points!];
      if (d.mode === "vertex") {
        pts[d.vertex! * 2] = clamp(pts[d.vertex! * 2] + dx);
        pts[d.vertex! * 2 + 1] = clamp(pts[d.vertex! * 2 + 1] + dy);
      } else {
        const xs = pts.filter((_, i) => i % 2 === 0), ys = pts.filter((_, i) => i % 2 === 1);
        const ddx = Math.min(Math.max(dx, -Math.min(...xs)), 1 - Math.max(...xs));
        const ddy = Math.min(Math.max(dy, -Math.min(...ys)), 1 - Math.max(...ys));
        for (let i = 0; i < pts.length; i += 2) {
          pts[i] += ddx;
          pts[i + 1] += ddy;
        }
      }
      return { ...o, points: pts };
    }
    let x0 = o.x!, y0 = o.y!, x1 = o.x! + o.w!, y1 = o.y! + o.h!;
    if (d.mode === "move") {
      const ddx = Math.min(Math.max(dx, -x0), 1 - x1), ddy = Math.min(Math.max(dy, -y0), 1 - y1);
      x0 += ddx; x1 += ddx; y0 += ddy; y1 += ddy;
    } else {
      if (d.mode.includes("w")) x0 = clamp(x0 + dx);
      if (d.mode.includes("e")) x1 = clamp(x1 + dx);
      if (d.mode.includes("n")) y0 = clamp(y0 + dy);
      if (d.mode.includes("s")) y1 = clamp(y1 + dy);
    }
    return { ...o, x: Math.min(x0, x1), y: Math.min(y0, y1), w: Math.abs(x1 - x0), h: Math.abs(y1 - y0) };
  };

  const onPointer = (kind: PointerKind, p: Point, e: PointerEvent, view: View): boolean => {
    if (!doc || !size || tool === "pan" || opts.readonly) return false;
    if (tool === "box") {
      if (kind === "down") {
        setDraft([p, p]);
        return true;
      }
      if (kind === "move") {
        setHover(p);
        if (draft) setDraft([draft[0], p]);
        return true;
      }
      if (draft) {
        const a = norm(draft[0]), b = norm(p);
        const w = Math.abs(b.x - a.x), h = Math.abs(b.y - a.y);
        // A drag shorter than a few screen pixels is a click, however far the image is zoomed.
        if (w * W * view.scale >= 4 && h * H * view.scale >= 4 && opts.label != null) {
          addShape(doc, { kind: "box", label: opts.label, x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), w, h }, author);
        }
        setDraft(null);
      }
      return true;
    }
    if (tool === "polygon") {
      if (kind === "move") {
        setHover(p);
        return !!draft;
      }
      if (kind === "down") {
        const pts = draft ?? [];
        const first = pts[0];
        if (first && pts.length >= 3 && Math.hypot((p.x - first.x * W), (p.y - first.y * H)) * view.scale < 10) {
          finishPolygon(pts);
        } else setDraft([...pts, norm(p)]);
        return true;
      }
      return true;
    }
    // select
    if (kind === "down") {
      const handle = hitHandle(p, view);
      if (handle) {
        if (e.button === 2 && handle.mode === "vertex" && handle.orig.points!.length > 6) {
          const pts = [...handle.orig.points!];
          pts.splice(handle.vertex! * 2, 2);
          updateShape(doc, handle.id, { points: pts }, author);
          return true;
        }
        drag.current = handle;
        return true;
      }
      const hit = [...shapes].reverse().find((s) => !locked(s.id) && inside(s, p));
      opts.setSelected(hit?.id ?? null);
      if (hit) {
        drag.current = { id: hit.id, mode: "move", start: p, orig: hit };
        return true;
      }
      return false;
    }
    const d = drag.current;
    if (!d) return false;
    if (kind === "move") {
      setPreview(moved(d, p));
      return true;
    }
    const result = moved(d, p);
    drag.current = null;
    setPreview(null);
    if (Math.abs(p.x - d.start.x) + Math.abs(p.y - d.start.y) > 0.5) {
      const { id: _id, ...fields } = result;
      updateShape(doc, d.id, result.kind === "box" ? { x: fields.x, y: fields.y, w: fields.w, h: fields.h }
        : { points: fields.points }, author);
    }
    return true;
  };

  /** Nearest edge of a polygon to p: [index of the edge's first vertex, distance in image pixels]. */
  const nearestEdge = (pts: number[], p: Point): [number, number] => {
    let best = -1, bestD = Infinity;
    for (let i = 0; i < pts.length; i += 2) {
      const j = (i + 2) % pts.length;
      const ax = pts[i] * W, ay = pts[i + 1] * H, bx = pts[j] * W, by = pts[j + 1] * H;
      const t = Math.max(0, Math.min(1, ((p.x - ax) * (bx - ax) + (p.y - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2 || 1)));
      const d = Math.hypot(p.x - (ax + t * (bx - ax)), p.y - (ay + t * (by - ay)));
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    }
    return [best, bestD];
  };

  /** Double-click on a polygon's edge inserts a vertex there: on the selected polygon's
   * nearest edge, or on any polygon's edge within a few screen pixels (a polygon just drawn
   * is not selected, and its edges can be refined straight away). */
  const onDoubleClick = (p: Point, view: View) => {
    if (!doc || !size) return;
    if (tool === "polygon" && draft && draft.length >= 3) {
      finishPolygon(draft);
      return;
    }
    const polygons = shapes.filter((s) => s.kind === "polygon" && !locked(s.id));
    const sel = polygons.find((s) => s.id === opts.selected);
    let target: [Shape, number] | null = sel ? [sel, nearestEdge(sel.points!, p)[0]] : null;
    if (!target) {
      let bestD = 10 / view.scale;
      for (const s of polygons) {
        const [edge, d] = nearestEdge(s.points!, p);
        if (d <= bestD) {
          bestD = d;
          target = [s, edge];
        }
      }
    }
    if (!target) return;
    const [shape, edge] = target;
    const n = norm(p);
    const next = [...shape.points!];
    next.splice(edge + 2, 0, n.x, n.y);
    updateShape(doc, shape.id, { points: next }, author);
    // The two clicks of the double-click started a polygon of their own; drop it.
    if (tool === "polygon" && draft && draft.length <= 2) setDraft(null);
  };

  const cancelDraft = () => setDraft(null);
  const closeDraft = () => draft && finishPolygon(draft);

  const overlay = (view: View): ComponentChildren => {
    const sw = 2 / view.scale;
    const shown = shapes.map((s) => (preview && preview.id === s.id ? preview : s));
    return (
      <g>
        {shown.map((s) => {
          const color = opts.color(s.label);
          const model = s.source === "model";
          const sel = s.id === opts.selected;
          const common = { stroke: color, "stroke-width": sel ? sw * 1.8 : sw, fill: color, "fill-opacity": sel ? 0.2 : 0.08,
            "stroke-dasharray": model ? `${6 / view.scale} ${4 / view.scale}` : undefined, "data-shape": s.id,
            "data-locked": locked(s.id) ? "true" : undefined };
          const text = `${opts.labelName(s.label)}${model && s.confidence != null ? ` ${(s.confidence * 100).toFixed(0)}%` : ""}`;
          const at = tagAnchor(s, W, H);
          const tag = <ShapeTag x={at.x} y={at.y} text={text} color={color} scale={view.scale} />;
          if (s.kind === "box") {
            const x = s.x! * W, y = s.y! * H, w = s.w! * W, h = s.h! * H;
            return (
              <g key={s.id}>
                <rect x={x} y={y} width={w} height={h} {...common} />
                {tag}
                {sel && [[x, y], [x + w, y], [x, y + h], [x + w, y + h]].map(([cx, cy]) => (
                  <rect x={cx - 4 / view.scale} y={cy - 4 / view.scale} width={8 / view.scale} height={8 / view.scale}
                    fill="#fff" stroke={color} stroke-width={sw / 2} />
                ))}
              </g>
            );
          }
          const pts = s.points!;
          const d = pts.reduce((acc, v, i) => acc + (i % 2 === 0 ? `${i ? " L" : "M"}${v * W}` : ` ${v * H}`), "") + " Z";
          return (
            <g key={s.id}>
              <path d={d} {...common} />
              {tag}
              {sel && pts.map((v, i) => (i % 2 === 0 ? (
                <circle cx={v * W} cy={pts[i + 1] * H} r={4 / view.scale} fill="#fff" stroke={color} stroke-width={sw / 2} />
              ) : null))}
            </g>
          );
        })}
        {draft && tool === "box" && (
          <rect x={Math.min(draft[0].x, draft[1].x)} y={Math.min(draft[0].y, draft[1].y)}
            width={Math.abs(draft[1].x - draft[0].x)} height={Math.abs(draft[1].y - draft[0].y)}
            fill="none" stroke="#fff" stroke-width={sw} stroke-dasharray={`${4 / view.scale}`} />
        )}
        {draft && tool === "polygon" && (
          <g>
            <polyline points={[...draft.map((q) => `${q.x * W},${q.y * H}`), hover ? `${hover.x},${hover.y}` : ""].join(" ")}
              fill="none" stroke="#fff" stroke-width={sw} />
            {draft.map((q, i) => <circle cx={q.x * W} cy={q.y * H} r={(i === 0 ? 6 : 3) / view.scale} fill="#fff" />)}
          </g>
        )}
      </g>
    );
  };

  const cursor = tool === "box" || tool === "polygon" ? "crosshair" : tool === "pan" ? "grab" : "default";
  return { onPointer, onDoubleClick, overlay, cursor, cancelDraft, closeDraft, drafting: !!draft };
}
