// Drawing labelers' shapes in review, over the image in image pixels (inside the stage's
// transform): each labeler's outlines in that labeler's colour with the label name on a filled
// tag, readable on any image; and the places the consensus could not settle, outlined and
// numbered as the "why" card lists them.
import type { Shape } from "../../doc/annotation";
import type { View } from "../../canvas/Stage";
import type { Place } from "./types";

const TAG_FONT = 12; // screen pixels, whatever the zoom

/** A tag's size in image pixels at this zoom. SVG text cannot be measured before it is drawn;
 * the width fits the UI font's average glyph. */
function tagSize(text: string, view: View): { width: number; height: number } {
  const k = 1 / view.scale;
  return { width: (text.length * TAG_FONT * 0.62 + 8) * k, height: (TAG_FONT + 6) * k };
}

/** Black or white, whichever reads better on a colour given as `hsl(H S% L%)` (or any other
 * colour: white). */
export function inkOn(color: string): string {
  const m = /hsl\(([\d.]+)(?:deg)?[ ,]+([\d.]+)%[ ,]+([\d.]+)%/.exec(color);
  if (!m) return "#fff";
  const [h, s, l] = [Number(m[1]), Number(m[2]) / 100, Number(m[3]) / 100];
  const a = s * Math.min(l, 1 - l);
  const channel = (n: number) => {
    const k = (n + h / 30) % 12;
    const v = l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  const lum = 0.2126 * channel(0) + 0.7152 * channel(8) + 0.0722 * channel(4);
  // Contrast with white (1.05 / (lum + 0.05)) against contrast with black ((lum + 0.05) / 0.05).
  return 1.05 / (lum + 0.05) >= (lum + 0.05) / 0.05 ? "#fff" : "#111";
}

/** A label tag: the text on a filled background in the given colour, its top-left at (x, y) or,
 * where it would leave the image, just inside the shape. */
export function Tag({ x, y, text, color, view }: { x: number; y: number; text: string; color: string; view: View }) {
  const k = 1 / view.scale;
  const { width, height } = tagSize(text, view);
  const top = y - height < 0 ? y : y - height;
  return (
    <g class="tag" pointer-events="none">
      <rect x={x} y={top} width={width} height={height} rx={3 * k} fill={color} stroke="rgba(0,0,0,0.55)"
        stroke-width={k} />
      <text x={x + 4 * k} y={top + height - 5 * k} fill={inkOn(color)} font-size={TAG_FONT * k}
        font-weight="600">{text}</text>
    </g>
  );
}

/** Where each tag goes along its row so that tags of shapes drawn in nearly the same place (two
 * labelers' boxes around one object) sit side by side instead of on top of each other: the x of
 * each tag, by `labeler:shape`. */
export function placeTags(layers: { who: number; shapes: Shape[] }[], name: (label: number) => string, view: View,
  w: number, h: number): Map<string, number> {
  const placed: { x0: number; x1: number; y0: number; y1: number }[] = [];
  const out = new Map<string, number>();
  const gap = 3 / view.scale;
  for (const { who, shapes } of layers) {
    for (const s of shapes) {
      const [ax, ay] = anchor(s, w, h);
      const { width, height } = tagSize(name(s.label), view);
      let x = ax;
      const y0 = ay - height < 0 ? ay : ay - height, y1 = y0 + height;
      for (let moved = true; moved;) {
        moved = false;
        for (const p of placed) {
          if (x < p.x1 && x + width > p.x0 && y0 < p.y1 && y1 > p.y0) {
            x = p.x1 + gap;
            moved = true;
          }
        }
      }
      placed.push({ x0: x, x1: x + width, y0, y1 });
      out.set(`${who}:${s.id}`, x);
    }
  }
  return out;
}

function anchor(s: Shape, w: number, h: number): [number, number] {
  return s.kind === "box" ? [s.x! * w, s.y! * h] : topLeft(s.points!, w, h);
}

/** One labeler's shapes, outlined in their colour, each with its label's name on a tag. */
export function LabelerShapes({ who, shapes, color, name, view, w, h, onPick, tagX }: {
  who: number; shapes: Shape[]; color: string; name: (label: number) => string; view: View; w: number; h: number;
  onPick?: (shape: Shape) => void; tagX?: Map<string, number>;
}) {
  const k = 1 / view.scale;
  return (
    <g data-labeler={who}>
      {shapes.map((s) => {
        const common = {
          stroke: color, "stroke-width": 2.5 * k, fill: color, "fill-opacity": 0.1,
          "stroke-dasharray": s.source === "model" ? `${6 * k} ${4 * k}` : undefined,
          "pointer-events": onPick ? "all" : "none", style: onPick ? { cursor: "copy" } : undefined,
          onPointerDown: onPick ? (e: PointerEvent) => {
            e.stopPropagation();
            onPick(s);
          } : undefined,
        };
        const outline = s.kind === "box"
          ? <rect x={s.x! * w} y={s.y! * h} width={s.w! * w} height={s.h! * h} {...common} />
          : <polygon points={pairs(s.points!, w, h)} {...common} />;
        const [ax, ty] = anchor(s, w, h);
        const tx = tagX?.get(`${who}:${s.id}`) ?? ax;
        return (
          <g key={s.id} data-labeler-shape={s.id} data-label={name(s.label)}>
            {/* A dark halo under the outline keeps it visible on light and busy images alike. */}
            {s.kind === "box"
              ? <rect x={s.x! * w} y={s.y! * h} width={s.w! * w} height={s.h! * h} fill="none" stroke="rgba(0,0,0,0.5)"
                stroke-width={4.5 * k} pointer-events="none" />
              : <polygon points={pairs(s.points!, w, h)} fill="none" stroke="rgba(0,0,0,0.5)" stroke-width={4.5 * k}
                pointer-events="none" />}
            {outline}
            <Tag x={tx} y={ty} text={name(s.label)} color={color} view={view} />
          </g>
        );
      })}
    </g>
  );
}

function pairs(points: number[], w: number, h: number): string {
  const out: string[] = [];
  for (let i = 0; i < points.length; i += 2) out.push(`${points[i] * w},${points[i + 1] * h}`);
  return out.join(" ");
}

function topLeft(points: number[], w: number, h: number): [number, number] {
  let x = Infinity, y = Infinity;
  for (let i = 0; i < points.length; i += 2) {
    x = Math.min(x, points[i] * w);
    y = Math.min(y, points[i + 1] * h);
  }
  return [x, y];
}

const DISPUTE = "#f59e0b";

/** The places a reviewer must settle, outlined around all their boxes and numbered. */
export function DisputedPlaces({ places, view, w, h }: { places: Place[]; view: View; w: number; h: number }) {
  const k = 1 / view.scale;
  const pad = 6 * k;
  return (
    <g pointer-events="none">
      {places.map((p, i) => (
        <g data-testid={`place-${i + 1}`} data-verdict={p.verdict}>
          <rect x={p.x * w - pad} y={p.y * h - pad} width={p.w * w + 2 * pad} height={p.h * h + 2 * pad}
            fill="none" stroke={DISPUTE} stroke-width={3 * k} stroke-dasharray={`${8 * k} ${5 * k}`} />
          {/* The number sits on the top-right corner: the top-left one is where label tags go. */}
          <circle cx={(p.x + p.w) * w + pad} cy={p.y * h - pad} r={10 * k} fill={DISPUTE} stroke="#111" stroke-width={k} />
          <text x={(p.x + p.w) * w + pad} y={p.y * h - pad + 4 * k} text-anchor="middle" font-size={12 * k}
            font-weight="700" fill="#111">{i + 1}</text>
        </g>
      ))}
    </g>
  );
}

/** Semantic review: the mask tiles that still hold undecided pixels, outlined. */
export function UndecidedTiles({ tiles, size, view }: { tiles: Record<string, number>; size: number; view: View }) {
  const k = 1 / view.scale;
  return (
    <g pointer-events="none" data-testid="undecided-tiles">
      {Object.keys(tiles).map((key) => {
        const [tx, ty] = key.split(",").map(Number);
        return <rect x={tx * size} y={ty * size} width={size} height={size} fill={DISPUTE} fill-opacity={0.12}
          stroke={DISPUTE} stroke-width={2 * k} stroke-dasharray={`${6 * k} ${4 * k}`} />;
      })}
    </g>
  );
}
