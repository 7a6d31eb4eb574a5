// Small SVG charts drawn at the container's real pixel width, so text stays crisp.
import type { RefObject } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

export interface Point {
  t: number;
  v: number;
}

export interface TimeSeries {
  name: string;
  color: string;
  points: Point[];
  area?: boolean;
}

export interface BarSeries {
  name: string;
  color: string;
  values: number[];
}

const MARGIN = { left: 44, right: 12, top: 10, bottom: 24 };
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR,
  3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY];

function useWidth<T extends Element>(): [RefObject<T>, number] {
  const ref = useRef<T>(null);
  const [width, setWidth] = useState(0);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const observer = new ResizeObserver(([entry]) => setWidth(Math.floor(entry.contentRect.width)));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}

/** Round tick values from 0 up to at least `max`. */
export function niceTicks(max: number, count = 4): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  let step = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) {
    if (step * m >= raw) {
      step *= m;
      break;
    }
  }
  step = Math.max(1, step);
  const ticks: number[] = [];
  for (let v = 0; v < max + step; v += step) {
    ticks.push(v);
    if (v >= max) break;
  }
  return ticks;
}

function timeTicks(from: number, to: number, most: number): { ticks: number[]; step: number } {
  const span = Math.max(to - from, MINUTE);
  const step = TIME_STEPS.find((s) => span / s <= most) ?? TIME_STEPS[TIME_STEPS.length - 1];
  // Align on the viewer's local clock (whole hours, midnights), not on UTC.
  const offset = new Date(from).getTimezoneOffset() * MINUTE;
  const ticks: number[] = [];
  for (let t = Math.ceil((from - offset) / step) * step + offset; t <= to; t += step) ticks.push(t);
  return { ticks, step };
}

export function formatTime(t: number, step: number): string {
  const d = new Date(t);
  if (step >= DAY) return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  const hm = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return step >= 6 * HOUR && d.getHours() === 0
    ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) : hm;
}

function formatValue(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

export function Legend({ items }: { items: { name: string; color: string; value?: string | number }[] }) {
  return (
    <div class="legend">
      {items.map((i) => (
        <span key={i.name}>
          <i style={{ background: i.color }} />{i.name}
          {i.value !== undefined && <b> {i.value}</b>}
        </span>
      ))}
    </div>
  );
}

function YAxis({ ticks, y, width }: { ticks: number[]; y: (v: number) => number; width: number }) {
  return (
    <g class="axis">
      {ticks.map((v) => (
        <g key={v}>
          <line x1={MARGIN.left} x2={width - MARGIN.right} y1={y(v)} y2={y(v)} class="grid" />
          <text x={MARGIN.left - 6} y={y(v)} dy="0.32em" text-anchor="end">{formatValue(v)}</text>
        </g>
      ))}
    </g>
  );
}

/** Index of the point nearest to t in points sorted by time. */
function nearest(points: Point[], t: number): number {
  let lo = 0;
  let hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid].t < t) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && t - points[lo - 1].t < points[lo].t - t) return lo - 1;
  return lo;
}

