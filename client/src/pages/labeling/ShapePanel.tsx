// The shapes of the item beside the canvas, grouped by label: select one, accept or reject a
// suggestion, delete, and hide or lock a shape or all the shapes of a label (the eye and
// the lock; shapeView.ts keeps that in this browser).
import { flattenLabels, type LabelNode } from "../../api";
import { acceptShapes, deleteShapes, type Shape } from "../../doc/annotation";
import type { LiveDoc } from "../../doc/live";
import type { ShapeView, Toggle } from "./shapeView";
import "./shapes.css";

function Icon({ what, on }: { what: Toggle; on: boolean }) {
  // Eye open / struck through; lock closed / open. 16px line icons in the text colour.
  return (
    <svg width="16" height="16" viewBox="0 0 16 16" fill="none" stroke="currentColor" stroke-width="1.5"
      aria-hidden="true">
      {what === "hide" ? (
        <>
          <path d="M1.5 8s2.4-4.5 6.5-4.5S14.5 8 14.5 8 12.1 12.5 8 12.5 1.5 8 1.5 8z" />
          <circle cx="8" cy="8" r="2" />
          {on && <path d="M2.5 13.5l11-11" />}
        </>
      ) : (
        <>
          <rect x="3" y="7" width="10" height="7" rx="1.5" />
          <path d={on ? "M5.5 7V5a2.5 2.5 0 0 1 5 0v2" : "M5.5 7V5a2.5 2.5 0 0 1 5 0"} />
        </>
      )}
    </svg>
  );
}

function ToggleButton({ what, on, name, onClick, testid }: {
  what: Toggle; on: boolean; name: string; onClick: () => void; testid: string;
}) {
  const text = what === "hide" ? (on ? `Show ${name}` : `Hide ${name}`) : (on ? `Unlock ${name}` : `Lock ${name}`);
  return (
    <button class={`icon ${on ? "on" : ""}`} aria-pressed={on} aria-label={text} title={text} data-testid={testid}
      onClick={onClick}><Icon what={what} on={on} /></button>
  );
}

