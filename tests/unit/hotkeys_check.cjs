// Runs client/src/pages/labeling/hotkeys.ts as it is and prints, as one JSON line, what
// tests/unit/test_client_hotkeys.py asserts on.
const h = require("./ts_load.cjs")("pages/labeling/hotkeys.ts");
const key = (code, key, shiftKey = false) => h.labelKeyOf({ code, key, shiftKey });
// A tree in display order: a group with two leaves, then 30 flat leaves.
const nodes = [{ g: true }, { g: false }, { g: false }, ...Array.from({ length: 30 }, () => ({ g: false }))];
console.log(JSON.stringify({
  sequence: h.HOTKEYS,
  leavesFirst: h.assignHotkeys(nodes, (n) => n.g),
  fixed: h.assignHotkeys([{ g: true, f: "q" }, { g: false }, { g: false, f: "1" }, { g: false }],
    (n) => n.g, (n) => n.f),
  keys: [key("Digit1", "1"), key("Digit2", "@", true), key("KeyQ", "Q", true), key("KeyQ", "й"),
    key("Numpad0", "0"), key("KeyB", "b"), key("KeyA", "a"), key("Space", " "), key("", "w")],
  ranges: [h.hotkeyRange(nodes.map((_, i) => h.HOTKEYS[i] ?? null)), h.hotkeyRange(["1", "2", "3", "4"]),
    h.hotkeyRange(["1", "z", null]), h.hotkeyRange([])],
}));
