// A thumbnail (or a larger view) of an item with an annotation drawn over it: boxes and
// polygons in their label's colour with the label's name, classes as chips beneath.
import { mediaUrl } from "../../api";

interface Props {
  pid: number;
  iid: number;
  /** The image's width / height when known: the drawing area is exactly the image's box. */
  aspect: number | null;
  annotation: any;
  color: (label: number) => string;
  name: (label: number) => string;
  size?: "thumb" | "full";
  alt: string;
}

const THUMB = 4 / 3;

/** Where the image sits: a thumbnail's cell is 4:3 and the image is centred in it at its own
 *  aspect; the full view is the image's own box, at most 70% of the window high. */
function frameStyle(size: "thumb" | "full", a: number | null): Record<string, string> {
  if (!a) return {};
  if (size === "full") return { aspectRatio: String(a), width: `min(100%, calc(70vh * ${a}))` };
  const w = a > THUMB ? 100 : (a / THUMB) * 100;
  const h = a > THUMB ? (THUMB / a) * 100 : 100;
  return { position: "absolute", width: `${w}%`, height: `${h}%`, left: `${(100 - w) / 2}%`, top: `${(100 - h) / 2}%` };
}

export function Overlay({ pid, iid, aspect, annotation, color, name, size = "thumb", alt }: Props) {
  const shapes: any[] = annotation?.shapes ?? [];
  const classes: number[] = annotation?.classes ?? [];
  return (
    <div class={`dm-overlay ${size}${aspect ? " sized" : ""}`}>
      <div class="dm-cell">
      <div class="dm-frame" style={frameStyle(size, aspect)}>
        <img src={mediaUrl(pid, iid, { size })} alt={alt} loading="lazy" draggable={false} />
        {shapes.length > 0 && (
          <svg viewBox="0 0 1 1" preserveAspectRatio="none" class="dm-shapes" data-testid="overlay-shapes">
            {shapes.map((s) => {
              const c = color(s.label);
              if (s.kind === "box") {
                return <rect key={s.id} x={s.x} y={s.y} width={s.w} height={s.h} fill={c} fill-opacity={0.12}
                  stroke={c} stroke-width={2} vector-effect="non-scaling-stroke" />;
              }
              const pts: number[] = s.points ?? [];
              const list = [];
              for (let i = 0; i + 1 < pts.length; i += 2) list.push(`${pts[i]},${pts[i + 1]}`);
              return <polygon key={s.id} points={list.join(" ")} fill={c} fill-opacity={0.12} stroke={c}
                stroke-width={2} vector-effect="non-scaling-stroke" />;
            })}
          </svg>
        )}
        {size === "full" && shapes.map((s) => {
          const x = s.kind === "box" ? s.x : (s.points?.[0] ?? 0);
          const y = s.kind === "box" ? s.y : (s.points?.[1] ?? 0);
          return <span key={`t${s.id}`} class="dm-tag" style={{ left: `${x * 100}%`, top: `${y * 100}%`, background: color(s.label) }}>
            {name(s.label)}</span>;
        })}
      </div>
      </div>
      {(classes.length > 0 || (size === "full" && shapes.length > 0)) && (
        <div class="dm-chips" data-testid="overlay-classes">
          {classes.map((c) => <span key={c} class="dm-chip" style={{ borderColor: color(c) }}>{name(c)}</span>)}
          {size === "full" && shapes.length > 0 && <span class="muted">{shapes.length} shape{shapes.length === 1 ? "" : "s"}</span>}
        </div>
      )}
    </div>
  );
}
