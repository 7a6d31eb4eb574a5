// The HTTP API under /api/v1: one fetch wrapper that turns the server's error shape
// ({"error": {code, message, details}}) into ApiError, and the types the pages use.

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public details: unknown = null,
  ) {
    super(message);
  }
}

async function parse(res: Response): Promise<any> {
  const text = await res.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const err = body?.error;
    throw new ApiError(res.status, err?.code ?? "http_error", err?.message ?? `${res.status} ${res.statusText}`,
      err?.details ?? null);
  }
  return body;
}

export async function request<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  let res: Response;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, "offline", "the server cannot be reached; check your connection");
  }
  if (res.status === 401 && !path.endsWith("/auth/login") && !path.endsWith("/me")) {
    location.hash = "#/login";
  }
  return parse(res);
}

export const get = <T = any>(path: string) => request<T>("GET", path);
export const post = <T = any>(path: string, body?: unknown) => request<T>("POST", path, body ?? {});
export const put = <T = any>(path: string, body?: unknown) => request<T>("PUT", path, body);
export const patch = <T = any>(path: string, body?: unknown) => request<T>("PATCH", path, body);
export const del = <T = any>(path: string) => request<T>("DELETE", path);

/** A multipart POST with upload progress (fetch cannot report it). */
export function upload<T = any>(path: string, form: FormData, onProgress?: (sent: number, total: number) => void):
  Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.withCredentials = true;
    xhr.upload.onprogress = (e) => onProgress?.(e.loaded, e.total);
    xhr.onerror = () => reject(new ApiError(0, "offline", "the upload failed; check your connection"));
    xhr.onload = () => {
      parse(new Response(xhr.responseText, { status: xhr.status, statusText: xhr.statusText }))
        .then(resolve, reject);
    };
    xhr.send(form);
  });
}

export type Role = "owner" | "reviewer" | "labeler";
export type TaskType = "multiclass" | "multilabel" | "bbox" | "polygon" | "semantic";

export interface User {
  id: number;
  email: string;
  name: string;
  is_admin?: boolean;
}

export interface LabelNode {
  id: number;
  name: string;
  path: string;
  depth: number;
  hotkey: string | null;
  /** The key its owner chose, if any (`hotkey` is the key in effect, chosen or automatic). */
  assigned_hotkey?: string | null;
  used: boolean;
  children: LabelNode[];
}

export interface Project {
  id: number;
  name: string;
  media_type: string;
  task_type: TaskType;
  status: string;
  role: Role;
  instructions: { text: string; html: string; url: string | null };
  consensus: { enabled: boolean; min?: number; max?: number; threshold?: number };
  ml_assist: { enabled: boolean; [k: string]: unknown };
  dataset: any;
  refresh: { enabled: boolean; interval_s?: number; last_refresh_at: string | null };
  ingest: any;
  label_count: number;
  editable: Record<string, boolean>;
  created_at: string;
  updated_at: string;
  started_at: string | null;
}

export interface Item {
  id: number;
  key: string;
  media_kind: "image" | "dicom";
  width: number | null;
  height: number | null;
  frames: number | null;
  status: string;
  decided_by: string | null;
  final?: any;
  prelabel?: any;
}

export interface Lease {
  lease_id: string;
  item: Item;
  expires_at: number;
  document: string;
}

/** Labels in display order (pre-order), each with its path and hotkey. */
export function flattenLabels(tree: LabelNode[]): LabelNode[] {
  const out: LabelNode[] = [];
  const walk = (nodes: LabelNode[]) => {
    for (const n of nodes) {
      out.push(n);
      walk(n.children);
    }
  };
  walk(tree);
  return out;
}

export function mediaUrl(pid: number, iid: number, opts: Record<string, string | number> = {}): string {
  const q = new URLSearchParams(Object.entries(opts).map(([k, v]) => [k, String(v)]));
  const qs = q.toString();
  return `/api/v1/projects/${pid}/items/${iid}/media${qs ? "?" + qs : ""}`;
}

export function wsUrl(path: string): string {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;
}
