// The data manager's state in the URL (so a filtered view can be linked, reloaded and walked
// item by item) and its calls to the item listing API.
import { get, post, type Item } from "../../api";

export type Status = "unlabeled" | "in_progress" | "labeled" | "needs_review" | "missing" | "skipped";
export const STATUSES: Status[] = ["unlabeled", "in_progress", "labeled", "needs_review", "skipped", "missing"];
export const STATUS_NAMES: Record<Status, string> = {
  unlabeled: "Unlabeled", in_progress: "In progress", labeled: "Labeled", needs_review: "Needs review",
  skipped: "Skipped", missing: "Missing",
};
export const AGREEMENTS: [string, string][] = [
  ["consensus", "Decided by consensus"], ["single", "Decided by one labeler"], ["reviewed", "Decided in review"],
  ["imported", "Imported label"], ["disagreement", "Labelers disagreed"], ["raised", "Needed extra labelers"],
];
export const SORTS: [string, string][] = [
  ["id", "Order added"], ["key", "File name"], ["-updated_at", "Last change (newest first)"],
  ["updated_at", "Last change (oldest first)"], ["status", "Status"], ["-key", "File name (Z–A)"],
];
/** The filter and sort fields the listing API takes, as they appear in the URL. */
export const FIELDS = ["status", "labeler", "agreement", "needs_review", "has_prelabel", "name", "sort"] as const;
export type Field = (typeof FIELDS)[number];
export type Query = Partial<Record<Field, string>>;

export interface Listed extends Item {
  agreement: number | null;
  target: number | null;
  has_prelabel: boolean;
  updated_at: string;
}

export interface Page {
  items: Listed[];
  next_cursor: string | null;
  prev_cursor: string | null;
  partial: boolean;
}

export interface Annotation {
  user: { id: number; name: string };
  annotation: any;
  submitted_at: string;
}

export interface Detail extends Listed {
  final: any;
  prelabel: any;
  annotations: Annotation[];
  working: { user: { id: number; name: string } }[];
  decided_by_user: { id: number; name: string } | null;
  decided_at: string | null;
}

/** The query of a data-manager hash ("#/p/1/data/5?status=labeled" -> {status: "labeled"}). */
export function readQuery(hash: string): Query {
  const q = new URLSearchParams(hash.split("?")[1] ?? "");
  const out: Query = {};
  for (const f of FIELDS) {
    const v = q.get(f);
    if (v) out[f] = v;
  }
  return out;
}

export function queryString(q: Query): string {
  const p = new URLSearchParams();
  for (const f of FIELDS) if (q[f]) p.set(f, q[f]!);
  return p.toString();
}

/** The API's query string: several statuses are several `status` parameters. */
function apiQuery(q: Query): string {
  const p = new URLSearchParams();
  for (const f of FIELDS) {
    if (!q[f]) continue;
    if (f === "status") for (const s of q.status!.split(",")) p.append("status", s);
    else p.set(f, q[f]!);
  }
  return p.toString();
}

export function dataHash(pid: number, q: Query = {}, iid?: number): string {
  const qs = queryString(q);
  return `#/p/${pid}/data${iid ? `/${iid}` : ""}${qs ? `?${qs}` : ""}`;
}

const PAGE = 60;
// A file-name search examines a bounded stretch of the project per request; the browser asks
// again until the page is full or the project is searched through (bounded, to stay responsive).
const MORE_ROUNDS = 100;

export async function listPage(pid: number, q: Query, cursor: string | null): Promise<Page> {
  const base = `/api/v1/projects/${pid}/items?${apiQuery(q)}&limit=${PAGE}`;
  let page = await get<Page>(`${base}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
  for (let round = 0; page.partial && page.items.length < PAGE && page.next_cursor && round < MORE_ROUNDS; round++) {
    const more = await get<Page>(`${base}&cursor=${encodeURIComponent(page.next_cursor)}`);
    page = { ...more, items: [...page.items, ...more.items], prev_cursor: page.prev_cursor };
  }
  return page;
}

export function countItems(pid: number, q: Query): Promise<{ matching: number; capped: boolean }> {
  const { sort: _sort, ...filter } = q;
  return get(`/api/v1/projects/${pid}/items/count?${apiQuery(filter)}`);
}

export function neighbours(pid: number, iid: number, q: Query): Promise<{ previous: Listed | null; next: Listed | null }> {
  return get(`/api/v1/projects/${pid}/items/${iid}/neighbours?${apiQuery(q)}`);
}

export type Action = "reopen" | "review" | "skip" | "delete" | "export";

/** The listing filter as the actions endpoint's `filter` body. */
export function filterBody(q: Query): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (q.status) out.status = q.status.split(",");
  if (q.labeler) out.labeler = Number(q.labeler);
  if (q.agreement) out.agreement = q.agreement;
  if (q.needs_review) out.needs_review = q.needs_review === "true";
  if (q.has_prelabel) out.has_prelabel = q.has_prelabel === "true";
  if (q.name) out.name = q.name;
  return out;
}

/** Act on the items matching `filter`, narrowed to `ids` when given. */
export function act(pid: number, action: Action, selection: { ids?: number[]; filter: Record<string, unknown> },
                    extra: Record<string, unknown> = {}): Promise<any> {
  return post(`/api/v1/projects/${pid}/items/actions`, { action, ...selection, ...extra });
}
