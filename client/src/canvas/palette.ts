// Label colours that stay apart, and text that stays readable on them.
//
// Colours are picked in OKLab, where straight-line distance follows what people see (ΔE_OK;
// about 0.02 is just noticeable, 0.1 an obvious difference). The palette is a fixed
// sequence chosen by farthest-point sampling: from a grid of saturated, mid-light colours
// that sRGB can show, each next colour is the candidate farthest from all chosen before it,
// so every prefix of the sequence is spread out, whatever the number of labels. Labels take
// colours in the order of their ids, so a label keeps its colour when others are added,
// renamed or moved. This module has no imports: tests/unit/test_palette.py runs it in Node.

type Lab = [number, number, number];
type Rgb = [number, number, number];

/** Any two of the first PALETTE_SIZE_CHECKED colours are at least this far apart (ΔE_OK). */
export const PALETTE_MIN_DISTANCE = 0.1;
export const PALETTE_SIZE_CHECKED = 30;

const toLinear = (c: number) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
const toGamma = (c: number) => (c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055);

/** sRGB (0–1 channels) to OKLab. */
export function oklab([r, g, b]: Rgb): Lab {
  const [R, G, B] = [toLinear(r), toLinear(g), toLinear(b)];
  const l = Math.cbrt(0.4122214708 * R + 0.5363325363 * G + 0.0514459929 * B);
  const m = Math.cbrt(0.2119034982 * R + 0.6806995451 * G + 0.1073969566 * B);
  const s = Math.cbrt(0.0883024619 * R + 0.2817188376 * G + 0.6299787005 * B);
  return [
    0.2104542553 * l + 0.793617785 * m - 0.0040720468 * s,
    1.9779984951 * l - 2.428592205 * m + 0.4505937099 * s,
    0.0259040371 * l + 0.7827717662 * m - 0.808675766 * s,
  ];
}

/** OKLab to linear-free sRGB (0–1 channels, possibly out of range). */
function fromOklab([L, a, b]: Lab): Rgb {
  const l = (L + 0.3963377774 * a + 0.2158037573 * b) ** 3;
  const m = (L - 0.1055613458 * a - 0.0638541728 * b) ** 3;
  const s = (L - 0.0894841775 * a - 1.291485548 * b) ** 3;
  return [
    toGamma(4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s),
    toGamma(-1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s),
    toGamma(-0.0041960863 * l - 0.7034186147 * m + 1.707614701 * s),
  ];
}

/** A CSS colour as sRGB channels 0–1: #rgb, #rrggbb, rgb()/rgba() and hsl()/hsla(). */
export function parseColor(css: string): Rgb | null {
  const c = css.trim().toLowerCase();
  let m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/.exec(c);
  if (m) {
    const h = m[1].length === 3 ? m[1].split("").map((x) => x + x).join("") : m[1];
    return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16) / 255) as Rgb;
  }
  m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/.exec(c);
  if (m) return [Number(m[1]) / 255, Number(m[2]) / 255, Number(m[3]) / 255];
  m = /^hsla?\(\s*([\d.]+)(?:deg)?[\s,]+([\d.]+)%[\s,]+([\d.]+)%/.exec(c);
  if (m) {
    const h = Number(m[1]) % 360, s = Number(m[2]) / 100, l = Number(m[3]) / 100;
    const k = (n: number) => (n + h / 30) % 12;
    const a = s * Math.min(l, 1 - l);
    const f = (n: number) => l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1));
    return [f(0), f(8), f(4)];
  }
  return null;
}

const hex = (rgb: Rgb) => `#${rgb.map((v) => Math.round(Math.min(1, Math.max(0, v)) * 255)
  .toString(16).padStart(2, "0")).join("")}`;

/** ΔE_OK between two CSS colours: the Euclidean distance of their OKLab coordinates. */
export function deltaE(a: string, b: string): number {
  const [p, q] = [parseColor(a), parseColor(b)];
  if (!p || !q) throw new Error(`not a colour: ${p ? b : a}`);
  const [x, y] = [oklab(p), oklab(q)];
  return Math.hypot(x[0] - y[0], x[1] - y[1], x[2] - y[2]);
}

