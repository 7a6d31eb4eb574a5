// The data manager: a project's items, filtered and sorted on the server and paged by cursor,
// as thumbnails with their final labels drawn over them; a selection to act on (re-open, send
// to review, skip, delete, export); and each item on its own page (data/ItemView.tsx).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { get, type LabelNode, type Project } from "../api";
import { ErrorBox, Page, Spinner, navigate, useLoad, useProject } from "../ui";
import { labelColors, labelNames } from "./labeling/parts";
import { Actions } from "./data/Actions";
import { ItemView } from "./data/ItemView";
import { Overlay } from "./data/Overlay";
import {
  AGREEMENTS, SORTS, STATUSES, STATUS_NAMES, countItems, dataHash, listPage, queryString, readQuery,
  type Page as ItemPage, type Query, type Status,
} from "./data/query";
import "../data.css";

interface Member { user: { id: number; name: string }; role: string }

export function Data({ pid, iid }: { pid: number; iid: number | null }) {
  const [project, tree, error] = useProject(pid);
  const [members] = useLoad(() => get<{ members: Member[] }>(`/api/v1/projects/${pid}/members`)
    .then((r) => r.members, () => [] as Member[]), [pid]);
  const q = readQuery(location.hash);
  if (!project || !tree) return <Page title="Data"><ErrorBox error={error} />{!error && <Spinner />}</Page>;
  if (project.role === "labeler") {
    return <Page title="Data" project={project}><p>Only the project's owners and reviewers browse its items.</p></Page>;
  }
  return (
    <Page title={`Data · ${project.name}`} project={project} wide>
      {iid !== null
        ? <ItemView key={iid} project={project} tree={tree} iid={iid} query={q} />
        : <ItemList project={project} tree={tree} query={q} members={members ?? []} />}
    </Page>
  );
}

function Filters({ pid, query, members }: { pid: number; query: Query; members: Member[] }) {
  const set = (change: Query) => {
    const next: Query = { ...query, ...change };
    for (const k of Object.keys(next) as (keyof Query)[]) if (!next[k]) delete next[k];
    navigate(dataHash(pid, next));
  };
  const [name, setName] = useState(query.name ?? "");
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => setName(query.name ?? ""), [query.name]);
  const typed = (v: string) => {
    setName(v);
    clearTimeout(timer.current);
    timer.current = window.setTimeout(() => set({ name: v.trim() }), 300);
  };
  const statuses = new Set((query.status ?? "").split(",").filter(Boolean));
  const toggle = (s: Status) => {
    statuses.has(s) ? statuses.delete(s) : statuses.add(s);
    set({ status: STATUSES.filter((x) => statuses.has(x)).join(",") });
  };
  const tri = (field: "needs_review" | "has_prelabel", label: string) => (
    <label class="inline">{label}
      <select value={query[field] ?? ""} data-testid={`filter-${field}`}
        onChange={(e) => set({ [field]: e.currentTarget.value })}>
        <option value="">any</option><option value="true">yes</option><option value="false">no</option>
      </select>
    </label>
  );
  return (
    <section class="card dm-filters" data-testid="data-filters">
      <div class="row">
        <input type="search" placeholder="File name contains…" value={name} data-testid="filter-name"
          onInput={(e) => typed(e.currentTarget.value)} onKeyDown={(e) => {
            if (e.key === "Enter") { clearTimeout(timer.current); set({ name: name.trim() }); }
          }} />
        <label class="inline">Sort
          <select value={query.sort ?? "id"} data-testid="sort" onChange={(e) => set({ sort: e.currentTarget.value === "id" ? "" : e.currentTarget.value })}>
            {SORTS.map(([v, n]) => <option key={v} value={v}>{n}</option>)}
          </select>
        </label>
        <label class="inline">Labeler
          <select value={query.labeler ?? ""} data-testid="filter-labeler" onChange={(e) => set({ labeler: e.currentTarget.value })}>
            <option value="">anyone</option>
            {members.map((m) => <option key={m.user.id} value={String(m.user.id)}>{m.user.name}</option>)}
          </select>
        </label>
        <label class="inline">Agreement
          <select value={query.agreement ?? ""} data-testid="filter-agreement" onChange={(e) => set({ agreement: e.currentTarget.value })}>
            <option value="">any</option>
            {AGREEMENTS.map(([v, n]) => <option key={v} value={v}>{n}</option>)}
          </select>
        </label>
        {tri("needs_review", "Needs review")}
        {tri("has_prelabel", "Has prelabel")}
        {queryString(query) && <a href={dataHash(pid)} data-testid="clear-filters">Clear</a>}
      </div>
      <div class="row dm-statuses">
        {STATUSES.map((s) => (
          <label key={s} class={`dm-status ${s}`}>
            <input type="checkbox" checked={statuses.has(s)} onChange={() => toggle(s)} data-testid={`status-${s}`} />
            {STATUS_NAMES[s]}
          </label>
        ))}
      </div>
    </section>
  );
}

