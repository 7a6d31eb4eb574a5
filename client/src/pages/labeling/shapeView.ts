// Which shapes this person has hidden or locked on an item: their own view of the work, not
// part of it. It is kept in this browser (localStorage, per live document), never in the
// shared document: hiding a shape to see what lies under it must not hide it for the
// collaborators, nor reach the submitted annotation. A shape is hidden (or locked) when it is
// itself, or when its label is; a reload of the same item finds the view as it was left.
import { useState } from "preact/hooks";

export interface ShapeViewState {
  hidden: string[];
  locked: string[];
  hiddenLabels: number[];
  lockedLabels: number[];
}

const PREFIX = "colabel.view.";
// Views of items long gone are dropped, oldest first, past this many documents.
const KEEP = 200;
const EMPTY: ShapeViewState = { hidden: [], locked: [], hiddenLabels: [], lockedLabels: [] };

function load(room: string): ShapeViewState {
  try {
    const raw = JSON.parse(localStorage.getItem(PREFIX + room) ?? "null");
    if (!raw || typeof raw !== "object") return EMPTY;
    const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x) => typeof x === "string") : []);
    const numbers = (v: unknown) => (Array.isArray(v) ? v.filter((x) => typeof x === "number") : []);
    return { hidden: strings(raw.hidden), locked: strings(raw.locked), hiddenLabels: numbers(raw.hiddenLabels),
      lockedLabels: numbers(raw.lockedLabels) };
  } catch {
    return EMPTY;
  }
}

function save(room: string, state: ShapeViewState): void {
  const empty = Object.values(state).every((v) => v.length === 0);
  try {
    if (empty) localStorage.removeItem(PREFIX + room);
    else localStorage.setItem(PREFIX + room, JSON.stringify({ ...state, at: Date.now() }));
    const keys = Object.keys(localStorage).filter((k) => k.startsWith(PREFIX));
    if (keys.length > KEEP) {
      const age = (k: string) => Number(JSON.parse(localStorage.getItem(k) ?? "{}")?.at ?? 0);
      keys.sort((a, b) => age(a) - age(b)).slice(0, keys.length - KEEP).forEach((k) => localStorage.removeItem(k));
    }
  } catch {
    // A full or blocked storage keeps the view for this page only.
  }
}

export type Toggle = "hide" | "lock";

export interface ShapeView {
  state: ShapeViewState;
  hidden: (id: string, label: number) => boolean;
  locked: (id: string, label: number) => boolean;
  toggleShape: (what: Toggle, id: string) => void;
  toggleLabel: (what: Toggle, label: number) => void;
  /** Show and unlock everything. */
  reset: () => void;
}

const flip = <T,>(list: T[], v: T) => (list.includes(v) ? list.filter((x) => x !== v) : [...list, v]);

/** The view of the live document `room` ("project/item/annotator"). */
export function useShapeView(room: string): ShapeView {
  const [current, setCurrent] = useState<{ room: string; state: ShapeViewState }>(() => ({ room, state: load(room) }));
  // Another item: its own view, read before the first render shows it.
  const state = current.room === room ? current.state : load(room);
  const update = (next: ShapeViewState) => {
    save(room, next);
    setCurrent({ room, state: next });
  };
  return {
    state,
    hidden: (id, label) => state.hidden.includes(id) || state.hiddenLabels.includes(label),
    locked: (id, label) => state.locked.includes(id) || state.lockedLabels.includes(label),
    toggleShape: (what, id) => update(what === "hide" ? { ...state, hidden: flip(state.hidden, id) }
      : { ...state, locked: flip(state.locked, id) }),
    toggleLabel: (what, label) => update(what === "hide" ? { ...state, hiddenLabels: flip(state.hiddenLabels, label) }
      : { ...state, lockedLabels: flip(state.lockedLabels, label) }),
    reset: () => update(EMPTY),
  };
}