/** The smallest ΔE_OK between any two of the colours (Infinity for fewer than two). */
export function minDistance(colors: string[]): number {
  let best = Infinity;
  for (let i = 0; i < colors.length; i++) {
    for (let j = i + 1; j < colors.length; j++) best = Math.min(best, deltaE(colors[i], colors[j]));
  }
  return best;
}

/** Candidates: OKLCH lightness 0.45–0.87, chroma 0.08–0.28, every 6° of hue, in sRGB gamut.
 * No greys, no near-black or near-white: a label colour must stand out on photographs. */
function candidates(): { lab: Lab; css: string }[] {
  const out: { lab: Lab; css: string }[] = [];
  for (const L of [0.45, 0.52, 0.59, 0.66, 0.73, 0.8, 0.87]) {
    for (const C of [0.08, 0.12, 0.16, 0.2, 0.24, 0.28]) {
      for (let h = 0; h < 360; h += 6) {
        const lab: Lab = [L, C * Math.cos((h * Math.PI) / 180), C * Math.sin((h * Math.PI) / 180)];
        const rgb = fromOklab(lab);
        if (rgb.every((v) => v >= -1e-4 && v <= 1 + 1e-4)) {
          const css = hex(rgb);
          out.push({ lab: oklab(parseColor(css)!), css }); // measured as shown, after rounding
        }
      }
    }
  }
  return out;
}

let sequence: string[] | null = null;

/** The palette in order: every prefix is spread as far apart as the sequence allows. */
export function palette(): string[] {
  if (sequence) return sequence;
  const pool = candidates();
  const dist = (a: Lab, b: Lab) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
  // Start from a clear red; each next colour is the one farthest from all chosen so far.
  let at = 0;
  pool.forEach((c, i) => {
    if (dist(c.lab, [0.63, 0.22, 0.11]) < dist(pool[at].lab, [0.63, 0.22, 0.11])) at = i;
  });
  const near = pool.map(() => Infinity);
  const out: string[] = [];
  while (out.length < pool.length) {
    const chosen = pool[at];
    out.push(chosen.css);
    near[at] = -1;
    let next = -1;
    pool.forEach((c, i) => {
      if (near[i] < 0) return;
      near[i] = Math.min(near[i], dist(c.lab, chosen.lab));
      if (next < 0 || near[i] > near[next]) next = i;
    });
    if (next < 0) break;
    at = next;
  }
  sequence = out;
  return out;
}

/** A colour for each label id: the palette in the order of the ids (past the end of the
 * palette it starts again). */
export function labelPalette(ids: number[]): Map<number, string> {
  const seq = palette();
  const sorted = [...new Set(ids)].sort((a, b) => a - b);
  return new Map(sorted.map((id, i) => [id, seq[i % seq.length]]));
}

/** WCAG relative luminance of an sRGB colour. */
function luminance([r, g, b]: Rgb): number {
  return 0.2126 * toLinear(r) + 0.7152 * toLinear(g) + 0.0722 * toLinear(b);
}

/** The WCAG contrast ratio of two CSS colours (1 to 21). */
export function contrastRatio(a: string, b: string): number {
  const [p, q] = [parseColor(a), parseColor(b)];
  if (!p || !q) throw new Error(`not a colour: ${p ? b : a}`);
  const [x, y] = [luminance(p), luminance(q)].sort((u, v) => v - u);
  return (x + 0.05) / (y + 0.05);
}

/** Black or white, whichever reads better on the colour (at least 4.58:1 on any colour). */
export function textOn(color: string): string {
  const rgb = parseColor(color);
  if (!rgb) return "#000000";
  return contrastRatio(color, "#000000") >= contrastRatio(color, "#ffffff") ? "#000000" : "#ffffff";
}
