// A shape's label as a filled tag at its top-left corner: the label's colour behind, black or
// white text (whichever contrasts more) in front, so the name reads on any image. Drawn in
// image pixels inside the stage's transform, sized in screen pixels whatever the zoom.
// The caller chooses colour and text: the labeling tools pass the label's colour and name, a
// reviewer's view passes each labeler's colour and a name of its choosing.
import type { Shape } from "../doc/annotation";
import { textOn } from "./palette";

const FONT_PX = 12;
const PAD_X = 4;
const HEIGHT = 16;

let measurer: CanvasRenderingContext2D | null = null;

/** The width of the text at the tag's font, in screen pixels. */
function textWidth(text: string): number {
  measurer ??= document.createElement("canvas").getContext("2d");
  if (!measurer) return text.length * FONT_PX * 0.6;
  measurer.font = `600 ${FONT_PX}px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif`;
  return measurer.measureText(text).width;
}

export interface TagProps {
  /** The shape's top-left corner, in image pixels. */
  x: number;
  y: number;
  text: string;
  /** The fill; the text takes black or white to suit it unless textColor is given. */
  color: string;
  /** The stage's zoom (View.scale): the tag keeps its size on screen. */
  scale: number;
  textColor?: string;
  testid?: string;
}

/** The tag sits just above the corner, or just inside it where there is no room above. */
export function ShapeTag({ x, y, text, color, scale, textColor, testid = "shape-tag" }: TagProps) {
  const k = 1 / scale;
  const w = (textWidth(text) + 2 * PAD_X) * k, h = HEIGHT * k;
  const top = y - h >= 0 ? y - h : y;
  return (
    <g class="shape-tag" data-testid={testid} pointer-events="none">
      <rect x={x} y={top} width={w} height={h} rx={2 * k} fill={color} />
      <text x={x + PAD_X * k} y={top + h - 4 * k} fill={textColor ?? textOn(color)} font-size={FONT_PX * k}
        font-weight="600" font-family='system-ui, -apple-system, "Segoe UI", Roboto, sans-serif'>{text}</text>
    </g>
  );
}

/** Where a shape's tag goes: the top-left of its bounding box, in image pixels. */
export function tagAnchor(shape: Shape, w: number, h: number): { x: number; y: number } {
  if (shape.kind === "box") return { x: shape.x! * w, y: shape.y! * h };
  const pts = shape.points ?? [];
  let x = Infinity, y = Infinity;
  for (let i = 0; i + 1 < pts.length; i += 2) {
    x = Math.min(x, pts[i]);
    y = Math.min(y, pts[i + 1]);
  }
  return { x: (Number.isFinite(x) ? x : 0) * w, y: (Number.isFinite(y) ? y : 0) * h };
}

/** A read-only shape in one colour with its tag: a labeler's shape in review, say. */
export function TaggedShape({ shape, color, text, scale, w, h, dashed = false, testid }: {
  shape: Shape; color: string; text: string; scale: number; w: number; h: number; dashed?: boolean; testid?: string;
}) {
  const common = { fill: color, "fill-opacity": 0.08, stroke: color, "stroke-width": 2 / scale,
    "stroke-dasharray": dashed ? `${6 / scale} ${4 / scale}` : undefined, "pointer-events": "none" };
  const at = tagAnchor(shape, w, h);
  const pts = shape.points ?? [];
  return (
    <g data-testid={testid}>
      {shape.kind === "box"
        ? <rect x={shape.x! * w} y={shape.y! * h} width={shape.w! * w} height={shape.h! * h} {...common} />
        : <polygon points={pts.reduce((acc, v, i) => acc + (i % 2 ? `,${v * h} ` : `${v * w}`), "")} {...common} />}
      <ShapeTag x={at.x} y={at.y} text={text} color={color} scale={scale} />
    </g>
  );
}