function ItemList({ project, tree, query, members }: {
  project: Project; tree: LabelNode[]; query: Query; members: Member[];
}) {
  const pid = project.id;
  const qs = queryString(query);
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [page, setPage] = useState<ItemPage | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [count, setCount] = useState<{ matching: number; capped: boolean } | null>(null);
  const [selected, setSelected] = useState<Set<number>>(new Set());
  const [everything, setEverything] = useState(false);
  const [tick, setTick] = useState(0);
  const [view, setView] = useState<"grid" | "list">(() => (localStorage.getItem("dm-view") as "grid" | "list") || "grid");
  const color = useMemo(() => labelColors(tree), [tree]);
  const name = useMemo(() => labelNames(tree), [tree]);
  const cursor = cursors[cursors.length - 1];

  useEffect(() => {
    setCursors([null]);
    setSelected(new Set());
    setEverything(false);
  }, [qs]);
  useEffect(() => {
    let live = true;
    setPage(null);
    listPage(pid, query, cursor).then((p) => live && (setPage(p), setError(null)), (e) => live && setError(e));
    return () => { live = false; };
  }, [qs, cursor, tick]);
  useEffect(() => {
    let live = true;
    setCount(null);
    countItems(pid, query).then((c) => live && setCount(c), () => undefined);
    return () => { live = false; };
  }, [qs, tick]);

  const ids = page?.items.map((i) => i.id) ?? [];
  const allOnPage = ids.length > 0 && ids.every((i) => selected.has(i));
  const toggle = (iid: number) => {
    const next = new Set(selected);
    next.has(iid) ? next.delete(iid) : next.add(iid);
    setSelected(next);
    setEverything(false);
  };
  const matching = count ? `${count.matching.toLocaleString()}${count.capped ? "+" : ""}` : "…";
  const chooseView = (v: "grid" | "list") => { setView(v); localStorage.setItem("dm-view", v); };
  const open = (iid: number) => navigate(dataHash(pid, query, iid));

  return (
    <>
      <Filters pid={pid} query={query} members={members} />
      <div class="row dm-bar">
        <span data-testid="matching">{matching} item{count?.matching === 1 ? " matches" : "s match"}</span>
        <label class="inline"><input type="checkbox" checked={allOnPage} data-testid="select-page"
          onChange={() => { setSelected(allOnPage ? new Set() : new Set([...selected, ...ids])); setEverything(false); }} />
          Select this page</label>
        {(selected.size > 0 || everything) && (
          <button type="button" class="link" data-testid="select-all-matching"
            onClick={() => setEverything(!everything)}>
            {everything ? "Select only what is ticked" : `Select all ${matching} matching`}</button>
        )}
        <span class="spacer" />
        <div class="dm-toggle">
          <button type="button" class={view === "grid" ? "on" : ""} onClick={() => chooseView("grid")}>Grid</button>
          <button type="button" class={view === "list" ? "on" : ""} onClick={() => chooseView("list")}>List</button>
        </div>
      </div>
      <Actions project={project} selection={everything ? { everything: true, query } : { ids: [...selected] }}
        count={everything ? matching : String(selected.size)}
        onDone={() => { setSelected(new Set()); setEverything(false); setTick((t) => t + 1); }} />
      <ErrorBox error={error} />
      {!page && !error && <Spinner />}
      {page && page.items.length === 0 && <p class="muted" data-testid="no-items">No items match.</p>}
      {page && view === "grid" && (
        <div class="dm-grid" data-testid="items">
          {page.items.map((it) => (
            <div key={it.id} class={`dm-card ${selected.has(it.id) || everything ? "selected" : ""}`} data-testid="item-card">
              <input type="checkbox" class="dm-tick" aria-label={`select ${it.key}`} checked={selected.has(it.id) || everything}
                onChange={() => toggle(it.id)} />
              <a href={dataHash(pid, query, it.id)} class="dm-open" title={it.key}>
                <Overlay pid={pid} iid={it.id} aspect={it.width && it.height ? it.width / it.height : null} annotation={it.final} color={color} name={name} alt={it.key} />
              </a>
              <div class="dm-caption">
                <a href={dataHash(pid, query, it.id)} class="dm-key" data-testid="item-key">{it.key}</a>
                <span class={`dm-status-badge ${it.status}`}>{STATUS_NAMES[it.status as Status] ?? it.status}</span>
              </div>
            </div>
          ))}
        </div>
      )}
      {page && view === "list" && (
        <table class="list dm-table" data-testid="items">
          <thead><tr><th /><th>File</th><th>Status</th><th>Decided</th><th class="num">Agreement</th><th>Changed</th></tr></thead>
          <tbody>
            {page.items.map((it) => (
              <tr key={it.id} onDblClick={() => open(it.id)}>
                <td><input type="checkbox" aria-label={`select ${it.key}`} checked={selected.has(it.id) || everything}
                  onChange={() => toggle(it.id)} /></td>
                <td><a href={dataHash(pid, query, it.id)} data-testid="item-key">{it.key}</a></td>
                <td><span class={`dm-status-badge ${it.status}`}>{STATUS_NAMES[it.status as Status] ?? it.status}</span></td>
                <td>{it.decided_by ?? ""}</td>
                <td class="num">{it.agreement === null ? "" : `${Math.round(it.agreement * 100)}%`}</td>
                <td>{new Date(it.updated_at).toLocaleString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div class="row dm-pager">
        <button type="button" disabled={cursors.length === 1} data-testid="prev-page"
          onClick={() => setCursors(cursors.slice(0, -1))}>← Previous page</button>
        <span class="muted">page {cursors.length}</span>
        <button type="button" disabled={!page?.next_cursor} data-testid="next-page"
          onClick={() => page?.next_cursor && setCursors([...cursors, page.next_cursor])}>Next page →</button>
      </div>
    </>
  );
}
