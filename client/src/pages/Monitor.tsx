// Monitoring for owners and reviewers: live item counts, progress, throughput, agreement,
// labelers, the work queue, data refresh and ML assistance.
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { get, type Project } from "../api";
import { BarChart, Legend, LineChart, type Point, type TimeSeries } from "../charts";
import { useProjectEvents, type Connection, type ItemStatus, type JobEvent, type ProjectEvent } from "../events";
import { ErrorBox, Page, Spinner, session, useProject } from "../ui";
import { labelNames } from "./labeling/parts";
import { JobsCard } from "./JobsCard";
import { MlCard } from "./MlCard";
import { statusText, taskShort } from "./projectWords";
import "../monitor.css";

type Counts = Record<ItemStatus, number> & { total: number };

interface HourRow {
  hour: string;
  annotations: number;
  decided: number;
}

interface LabelerRow {
  user: { id: number; name: string };
  submitted: number;
  agreement_rate: number | null;
  median_seconds: number | null;
}

interface Stats {
  counts: Counts;
  throughput: HourRow[];
  labelers: LabelerRow[];
  agreement: { from: number; to: number; count: number }[];
  queue: { depth: number; active_leases: number; active_labelers: number };
  generated_at: string;
}

interface Sample {
  t: number;
  labeled: number;
  annotations: number;
}

interface Activity {
  key: number;
  at: number;
  text: string;
  /** The item the line is about, linked into the data manager, and what follows its name. */
  item?: { id: number; key?: string };
  after?: string;
}

const STATUSES: ItemStatus[] = ["unlabeled", "in_progress", "labeled", "needs_review", "skipped", "missing"];
const STATUS_NAMES: Record<ItemStatus, string> = {
  unlabeled: "Unlabeled", in_progress: "In progress", labeled: "Labeled", needs_review: "Needs review",
  skipped: "Skipped", missing: "Missing",
};
const DONE_TO_ITEMS: Record<string, string> = {
  reopen: "re-opened", review: "sent to review", skip: "skipped", delete: "deleted",
};
const COLORS = { labeled: "#15803d", annotations: "#2563eb", decided: "#15803d", review: "#b45309",
  progress: "#60a5fa", agreement: "#7c3aed" };
const HOUR = 3_600_000;
const STATS_EVERY_MS = 15_000;
const STATS_AFTER_EVENT_MS = 1_500;
const PROJECT_EVERY_MS = 30_000;
const MAX_SAMPLES = 5_000;
const WINDOWS = [6, 24, 72, 168];

function fullCounts(partial: Partial<Record<ItemStatus, number>>, total?: number): Counts {
  const c = Object.fromEntries(STATUSES.map((s) => [s, partial[s] ?? 0])) as Record<ItemStatus, number>;
  return { ...c, total: total ?? STATUSES.reduce((sum, s) => sum + c[s], 0) };
}

/** One item changes status; it comes from the first of `from` that has any (the counts being
 *  bumped may predate the item's lease, which the events do not count). */
function moveOne(c: Counts, from: ItemStatus[], to: ItemStatus): Counts {
  const source = from.find((s) => c[s] > 0);
  if (!source || source === to) return c;
  return { ...c, [source]: c[source] - 1, [to]: c[to] + 1 };
}

function percent(part: number, whole: number): string {
  return whole > 0 ? `${Math.round((part / whole) * 1000) / 10}%` : "0%";
}

