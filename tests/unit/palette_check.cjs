// Runs client/src/canvas/palette.ts as it is (compiled by the project's TypeScript) and
// prints, as one JSON line, what tests/unit/test_palette.py asserts on.
const p = require("./ts_load.cjs")("canvas/palette.ts");
const seq = p.palette();
const minFor = {};
for (const n of [2, 9, 10, 20, 30, 36, 40, 60]) minFor[n] = p.minDistance(seq.slice(0, n));
// Ids as a project has them: not contiguous, in any order.
const ids = Array.from({ length: 30 }, (_, i) => 1000 + i * 7).reverse();
const byId = p.labelPalette(ids);
const greens = seq.slice(0, 30).filter((c) => { const [r, g, b] = p.parseColor(c); return g > r && g > b; });
const textContrast = Math.min(...seq.map((c) => p.contrastRatio(c, p.textOn(c))));
console.log(JSON.stringify({
  size: seq.length, checked: p.PALETTE_SIZE_CHECKED, threshold: p.PALETTE_MIN_DISTANCE, minFor,
  labelMin: p.minDistance([...byId.values()]), labelCount: byId.size, distinct: new Set(seq).size,
  sameAgain: JSON.stringify([...p.labelPalette(ids)]) === JSON.stringify([...byId]),
  keepsColour: p.labelPalette([...ids, 5000]).get(ids[0]) === byId.get(ids[0]),
  greens: greens.length, textContrast,
  hsl: p.parseColor("hsl(120deg 100% 25%)"), rgb: p.parseColor("rgb(255, 0, 0)"),
  whiteOnBlack: p.contrastRatio("#ffffff", "#000"), first: seq.slice(0, 12),
}));
