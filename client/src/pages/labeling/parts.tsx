// Pieces every labeling and review screen shares: the label picker (hierarchy, search,
// hotkeys), the autosave indicator, who is here, the instructions and the shortcut sheet.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { flattenLabels, type LabelNode, type Project } from "../../api";
import { labelPalette } from "../../canvas/palette";
import type { LiveDoc, Presence, SyncState } from "../../doc/live";

/** Per-label colours from the distinct palette (canvas/palette.ts), in the order of the
 * labels' ids: a label keeps its colour when others are added or moved. */
export function labelColors(tree: LabelNode[]): (label: number) => string {
  const map = labelPalette(flattenLabels(tree).map((n) => n.id));
  return (label: number) => map.get(label) ?? "#9ca3af";
}

export function labelNames(tree: LabelNode[]): (label: number) => string {
  const map = new Map(flattenLabels(tree).map((n) => [n.id, n.path]));
  return (label: number) => map.get(label) ?? `#${label}`;
}

export function LabelPicker({ tree, current, onPick, color, active }: {
  tree: LabelNode[]; current: number[]; onPick: (id: number) => void; color: (id: number) => string;
  active?: number | null;
}) {
  const [query, setQuery] = useState("");
  const flat = useMemo(() => flattenLabels(tree), [tree]);
  const q = query.trim().toLowerCase();
  const shown = q ? flat.filter((n) => n.path.toLowerCase().includes(q)) : flat;
  return (
    <div class="card">
      <h3 style="margin-top:0">Labels</h3>
      <input type="search" placeholder="Type to search labels" value={query} data-testid="label-search"
        onInput={(e) => setQuery(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && shown.length > 0) onPick(shown[0].id);
          e.stopPropagation();
        }} />
      <div class="labels" style="margin-top:6px">
        {shown.map((n) => (
          <button key={n.id} class={current.includes(n.id) || active === n.id ? "active" : ""}
            style={{ paddingLeft: `${8 + (q ? 0 : (n.depth - 1) * 14)}px` }}
            data-testid={`label-${n.path}`} onClick={() => onPick(n.id)}
            title={n.hotkey ? `${n.path} (key ${n.hotkey.toUpperCase()})` : n.path}>
            <span><span class="swatch" data-color={color(n.id)} style={{ background: color(n.id) }} />
              {q ? n.path : n.name}</span>
            {n.hotkey && <span class="key" data-testid="hotkey">{n.hotkey.toUpperCase()}</span>}
          </button>
        ))}
        {shown.length === 0 && <p class="muted">No label matches.</p>}
      </div>
    </div>
  );
}

const SYNC_TEXT: Record<SyncState, string> = { synced: "Saved", syncing: "Saving…", offline: "Offline — edits kept" };

export function SyncBadge({ state }: { state: SyncState }) {
  return <span class={`syncstate ${state}`} data-testid="sync-state" data-state={state}>{SYNC_TEXT[state]}</span>;
}

export function People({ people }: { people: Presence[] }) {
  if (people.length === 0) return null;
  return (
    <div class="people" data-testid="people">
      {people.map((p) => <span class="person" style={{ background: p.user.color }}>{p.user.name}</span>)}
    </div>
  );
}

/** Why the server closed one of these documents for good (access ended), if it did. */
export function ClosedNotice({ docs }: { docs: (LiveDoc | null)[] }) {
  const reason = docs.find((d) => d?.closedReason)?.closedReason;
  return reason ? <div class="error" role="alert" data-testid="doc-closed">{reason}</div> : null;
}

/** Re-render when any of the live documents changes (content, sync state or presence). */
export function useLive(docs: (LiveDoc | null)[]): number {
  const [version, setVersion] = useState(0);
  useEffect(() => {
    const bump = () => setVersion((v) => v + 1);
    const offs = docs.filter((d): d is LiveDoc => !!d).map((d) => d.subscribe(bump));
    // A document may have connected and synced between its creation and this subscription
    // (its change went to no listener): render once more to show where it stands now.
    bump();
    return () => offs.forEach((off) => off());
  }, docs);
  return version;
}

export function Instructions({ project }: { project: Project }) {
  const { html, url } = project.instructions;
  if (!html && !url) return null;
  return (
    <details class="card instructions" open>
      <summary><strong>Instructions</strong></summary>
      {html && <div dangerouslySetInnerHTML={{ __html: html }} />}
      {url && <p><a href={url} target="_blank" rel="noopener noreferrer">Full labeling guide ↗</a></p>}
    </details>
  );
}

export function ShortcutSheet({ keys, onClose, title = "Keyboard shortcuts" }: {
  keys: [string, string][]; onClose: () => void; title?: string;
}) {
  // A layout effect listens from the moment the sheet is on screen: an Escape pressed right
  // after "?" must close it (a plain effect would start listening only after the next frame).
  useLayoutEffect(() => {
    const on = (e: KeyboardEvent) => e.key === "Escape" && onClose();
    addEventListener("keydown", on);
    return () => removeEventListener("keydown", on);
  }, []);
  return (
    <div class="modal" onClick={onClose}>
      <div class="card" onClick={(e) => e.stopPropagation()} data-testid="shortcuts">
        <h2 style="margin-top:0">{title}</h2>
        <table class="list">
          <tbody>{keys.map(([k, what]) => <tr><td><kbd>{k}</kbd></td><td>{what}</td></tr>)}</tbody>
        </table>
        <p><button onClick={onClose}>Close</button></p>
      </div>
    </div>
  );
}

/** Brightness and contrast (and DICOM window centre/width) controls. */
export function ImageControls({ brightness, contrast, setBrightness, setContrast, dicom, wc, ww, setWindow }: {
  brightness: number; contrast: number; setBrightness: (v: number) => void; setContrast: (v: number) => void;
  dicom?: boolean; wc?: string; ww?: string; setWindow?: (wc: string, ww: string) => void;
}) {
  const [c, setC] = useState(wc ?? "");
  const [w, setW] = useState(ww ?? "");
  return (
    <div class="card">
      <h3 style="margin-top:0">Image</h3>
      <label class="inline">Brightness<input type="range" min="0.2" max="3" step="0.05" value={brightness}
        onInput={(e) => setBrightness(Number(e.currentTarget.value))} /></label>
      <label class="inline">Contrast<input type="range" min="0.2" max="3" step="0.05" value={contrast}
        onInput={(e) => setContrast(Number(e.currentTarget.value))} /></label>
      {dicom && setWindow && (
        <form class="row" onSubmit={(e) => {
          e.preventDefault();
          setWindow(c, w);
        }}>
          <input size={6} placeholder="centre" value={c} onInput={(e) => setC(e.currentTarget.value)} />
          <input size={6} placeholder="width" value={w} onInput={(e) => setW(e.currentTarget.value)} />
          <button type="submit">Window</button>
        </form>
      )}
    </div>
  );
}

/** The label a hotkey picks (keys as the server assigns them: leaves first; see hotkeys.ts). */
export function hotkeyLabel(tree: LabelNode[], key: string): number | null {
  const n = flattenLabels(tree).find((l) => l.hotkey === key);
  return n ? n.id : null;
}

/** A window keydown handler that always sees the latest render's state: effects run only
 * after the next frame, so a listener re-registered in an effect would lag a fast key. */
export function useKeys(handler: (e: KeyboardEvent) => void): void {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    const on = (e: KeyboardEvent) => ref.current(e);
    addEventListener("keydown", on);
    return () => removeEventListener("keydown", on);
  }, []);
}