function formatSeconds(s: number): string {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 360) / 10} h`;
  return `${Math.round(s / 8640) / 10} days`;
}

function ago(iso: string | null | undefined, now: number): string {
  if (!iso) return "never";
  const s = (now - Date.parse(iso)) / 1000;
  const when = new Date(iso).toLocaleString();
  // A few seconds into the future is the two clocks disagreeing, not a scheduled time.
  if (s < -60) return when;
  return `${formatSeconds(Math.max(0, s))} ago (${when})`;
}

/** Local start of hour for chart labels. */
function hourLabel(t: number): string {
  return new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

/** The hourly grid of the stats window (oldest first), with empty hours filled in. */
function hourGrid(stats: Stats, hours: number): { t: number; annotations: number; decided: number }[] {
  const end = Math.floor(Date.parse(stats.generated_at) / HOUR) * HOUR;
  const rows = new Map(stats.throughput.map((r) => [Date.parse(r.hour), r]));
  const grid = [];
  for (let t = end - (hours - 1) * HOUR; t <= end; t += HOUR) {
    const r = rows.get(t);
    grid.push({ t, annotations: r?.annotations ?? 0, decided: r?.decided ?? 0 });
  }
  return grid;
}

function totalAnnotations(stats: Stats): number {
  return stats.labelers.reduce((sum, l) => sum + l.submitted, 0);
}

/** Labeled items and submitted annotations at each hour of the window, counted back from now;
 *  nothing before the project started, so a young project's chart is not mostly empty. */
function history(stats: Stats, hours: number, startedAt: string | null): { labeled: Point[]; annotations: Point[] } {
  const grid = hourGrid(stats, hours);
  let labeled = stats.counts.labeled;
  let annotations = totalAnnotations(stats);
  const now = Date.parse(stats.generated_at);
  const out = { labeled: [{ t: now, v: labeled }], annotations: [{ t: now, v: annotations }] };
  for (let i = grid.length - 1; i >= 0; i--) {
    labeled = Math.max(0, labeled - grid[i].decided);
    annotations = Math.max(0, annotations - grid[i].annotations);
    out.labeled.push({ t: grid[i].t, v: labeled });
    out.annotations.push({ t: grid[i].t, v: annotations });
  }
  out.labeled.reverse();
  out.annotations.reverse();
  const start = startedAt ? Date.parse(startedAt) : NaN;
  if (!(start > out.labeled[0].t)) return out;
  // The hour the project started in holds its first value; later hours are kept as they are.
  const clip = (points: Point[]) => {
    const after = points.filter((p) => p.t > start);
    const before = points.filter((p) => p.t <= start);
    return [{ t: start, v: before[before.length - 1].v }, ...after];
  };
  return { labeled: clip(out.labeled), annotations: clip(out.annotations) };
}

/** Stats from the server: every 15 s, and shortly after whatever `soon` is called for. */
function useStats(pid: number, hours: number) {
  const [stats, setStats] = useState<Stats | null>(null);
  const [error, setError] = useState<unknown>(null);
  const seq = useRef(0);
  const debounce = useRef<ReturnType<typeof setTimeout>>();
  const load = useRef<() => void>(() => undefined);
  load.current = () => {
    clearTimeout(debounce.current);
    const mine = ++seq.current;
    get<Stats>(`/api/v1/projects/${pid}/stats?hours=${hours}`).then(
      (s) => mine === seq.current && (setStats(s), setError(null)),
      (e) => mine === seq.current && setError(e));
  };
  useEffect(() => {
    load.current();
    const timer = setInterval(() => load.current(), STATS_EVERY_MS);
    return () => {
      clearInterval(timer);
      clearTimeout(debounce.current);
    };
  }, [pid, hours]);
  const soon = () => {
    clearTimeout(debounce.current);
    debounce.current = setTimeout(() => load.current(), STATS_AFTER_EVENT_MS);
  };
  return { stats, error, reload: () => load.current(), soon };
}

/** Ticks once a second, for "… ago" texts. */
function useNow(everyMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}

export function ConnectionBadge({ connection }: { connection: Connection }) {
  const now = useNow();
  const { state, retryAt, reason, attempt } = connection;
  const text = state === "open" ? "Live"
    : state === "connecting" ? (attempt ? `Reconnecting (attempt ${attempt + 1})` : "Connecting")
    : state === "retrying" ? `Offline · retrying in ${Math.max(0, Math.ceil(((retryAt ?? now) - now) / 1000))} s`
    : `Not connected: ${reason ?? "refused"}`;
  return (
    <span class="row">
      <span class={`conn ${state}`} data-testid="events-state" data-state={state} title={reason ?? undefined}>
        <i />{text}
      </span>
      {(state === "retrying" || state === "denied") &&
        <button type="button" class="small" onClick={connection.reconnect}>Reconnect now</button>}
    </span>
  );
}

function Tiles({ counts, pid }: { counts: Counts | null; pid: number }) {
  const c = counts ?? fullCounts({}, 0);
  const workable = c.total - c.missing;
  const share = (n: number) => (workable > 0 ? `${(n / workable) * 100}%` : "0%");
  const tiles: { key: ItemStatus | "total"; name: string }[] = [
    { key: "total", name: "Total" },
    ...STATUSES.map((s) => ({ key: s, name: STATUS_NAMES[s] })),
  ];
  return (
    <section class="card">
      <div class="tiles">
        {tiles.map((t) => (
          <div key={t.key} class={`tile ${t.key}`}>
            <div class="value" data-testid={`count-${t.key}`}>{counts ? c[t.key] : "–"}</div>
            <div class="name">{t.key === "total" ? t.name
              : <a href={`#/p/${pid}/data?status=${t.key}`}>{t.name}</a>}</div>
            {t.key !== "total" && t.key !== "missing" && <div class="share muted">{percent(c[t.key], workable)}</div>}
          </div>
        ))}
      </div>
      <div class="progress stacked" data-testid="monitor-progress" title={`${c.labeled} of ${workable} labeled`}>
        <div class="labeled" style={{ width: share(c.labeled) }} />
        <div class="needs_review" style={{ width: share(c.needs_review) }} />
        <div class="in_progress" style={{ width: share(c.in_progress) }} />
      </div>
      <div class="row muted small-text">
        <span><b>{percent(c.labeled, workable)}</b> labeled ({c.labeled} of {workable} items)</span>
        <Legend items={[
          { name: "labeled", color: COLORS.labeled },
          { name: "needs review", color: COLORS.review },
          { name: "in progress", color: COLORS.progress },
        ]} />
      </div>
    </section>
  );
}