export function ShapePanel({ shapes, tree, view, color, name, selected, select, live, author, readonly = false }: {
  shapes: Shape[]; tree: LabelNode[]; view: ShapeView; color: (label: number) => string;
  name: (label: number) => string; selected: string | null; select: (id: string | null) => void;
  live: LiveDoc | null; author: string;
  /** The document is only shown: no accepting or deleting (hiding and locking are the viewer's own). */
  readonly?: boolean;
}) {
  const editable = live && !readonly ? live : null;
  const models = shapes.filter((s) => s.source === "model");
  const order = flattenLabels(tree).map((n) => n.id);
  const labels = [...new Set(shapes.map((s) => s.label))]
    .sort((a, b) => (order.indexOf(a) + 1 || Infinity) - (order.indexOf(b) + 1 || Infinity));
  const { state } = view;
  const anyOff = Object.values(state).some((v) => v.length > 0);
  return (
    <div class="card">
      <div class="row">
        <h3 style="margin:0">Shapes ({shapes.length})</h3>
        <span class="spacer" />
        {anyOff && <button class="link" data-testid="show-all" onClick={view.reset}>Show and unlock all</button>}
      </div>
      {models.length > 0 && editable && (
        <div class="row" style="margin:6px 0">
          <button onClick={() => acceptShapes(editable.doc, models.map((m) => m.id), author)}>Accept all suggestions</button>
          <button class="danger" onClick={() => deleteShapes(editable.doc, models.map((m) => m.id), author)}>Reject all</button>
        </div>
      )}
      <div class="shapes-list" data-testid="shapes">
        {labels.map((label) => {
          const mine = shapes.filter((s) => s.label === label);
          const labelHidden = state.hiddenLabels.includes(label), labelLocked = state.lockedLabels.includes(label);
          return (
            <div class="shape-group" key={label} data-testid={`shape-group-${name(label)}`}>
              <div class="shape-group-head">
                <span class="swatch" style={{ background: color(label) }} />
                <strong>{name(label)}</strong>
                <span class="muted">{mine.length}</span>
                <span class="spacer" />
                <ToggleButton what="hide" on={labelHidden} name={`all ${name(label)}`} testid="hide-label"
                  onClick={() => view.toggleLabel("hide", label)} />
                <ToggleButton what="lock" on={labelLocked} name={`all ${name(label)}`} testid="lock-label"
                  onClick={() => view.toggleLabel("lock", label)} />
              </div>
              {mine.map((s, i) => {
                const hidden = view.hidden(s.id, s.label), locked = view.locked(s.id, s.label);
                const what = `${name(s.label)} ${i + 1}`;
                return (
                  <div class={`shape ${s.source}${hidden ? " hidden" : ""}`} key={s.id} data-shape-id={s.id}
                    data-hidden={String(hidden)} data-locked={String(locked)}>
                    <span class="swatch" style={{ background: color(s.label) }} />
                    {hidden || locked
                      ? <span class="name" title={hidden ? "hidden" : "locked"}>{name(s.label)}</span>
                      : <a href="#" onClick={(e) => {
                        e.preventDefault();
                        select(s.id);
                      }} style={{ fontWeight: s.id === selected ? 700 : 400 }}>{name(s.label)}</a>}
                    {s.source === "model" && (
                      <span class="muted">{s.confidence != null ? `${Math.round(s.confidence * 100)}%` : "suggested"}</span>)}
                    <span class="spacer" />
                    <ToggleButton what="hide" on={state.hidden.includes(s.id)} name={what} testid="hide-shape"
                      onClick={() => view.toggleShape("hide", s.id)} />
                    <ToggleButton what="lock" on={state.locked.includes(s.id)} name={what} testid="lock-shape"
                      onClick={() => view.toggleShape("lock", s.id)} />
                    {s.source === "model" && editable && !locked && (
                      <button onClick={() => acceptShapes(editable.doc, [s.id], author)}>Accept</button>)}
                    {editable && (
                      <button class="danger" disabled={locked} aria-label={`Delete ${what}`} data-testid="delete-shape"
                        title={locked ? "Locked: unlock it to delete" : `Delete ${what}`}
                        onClick={() => deleteShapes(editable.doc, [s.id], author)}>✕</button>)}
                  </div>
                );
              })}
            </div>
          );
        })}
      </div>
    </div>
  );
}

/** A mask's labels, with the eye and the lock of each: a hidden label's pixels are not drawn,
 * a locked label's pixels are neither painted over nor erased. */
export function MaskLabelPanel({ tree, view, color, name }: {
  tree: LabelNode[]; view: ShapeView; color: (label: number) => string; name: (label: number) => string;
}) {
  const { state } = view;
  const anyOff = state.hiddenLabels.length > 0 || state.lockedLabels.length > 0;
  return (
    <div class="card" data-testid="mask-labels">
      <div class="row">
        <h3 style="margin:0">Mask labels</h3>
        <span class="spacer" />
        {anyOff && <button class="link" data-testid="show-all" onClick={view.reset}>Show and unlock all</button>}
      </div>
      <div class="shapes-list">
        {flattenLabels(tree).map((n) => (
          <div class="shape-group-head" key={n.id} data-testid={`mask-label-${name(n.id)}`}>
            <span class="swatch" style={{ background: color(n.id) }} />
            <span class="name">{name(n.id)}</span>
            <span class="spacer" />
            <ToggleButton what="hide" on={state.hiddenLabels.includes(n.id)} name={`${name(n.id)} pixels`}
              testid="hide-label" onClick={() => view.toggleLabel("hide", n.id)} />
            <ToggleButton what="lock" on={state.lockedLabels.includes(n.id)} name={`${name(n.id)} pixels`}
              testid="lock-label" onClick={() => view.toggleLabel("lock", n.id)} />
          </div>
        ))}
      </div>
    </div>
  );
}
