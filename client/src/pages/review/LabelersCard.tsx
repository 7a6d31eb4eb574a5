// The labelers of a drawing item in review: show or hide each one's shapes, take one's whole
// annotation as the final, or copy any one of their shapes into it, each in one click.
import type { Shape } from "../../doc/annotation";
import { readShapes } from "../../doc/annotation";
import { inkOn } from "./overlay";
import type { Labeler } from "./types";

export function LabelersCard({ labelers, hidden, toggle, name, semantic, onAccept, onCopy }: {
  labelers: Labeler[]; hidden: Set<number>; toggle: (id: number) => void; name: (label: number) => string;
  semantic: boolean; onAccept: (who: Labeler) => void; onCopy: (shape: Shape) => void;
}) {
  return (
    <div class="card review-labelers">
      <h3 style="margin-top:0">Labelers</h3>
      {labelers.length === 0 && <p class="muted">Nobody has labeled this item yet.</p>}
      {labelers.map((b) => {
        const shapes = semantic ? [] : readShapes(b.doc.doc);
        return (
          <div class="labeler-block" data-testid={`labeler-${b.id}`}>
            <div class="row">
              <label class="inline" title="Show on the image">
                <input type="checkbox" checked={!hidden.has(b.id)} onChange={() => toggle(b.id)}
                  data-testid={`show-${b.id}`} />
                <span class="person" style={{ background: b.color, color: inkOn(b.color) }}>{b.name}</span>
              </label>
              <span class="spacer" />
              <button data-testid={`accept-${b.id}`} onClick={() => onAccept(b)}
                title={`Replace the final annotation with ${b.name}'s`}>Use all</button>
            </div>
            {!semantic && (
              <ul class="copy-list">
                {shapes.map((s, i) => (
                  <li>
                    <span class="swatch" style={{ background: b.color }} />{name(s.label)}
                    <span class="muted"> {s.kind}</span>
                    <span class="spacer" />
                    <button class="small" data-testid={`copy-${b.id}-${i}`} onClick={() => onCopy(s)}
                      title="Copy this shape into the final annotation">Copy</button>
                  </li>
                ))}
                {shapes.length === 0 && <li class="muted">no shapes</li>}
              </ul>
            )}
          </div>
        );
      })}
    </div>
  );
}