function ProgressChart({ stats, hours, samples, startedAt }: {
  stats: Stats | null; hours: number; samples: Sample[]; startedAt: string | null;
}) {
  const past = stats ? history(stats, hours, startedAt) : { labeled: [], annotations: [] };
  const firstLive = samples.length ? samples[0].t : Infinity;
  const series: TimeSeries[] = [
    { name: "Annotations submitted", color: COLORS.annotations,
      points: [...past.annotations.filter((p) => p.t < firstLive), ...samples.map((s) => ({ t: s.t, v: s.annotations }))] },
    { name: "Items labeled", color: COLORS.labeled, area: true,
      points: [...past.labeled.filter((p) => p.t < firstLive), ...samples.map((s) => ({ t: s.t, v: s.labeled }))] },
  ];
  const last = (s: TimeSeries) => s.points[s.points.length - 1]?.v;
  return (
    <section class="card">
      <h3>Progress over time</h3>
      <Legend items={series.map((s) => ({ name: s.name, color: s.color, value: last(s) }))} />
      <LineChart series={series} testid="chart-progress" />
    </section>
  );
}

function ThroughputChart({ stats, hours }: { stats: Stats | null; hours: number }) {
  const grid = stats ? hourGrid(stats, hours) : [];
  const sum = (k: "annotations" | "decided") => grid.reduce((n, r) => n + r[k], 0);
  return (
    <section class="card">
      <h3>Throughput per hour</h3>
      <Legend items={[
        { name: `Annotations (${sum("annotations")} in ${hours} h)`, color: COLORS.annotations },
        { name: `Items decided (${sum("decided")})`, color: COLORS.decided },
      ]} />
      <BarChart testid="chart-throughput"
        categories={grid.map((r) => new Date(r.t).toLocaleString(undefined,
          { weekday: "short", hour: "2-digit", minute: "2-digit" }))}
        tickLabel={(i) => hourLabel(grid[i].t)}
        series={[
          { name: "annotations", color: COLORS.annotations, values: grid.map((r) => r.annotations) },
          { name: "decided", color: COLORS.decided, values: grid.map((r) => r.decided) },
        ]} />
    </section>
  );
}

function AgreementChart({ stats }: { stats: Stats | null }) {
  const buckets = stats?.agreement ?? [];
  const decided = buckets.reduce((n, b) => n + b.count, 0);
  const pct = (v: number) => `${Math.round(v * 100)}`;
  return (
    <section class="card">
      <h3>Agreement on decided items</h3>
      <p class="muted small-text">
        Share of an item's labelers who agreed with its final label; {decided} item(s) decided by labelers.
      </p>
      <BarChart testid="chart-agreement"
        categories={buckets.map((b) => `${pct(b.from)}–${pct(b.to)}%`)}
        tickLabel={(i) => `${pct(buckets[i].from)}%`}
        labelWidth={34}
        series={[{ name: "items", color: COLORS.agreement, values: buckets.map((b) => b.count) }]} />
    </section>
  );
}

