// Side-by-side review: each labeler's annotation in its own panel (its own zoom and pan), next
// to the final one being edited. Clicking one of their shapes copies it into the final; the
// panel's button takes their whole annotation.
import { useState } from "preact/hooks";
import { mediaUrl, type Project } from "../../api";
import type { Shape } from "../../doc/annotation";
import { readShapes } from "../../doc/annotation";
import { MaskLayer } from "../../canvas/mask";
import { Stage } from "../../canvas/Stage";
import { DisputedPlaces, LabelerShapes, inkOn } from "./overlay";
import type { Labeler, Place } from "./types";

export function SideBySide({ project, item, labelers, places, name, color, onAccept, onCopy }: {
  project: Project; item: { id: number; key: string }; labelers: Labeler[]; places: Place[];
  name: (label: number) => string; color: (label: number) => string;
  onAccept: (who: Labeler) => void; onCopy: (shape: Shape) => void;
}) {
  return (
    <div class="review-panels" data-testid="side-by-side" style={{ gridTemplateRows: `repeat(${Math.max(1, labelers.length)}, minmax(0, 1fr))` }}>
      {labelers.map((b) => (
        <Panel project={project} item={item} who={b} places={places} name={name} color={color} onAccept={onAccept}
          onCopy={onCopy} />
      ))}
      {labelers.length === 0 && <p class="muted">Nobody has labeled this item yet.</p>}
    </div>
  );
}

function Panel({ project, item, who, places, name, color, onAccept, onCopy }: {
  project: Project; item: { id: number; key: string }; who: Labeler; places: Place[];
  name: (label: number) => string; color: (label: number) => string;
  onAccept: (who: Labeler) => void; onCopy: (shape: Shape) => void;
}) {
  const [size, setSize] = useState<{ w: number; h: number } | null>(null);
  const semantic = project.task_type === "semantic";
  const shapes = semantic ? [] : readShapes(who.doc.doc);
  return (
    <section class="panel" data-testid={`panel-${who.id}`} style={{ borderColor: who.color }}>
      <header class="row">
        <span class="person" style={{ background: who.color, color: inkOn(who.color) }}>{who.name}</span>
        <span class="muted">{semantic ? "mask" : `${shapes.length} shape(s) · click one to copy it`}</span>
        <span class="spacer" />
        <button class="small" data-testid={`panel-accept-${who.id}`} onClick={() => onAccept(who)}>Use all</button>
      </header>
      <div class="panel-stage">
        <Stage src={mediaUrl(project.id, item.id)} label={`${who.name}'s annotation of ${item.key}`} brightness={1}
          contrast={1} onSize={(w, h) => setSize({ w, h })} cursor="grab"
          under={semantic && size ? (
            <MaskLayer doc={who.doc.doc} width={size.w} height={size.h} opacity={0.55} color={color} />
          ) : null}
          overlay={(view, s) => (
            <g>
              <DisputedPlaces places={places} view={view} w={s.w} h={s.h} />
              <LabelerShapes who={who.id} shapes={shapes} color={who.color} name={name} view={view} w={s.w} h={s.h}
                onPick={onCopy} />
            </g>
          )} />
      </div>
    </section>
  );
}
