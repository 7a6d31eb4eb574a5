// Undo and redo on a labeling or review screen: the screen's History over its documents,
// the toolbar buttons and the keyboard shortcuts.
import { useEffect, useMemo, useState } from "preact/hooks";
import type * as Y from "yjs";
import { History } from "../../doc/history";
import { historyKey } from "./keys";

export const UNDO_SHORTCUTS: [string, string][] = [
  ["Ctrl+Z", "undo your last change (never a collaborator's)"],
  ["Ctrl+Shift+Z / Ctrl+Y", "redo"],
];

/** One history for the screen's lifetime, tracking whichever documents are open now. */
export function useHistory(docs: (Y.Doc | null | undefined)[], author: string): History {
  const history = useMemo(() => new History(author), []);
  const [, setTick] = useState(0);
  useEffect(() => history.subscribe(() => setTick((t) => t + 1)), [history]);
  useEffect(() => {
    const stops = docs.filter((d): d is Y.Doc => !!d).map((d) => history.track(d));
    return () => stops.forEach((stop) => stop());
  }, docs);
  return history;
}

/** Handle an undo or redo shortcut; true when the key was one. */
export function onHistoryKey(history: History, e: KeyboardEvent): boolean {
  const what = historyKey(e);
  if (!what) return false;
  e.preventDefault();
  if (what === "undo") history.undo();
  else history.redo();
  return true;
}

export function UndoButtons({ history }: { history: History }) {
  return (
    <>
      <button disabled={!history.canUndo} onClick={() => history.undo()} data-testid="undo"
        title="Undo your last change (Ctrl+Z)" aria-label="Undo">↶ Undo</button>
      <button disabled={!history.canRedo} onClick={() => history.redo()} data-testid="redo"
        title="Redo (Ctrl+Shift+Z or Ctrl+Y)" aria-label="Redo">↷ Redo</button>
    </>
  );
}