function Labelers({ stats, pid }: { stats: Stats | null; pid: number }) {
  const rows = stats?.labelers ?? [];
  return (
    <section>
      <h2>Labelers</h2>
      {rows.length === 0 ? <p class="muted">No labelers yet.</p> : (
        <table class="list" data-testid="labelers">
          <thead>
            <tr><th>Name</th><th class="num">Submitted</th><th class="num">Agreement</th>
              <th class="num">Median time per item</th></tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.user.id}>
                <td><a href={`#/p/${pid}/data?labeler=${r.user.id}&sort=-updated_at`}
                  title={`the items ${r.user.name} holds or submitted`}>{r.user.name}</a></td>
                <td class="num">{r.submitted}</td>
                <td class="num" title="annotations matching the final label, on items decided by labelers">
                  {r.agreement_rate === null ? <span class="muted">—</span> : (
                    <span class="rate">
                      <span class="meter"><span style={{ width: `${r.agreement_rate * 100}%` }} /></span>
                      {(r.agreement_rate * 100).toFixed(1)}%
                    </span>
                  )}
                </td>
                <td class="num">{r.median_seconds === null ? <span class="muted">—</span>
                  : `${r.median_seconds.toFixed(1)} s`}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Queue({ stats }: { stats: Stats | null }) {
  const q = stats?.queue;
  const cells: { key: keyof Stats["queue"]; name: string; hint: string }[] = [
    { key: "depth", name: "Queue depth", hint: "items still needing a labeler (unlabeled or in progress)" },
    { key: "active_leases", name: "Active leases", hint: "items handed out and not yet submitted" },
    { key: "active_labelers", name: "Active labelers", hint: "holding a lease or submitted in the last 15 minutes" },
  ];
  return (
    <section class="card">
      <h3>Work queue</h3>
      <div class="tiles small">
        {cells.map((c) => (
          <div key={c.key} class="tile" title={c.hint}>
            <div class="value" data-testid={`queue-${c.key}`}>{q ? q[c.key] : "–"}</div>
            <div class="name">{c.name}</div>
          </div>
        ))}
      </div>
    </section>
  );
}

function Facts({ rows }: { rows: [string, ComponentChildren][] }) {
  return (
    <dl class="facts">
      {rows.map(([k, v]) => [<dt key={`${k}-k`}>{k}</dt>, <dd key={`${k}-v`}>{v}</dd>])}
    </dl>
  );
}

function RefreshStatus({ project, now }: { project: Project; now: number }) {
  const r = project.refresh;
  const ingest = project.ingest as Record<string, any> | null;
  const errors: string[] = Array.isArray(ingest?.errors) ? ingest!.errors : [];
  const next = r.enabled && r.last_refresh_at && r.interval_s
    ? Date.parse(r.last_refresh_at) + r.interval_s * 1000 : null;
  return (
    <section class="card" data-testid="refresh-status">
      <h3>Data refresh</h3>
      {!project.dataset ? <p class="muted">No data bound yet.</p> : (
        <Facts rows={[
          ["Incremental refresh", r.enabled
            ? <span class="badge running">on · every {formatSeconds(r.interval_s ?? 0)}</span>
            : <span class="badge">off</span>],
          ["Last refresh", ago(r.last_refresh_at, now)],
          ...(next ? [["Next refresh", next > now ? `in about ${formatSeconds((next - now) / 1000)}`
            : "due now"] as [string, string]] : []),
        ]} />
      )}
      {ingest && (
        <>
          <h4>Last data registration{ingest.kind ? ` (${String(ingest.kind).replace(/_/g, " ")})` : ""}</h4>
          <Facts rows={[
            ["Finished", ago(ingest.finished_at, now)],
            ["Files listed", `${ingest.listed ?? 0}${ingest.skipped ? ` (${ingest.skipped} skipped)` : ""}`],
            ["Added", ingest.added ?? 0],
            ["Missing", ingest.missing ?? 0],
            ["Restored", ingest.restored ?? 0],
            ...(ingest.over_cap ? [["Over the item cap", `${ingest.over_cap} (cap ${ingest.cap})`] as [string, string]] : []),
            ["Items now", ingest.total_items ?? "–"],
            ...(typeof ingest.seconds === "number" ? [["Took", `${ingest.seconds.toFixed(2)} s`] as [string, string]] : []),
          ]} />
          {errors.length > 0 && (
            <div class="error" data-testid="ingest-errors">
              {errors.length} error(s):
              <ul>{errors.slice(0, 10).map((e, i) => <li key={i}>{e}</li>)}</ul>
              {errors.length > 10 && <span>… and {errors.length - 10} more</span>}
            </div>
          )}
        </>
      )}
    </section>
  );
}

function ActivityFeed({ items, pid }: { items: Activity[]; pid: number }) {
  return (
    <section class="card activity">
      <h3>Recent activity</h3>
      {items.length === 0 ? <p class="muted">Nothing yet; events appear here as they happen.</p> : (
        <ul data-testid="activity">
          {items.map((a) => (
            <li key={a.key}><span class="muted">{new Date(a.at).toLocaleTimeString()}</span> {a.text}
              {a.item && <> <a href={`#/p/${pid}/data/${a.item.id}`} data-testid="activity-item">
                {a.item.key ?? `item ${a.item.id}`}</a></>}{a.after}</li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Dashboard({ project, reloadProject, labelName }: {
  project: Project; reloadProject: () => void; labelName: (id: number) => string;
}) {
  const pid = project.id;
  const [hours, setHours] = useState(24);
  const { stats, error, reload, soon } = useStats(pid, hours);
  const [counts, setCounts] = useState<Counts | null>(null);
  // The event handlers read the latest counts between renders.
  const countsRef = useRef<Counts | null>(null);
  const showCounts = (c: Counts) => {
    countsRef.current = c;
    setCounts(c);
  };
  const [samples, setSamples] = useState<Sample[]>([]);
  const [activity, setActivity] = useState<Activity[]>([]);
  // Annotations submitted in all: the stats' figure plus submits seen since it was computed.
  const annotations = useRef<number | null>(null);
  const names = useRef(new Map<number, string>());
  const activityKey = useRef(0);
  const now = useNow(5000);
  const [jobEvent, setJobEvent] = useState<JobEvent | null>(null);

  useEffect(() => {
    if (!stats) return;
    showCounts(stats.counts);
    annotations.current = totalAnnotations(stats);
    for (const l of stats.labelers) names.current.set(l.user.id, l.user.name);
  }, [stats]);

  useEffect(() => {
    const timer = setInterval(reloadProject, PROJECT_EVERY_MS);
    return () => clearInterval(timer);
  }, [pid]);

  const sample = (c: Counts, t: number) => {
    if (annotations.current === null) return;
    const point = { t, labeled: c.labeled, annotations: annotations.current };
    setSamples((s) => {
      const kept = s.length > 0 && s[s.length - 1].t > t ? s.filter((p) => p.t <= t) : s;
      return [...kept.slice(-MAX_SAMPLES + 1), point];
    });
  };
  const note = (at: string, text: string, item?: { id: number; key?: string }, after?: string) => {
    const t = Date.parse(at) || Date.now();
    setActivity((a) => [{ key: ++activityKey.current, at: t, text, item, after }, ...a].slice(0, 12));
  };
  const who = (id: number) => (id === session.user?.id ? "you" : names.current.get(id) ?? `user ${id}`);
  const bump = (change: (c: Counts) => Counts, at: string) => {
    if (!countsRef.current) return;
    const next = change(countsRef.current);
    showCounts(next);
    sample(next, Date.parse(at) || Date.now());
  };

  const onEvent = (e: ProjectEvent) => {
    switch (e.type) {
      case "progress": {
        const c = fullCounts(e.counts, e.total);
        showCounts(c);
        sample(c, Date.parse(e.at) || Date.now());
        break;
      }
      case "submitted":
        if (annotations.current !== null) annotations.current += 1;
        bump((c) => (e.item_status === "in_progress" ? c : moveOne(c, ["in_progress", "unlabeled"], e.item_status)), e.at);
        note(e.at, `${who(e.user_id)} submitted`, { id: e.item_id, key: e.key },
          ` → ${STATUS_NAMES[e.item_status] ?? e.item_status}`
          + (e.decided && e.agreement !== null ? ` (agreement ${Math.round(e.agreement * 100)}%)` : ""));
        soon();
        break;
      case "decided":
        bump((c) => moveOne(c, ["needs_review"], "labeled"), e.at);
        note(e.at, `${who(e.by)} decided`, { id: e.item_id, key: e.key });
        soon();
        break;
      case "reopened":
        note(e.at, `${who(e.by)} re-opened`, { id: e.item_id, key: e.key });
        soon();
        break;
      case "leased":
        soon();
        break;
      case "items_changed":
        if (e.count === 1 && e.items.length === 1 && e.action !== "delete") {
          note(e.at, `${who(e.by)} ${DONE_TO_ITEMS[e.action]}`, { id: e.items[0].id, key: e.items[0].key });
        } else {
          note(e.at, `${who(e.by)} ${DONE_TO_ITEMS[e.action]} ${e.count === 1 ? e.items[0]?.key ?? "1 item" : `${e.count} items`}`);
        }
        soon();
        break;
      case "released":
        note(e.at, `${who(e.user_id)} gave back ${e.leases} item${e.leases === 1 ? "" : "s"} unlabeled`);
        soon();
        break;
      case "export":
        if (e.status !== "running") note(e.at, `export ${e.export_id} ${e.status}`);
        break;
      case "job":
        setJobEvent(e);
        if (e.status !== "running") {
          note(e.at, `${e.job_kind.replace(/_/g, " ")} job ${e.job_id} ${e.status}`);
          if (e.status === "done") reloadProject();  // its items and last registration changed
        }
        break;
    }
  };
  const connection = useProjectEvents(pid, onEvent);

  // Events may have been missed while disconnected.
  const wasOpen = useRef(false);
  useEffect(() => {
    if (connection.state === "open" && !wasOpen.current) reload();
    wasOpen.current = connection.state === "open";
  }, [connection.state]);

  return (
    <>
      <div class="row monitor-head">
        <span class={`badge ${project.status}`} data-status={project.status}>{statusText(project)}</span>
        <span class="muted">{taskShort(project.task_type)}</span>
        <ConnectionBadge connection={connection} />
        <span class="spacer" />
        <span class="muted small-text" data-testid="stats-updated">
          {stats ? `stats updated ${ago(stats.generated_at, now)}` : "loading stats…"}
        </span>
        <label class="inline">Window
          <select value={hours} onChange={(e) => setHours(Number(e.currentTarget.value))} data-testid="stats-hours">
            {WINDOWS.map((h) => <option key={h} value={h}>{h < 48 ? `${h} hours` : `${h / 24} days`}</option>)}
          </select>
        </label>
        <button type="button" onClick={reload}>Refresh</button>
      </div>
      <ErrorBox error={error} />
      <Tiles counts={counts} pid={project.id} />
      <div class="grid2 monitor-grid">
        <ProgressChart stats={stats} hours={hours} samples={samples} startedAt={project.started_at} />
        <ThroughputChart stats={stats} hours={hours} />
        <AgreementChart stats={stats} />
        <div class="stack">
          <Queue stats={stats} />
          <MlCard project={project} names={labelName} />
        </div>
      </div>
      <Labelers stats={stats} pid={project.id} />
      <div class="grid2 monitor-grid">
        <div class="stack">
          <RefreshStatus project={project} now={now} />
          <JobsCard pid={project.id} event={jobEvent} />
        </div>
        <ActivityFeed items={activity} pid={project.id} />
      </div>
    </>
  );
}

export function Monitor({ pid }: { pid: number }) {
  const [project, labels, error, reload] = useProject(pid);
  if (!project) return <Page title="Monitor"><ErrorBox error={error} />{!error && <Spinner />}</Page>;
  if (project.role !== "owner" && project.role !== "reviewer") {
    return (
      <Page title="Monitor" project={project}>
        <p class="error">Monitoring is open to the project's owners and reviewers.</p>
      </Page>
    );
  }
  return (
    <Page title={`Monitor · ${project.name}`} project={project}>
      <Dashboard project={project} reloadProject={reload} labelName={labelNames(labels ?? [])} />
    </Page>
  );
}
