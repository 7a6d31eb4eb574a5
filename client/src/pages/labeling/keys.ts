// Reading labeling shortcuts from key events the same way on every screen.

/** The digit of a number key, with or without Shift (Shift+2 is "@" on a US layout, so the
 * key's position is read, not its character); null for any other key. */
export function digitOf(e: KeyboardEvent): string | null {
  const m = /^(?:Digit|Numpad)([0-9])$/.exec(e.code);
  if (m) return m[1];
  return /^[0-9]$/.test(e.key) ? e.key : null;
}

/** Ctrl+Z undoes; Ctrl+Shift+Z and Ctrl+Y redo (Cmd on a Mac). */
export function historyKey(e: KeyboardEvent): "undo" | "redo" | null {
  if (!(e.ctrlKey || e.metaKey) || e.altKey) return null;
  const k = e.key.toLowerCase();
  if (k === "z") return e.shiftKey ? "redo" : "undo";
  if (k === "y" && !e.shiftKey) return "redo";
  return null;
}

export function isTyping(e: KeyboardEvent): boolean {
  const t = e.target as HTMLElement | null;
  return !!t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
}
