// Live project events from `/events/{pid}`: one WebSocket per page, authenticated by the
// session cookie, reopened with exponential backoff whenever it drops.
import { useEffect, useRef, useState } from "preact/hooks";
import { wsUrl } from "./api";
import { CLOSE_SIGNED_OUT, NO_LONGER_AVAILABLE, sessionEnded } from "./ui";

export type ItemStatus = "unlabeled" | "in_progress" | "labeled" | "needs_review" | "missing" | "skipped";

interface EventBase {
  project_id: number;
  at: string;
}

export interface ProgressEvent extends EventBase {
  type: "progress";
  counts: Partial<Record<ItemStatus, number>>;
  total: number;
}

export interface LeasedEvent extends EventBase {
  type: "leased";
  user_id: number;
  items: number[];
}

export interface ReleasedEvent extends EventBase {
  type: "released";
  user_id: number;
  leases: number;
}

export interface SubmittedEvent extends EventBase {
  type: "submitted";
  user_id: number;
  item_id: number;
  key?: string;
  item_status: ItemStatus;
  decided: boolean;
  agreement: number | null;
  target: number;
}

export interface DecidedEvent extends EventBase {
  type: "decided";
  item_id: number;
  key?: string;
  by: number;
  how: string;
}

export interface ReopenedEvent extends EventBase {
  type: "reopened";
  item_id: number;
  key?: string;
  by: number;
}

export interface ExportEvent extends EventBase {
  type: "export";
  export_id: number;
  status: "running" | "done" | "failed";
  done: number;
  total: number | null;
  warnings?: string[];
  error?: string;
}

/** A job (a data registration, a refresh, an import) moved on. */
export interface JobEvent extends EventBase {
  type: "job";
  job_id: number;
  job_kind: string;
  status: "queued" | "running" | "done" | "failed" | "cancelled";
  done?: number;
  total?: number | null;
}

/** An owner acted on a selection in the data manager (the first few items named). */
export interface ItemsChangedEvent extends EventBase {
  type: "items_changed";
  action: "reopen" | "review" | "skip" | "delete";
  by: number;
  count: number;
  items: { id: number; key: string }[];
}

export type ProjectEvent =
  | ProgressEvent | LeasedEvent | ReleasedEvent | SubmittedEvent | DecidedEvent | ReopenedEvent | ExportEvent
  | ItemsChangedEvent | JobEvent;

/** connecting: opening; open: receiving; retrying: dropped, waiting to reopen;
 *  denied: the server refused this user (signed out, no longer a member): no retries. */
export type ConnectionState = "connecting" | "open" | "retrying" | "denied";

export interface Connection {
  state: ConnectionState;
  attempt: number;
  retryAt: number | null;
  reason: string | null;
  /** Reopen now (after a refusal, or to skip the wait). */
  reconnect: () => void;
}

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30_000;
// The server sends a progress snapshot every 5 s; this much silence means a dead connection
// that the browser has not noticed (a sleeping laptop, a dropped proxy).
const SILENCE_MS = 20_000;

function backoff(attempt: number): number {
  const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (attempt - 1));
  return Math.round(base * (0.5 + Math.random() * 0.5));
}

/** Close codes 4000 + HTTP status: the server refused the handshake, or ended an open
 * socket because its user lost access (4401 signed out, 4403 no longer allowed). */
function refused(code: number): boolean {
  return code === 4401 || code === 4403 || code === 4404;
}

export function useProjectEvents(pid: number, onEvent: (event: ProjectEvent) => void,
  enabled = true): Connection {
  const handler = useRef(onEvent);
  handler.current = onEvent;
  const [generation, setGeneration] = useState(0);
  const [status, setStatus] = useState<Omit<Connection, "reconnect">>(
    { state: "connecting", attempt: 0, retryAt: null, reason: null });

  useEffect(() => {
    if (!enabled) return;
    let socket: WebSocket | null = null;
    let retryTimer: ReturnType<typeof setTimeout> | undefined;
    let silenceTimer: ReturnType<typeof setTimeout> | undefined;
    let attempt = 0;
    let stopped = false;

    const connect = () => {
      clearTimeout(retryTimer);
      retryTimer = undefined;
      setStatus({ state: "connecting", attempt, retryAt: null, reason: null });
      const ws = new WebSocket(wsUrl(`/events/${pid}`));
      socket = ws;
      const watch = () => {
        clearTimeout(silenceTimer);
        silenceTimer = setTimeout(() => ws.close(), SILENCE_MS);
      };
      ws.onopen = () => {
        watch();
        setStatus({ state: "open", attempt, retryAt: null, reason: null });
      };
      ws.onmessage = (message) => {
        watch();
        if (attempt !== 0) {
          attempt = 0;
          setStatus({ state: "open", attempt, retryAt: null, reason: null });
        }
        let event: ProjectEvent;
        try {
          event = JSON.parse(String(message.data));
        } catch {
          return;
        }
        if (event && typeof event.type === "string") handler.current(event);
      };
      ws.onclose = (e) => {
        clearTimeout(silenceTimer);
        if (stopped || socket !== ws) return;
        socket = null;
        if (refused(e.code)) {
          // Also sent to an open socket once its user loses access: no retries.
          const reason = e.code === CLOSE_SIGNED_OUT ? "signed out" : NO_LONGER_AVAILABLE;
          setStatus({ state: "denied", attempt, retryAt: null, reason });
          if (e.code === CLOSE_SIGNED_OUT) sessionEnded();
          return;
        }
        attempt += 1;
        const delay = backoff(attempt);
        setStatus({ state: "retrying", attempt, retryAt: Date.now() + delay, reason: e.reason || null });
        retryTimer = setTimeout(connect, delay);
      };
    };

    // Coming back online or to the tab is a good moment to skip the rest of the wait.
    const hurry = () => {
      if (retryTimer !== undefined && document.visibilityState === "visible") connect();
    };
    addEventListener("online", hurry);
    document.addEventListener("visibilitychange", hurry);
    connect();
    return () => {
      stopped = true;
      clearTimeout(retryTimer);
      clearTimeout(silenceTimer);
      removeEventListener("online", hurry);
      document.removeEventListener("visibilitychange", hurry);
      socket?.close();
    };
  }, [pid, enabled, generation]);

  return { ...status, reconnect: () => setGeneration((g) => g + 1) };
}
