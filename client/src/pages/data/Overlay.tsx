// A thumbnail (or a larger view) of an item with an annotation drawn over it: boxes and
// polygons in their label's colour with the label's name, classes as chips beneath.
import { mediaUrl } from "../../api";

interface Props {
  pid: number;
  iid: number;
  annotation: any;
  color: (label: number) => string;
  name: (label: number) => string;
  size?: "thumb" | "full";
  alt: string;
}

export function Overlay({ pid, iid, annotation, color, name, size = "thumb", alt }: Props) {
  const shapes: any[] = annotation?.shapes ?? [];
  const classes: number[] = annotation?.classes ?? [];
  return (
    <div class={`dm-overlay ${size}`}>
      <div class="dm-frame">
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
      {(classes.length > 0 || (size === "full" && shapes.length > 0)) && (
        <div class="dm-chips" data-testid="overlay-classes">
          {classes.map((c) => <span key={c} class="dm-chip" style={{ borderColor: color(c) }}>{name(c)}</span>)}
          {size === "full" && shapes.length > 0 && <span class="muted">{shapes.length} shape{shapes.length === 1 ? "" : "s"}</span>}
        </div>
      )}
    </div>
  );
}