/** Lines (optionally filled to the baseline) over time; hover shows the values at a moment. */
export function LineChart({ series, height = 200, empty = "No data yet", testid }: {
  series: TimeSeries[]; height?: number; empty?: string; testid?: string;
}) {
  const [ref, width] = useWidth<HTMLDivElement>();
  const [hover, setHover] = useState<number | null>(null);
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    return <div class="chart empty" ref={ref} style={{ height }} data-testid={testid}>{empty}</div>;
  }
  let from = Math.min(...all.map((p) => p.t));
  let to = Math.max(...all.map((p) => p.t));
  if (to - from < MINUTE) {
    from -= MINUTE / 2;
    to += MINUTE / 2;
  }
  const yTicks = niceTicks(Math.max(...all.map((p) => p.v)));
  const top = yTicks[yTicks.length - 1];
  const plotW = Math.max(width - MARGIN.left - MARGIN.right, 1);
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const x = (t: number) => MARGIN.left + ((t - from) / (to - from)) * plotW;
  const y = (v: number) => MARGIN.top + plotH - (v / top) * plotH;
  const { ticks, step } = timeTicks(from, to, Math.max(2, Math.floor(plotW / 90)));
  const base = y(0);

  const onMove = (e: MouseEvent) => {
    const box = (e.currentTarget as SVGElement).getBoundingClientRect();
    const px = e.clientX - box.left;
    setHover(px < MARGIN.left || px > width - MARGIN.right ? null : from + ((px - MARGIN.left) / plotW) * (to - from));
  };
  const readout = hover === null ? null : series.filter((s) => s.points.length > 0).map((s) => {
    const p = s.points[nearest(s.points, hover)];
    return { s, p };
  });
  const at = readout?.[0]?.p.t ?? null;

  return (
    <div class="chart" ref={ref} style={{ height }} data-testid={testid}>
      {width > 0 && (
        <svg width={width} height={height} onMouseMove={onMove} onMouseLeave={() => setHover(null)}>
          <YAxis ticks={yTicks} y={y} width={width} />
          <g class="axis">
            {ticks.map((t) => (
              <text key={t} x={x(t)} y={height - 6} text-anchor="middle">{formatTime(t, step)}</text>
            ))}
          </g>
          {series.map((s) => {
            if (s.points.length === 0) return null;
            const line = s.points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join("");
            const first = s.points[0];
            const last = s.points[s.points.length - 1];
            return (
              <g key={s.name}>
                {s.area && (
                  <path d={`${line}L${x(last.t).toFixed(1)},${base}L${x(first.t).toFixed(1)},${base}Z`}
                    fill={s.color} fill-opacity="0.14" stroke="none" />
                )}
                <path d={line} fill="none" stroke={s.color} stroke-width="2" stroke-linejoin="round" />
                {s.points.length === 1 && <circle cx={x(first.t)} cy={y(first.v)} r="3" fill={s.color} />}
              </g>
            );
          })}
          {readout && at !== null && (
            <g class="hover">
              <line x1={x(at)} x2={x(at)} y1={MARGIN.top} y2={base} />
              {readout.map(({ s, p }) => <circle key={s.name} cx={x(p.t)} cy={y(p.v)} r="3.5" fill={s.color} />)}
            </g>
          )}
        </svg>
      )}
      {readout && at !== null && (
        <div class="tip" style={x(at) < width * 0.6
          ? { left: x(at) + 10, top: MARGIN.top } : { right: width - x(at) + 10, top: MARGIN.top }}>
          <div class="muted">{new Date(at).toLocaleString()}</div>
          {readout.map(({ s, p }) => (
            <div key={s.name}><i style={{ background: s.color }} />{s.name}: <b>{formatValue(p.v)}</b></div>
          ))}
        </div>
      )}
    </div>
  );
}

/** Grouped vertical bars, one group per category; every bar names itself on hover. */
export function BarChart({ categories, series, tickLabel, labelWidth = 56, height = 200, testid }: {
  categories: string[]; series: BarSeries[]; tickLabel?: (index: number) => string;
  labelWidth?: number; height?: number; testid?: string;
}) {
  const [ref, width] = useWidth<HTMLDivElement>();
  const n = categories.length;
  const max = Math.max(0, ...series.flatMap((s) => s.values));
  const yTicks = niceTicks(max);
  const top = yTicks[yTicks.length - 1];
  const plotW = Math.max(width - MARGIN.left - MARGIN.right, 1);
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const y = (v: number) => MARGIN.top + plotH - (v / top) * plotH;
  const band = plotW / Math.max(n, 1);
  const gap = band > 8 ? band * 0.2 : 0;
  const barW = Math.max((band - gap) / Math.max(series.length, 1), 0.5);
  const labelEvery = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(plotW / labelWidth))));
  const label = tickLabel ?? ((i: number) => categories[i]);

  return (
    <div class="chart" ref={ref} style={{ height }} data-testid={testid}>
      {width > 0 && (
        <svg width={width} height={height}>
          <YAxis ticks={yTicks} y={y} width={width} />
          {categories.map((c, i) => {
            const x0 = MARGIN.left + i * band + gap / 2;
            return (
              <g key={c}>
                {series.map((s, k) => {
                  const v = s.values[i] ?? 0;
                  return (
                    <rect key={s.name} class="bar" x={x0 + k * barW} y={y(v)} width={barW}
                      height={Math.max(y(0) - y(v), 0)} fill={s.color}>
                      <title>{`${c} · ${s.name}: ${formatValue(v)}`}</title>
                    </rect>
                  );
                })}
                {i % labelEvery === 0 && (
                  <text class="axis" x={MARGIN.left + (i + 0.5) * band} y={height - 6} text-anchor="middle">
                    {label(i)}
                  </text>
                )}
              </g>
            );
          })}
        </svg>
      )}
    </div>
  );
}
