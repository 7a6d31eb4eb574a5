// Which key picks which label. The server gives each label its key (server/projects/
// label_tree.py, the same sequence as here): leaves first, since they are what people draw
// and tag with, then groups, each in display order. The sequence is the digits, then the
// letter rows without the letters the labeling screens use already (a: select all; b, p, v,
// h, r, e: tools; f: fit), so 28 labels have a key of their own.

export const HOTKEYS = "1234567890qwtyuiosdgjklzxcnm";

/** The key of each node: its own (`fixed`, the owner's choice) if it has one; the keys left
 * go to the others, leaves then groups, each in the given order (null once they run out). */
export function assignHotkeys<T>(nodes: T[], isGroup: (node: T) => boolean,
  fixed: (node: T) => string | null | undefined = () => null): (string | null)[] {
  const keys: (string | null)[] = nodes.map((n) => fixed(n) || null);
  const free = [...HOTKEYS].filter((k) => !keys.includes(k));
  const open = [...nodes.keys()].filter((i) => keys[i] == null);
  const order = open.filter((i) => !isGroup(nodes[i])).concat(open.filter((i) => isGroup(nodes[i])));
  order.forEach((at, n) => {
    if (n < free.length) keys[at] = free[n];
  });
  return keys;
}

/** The label key a key event stands for: a digit or a letter, read by the key's position
 * (Shift+2 is "@" and Shift+q is "Q", and a non-Latin layout types other letters), or null. */
export function labelKeyOf(e: KeyboardEvent): string | null {
  const m = /^(?:Digit|Numpad)([0-9])$/.exec(e.code) ?? /^Key([A-Z])$/.exec(e.code);
  const k = m ? m[1].toLowerCase() : /^[0-9a-zA-Z]$/.test(e.key) ? e.key.toLowerCase() : null;
  return k != null && HOTKEYS.includes(k) ? k : null;
}

/** How the shortcut sheet names the keys in use: "1–9, 0, Q W", "1–3, Z". */
export function hotkeyRange(keys: (string | null)[]): string {
  const used = [...HOTKEYS].filter((k) => keys.includes(k));
  let run = 0;
  while (run < 9 && used[run] === String(run + 1)) run++;
  const parts = run > 1 ? [`1–${run}`, ...used.slice(run)] : used;
  return parts.map((k) => k.toUpperCase()).join(", ").replace(/(?<=[A-Z]), (?=[A-Z])/g, " ") || "none";
}
