// Asking the server for work and giving it back. A request names the leases this tab holds
// already (`holding`), so the server answers with the labeler's other live leases first (a
// reload gets its page back) and then new ones. Leases the labeler walks away from are
// released rather than left to expire, so others get those items at once.
import { ApiError, post, type Lease } from "../../api";

export async function nextLeases(pid: number, count: number, holding: Lease[]): Promise<Lease[]> {
  const r = await post<{ leases: Lease[] }>(`/api/v1/projects/${pid}/tasks/next`,
    { count, holding: holding.map((l) => l.lease_id) });
  return r.leases;
}

const pending = new Set<Promise<unknown>>();

/** Give leases back. `keepalive` lets the request outlive the page (closing the tab);
 * `afterS` gives them back only after that many seconds unless this labeler resumes them
 * first (a closing tab cannot be told from a reload). */
export function release(leases: Lease[], keepalive = false, afterS = 0): Promise<void> {
  const ids = [...new Set(leases.map((l) => l.lease_id))];
  if (!ids.length) return Promise.resolve();
  const sent = fetch("/api/v1/leases/release", {
    method: "POST", credentials: "same-origin", keepalive,
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ lease_ids: ids, after_s: afterS }),
  }).then(async (res) => {
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw new ApiError(res.status, body?.error?.code ?? "http_error", body?.error?.message ?? res.statusText);
    }
  });
  pending.add(sent);
  const done = sent.catch(() => undefined); // an unreleased lease still expires on its own
  void done.finally(() => pending.delete(sent));
  return done;
}

/** Wait for releases on their way (signing out must not overtake them: they need the session). */
export function releasesSettled(): Promise<unknown> {
  return Promise.allSettled([...pending]);
}

/** Keep leases alive while they are on screen: the server's lease time is a limit on
 * abandoned work, not on how long a hard item may take. */
export async function extend(leases: Lease[]): Promise<void> {
  await Promise.allSettled(leases.map((l) => post(`/api/v1/leases/${l.lease_id}/extend`)));
}

export interface Submitted {
  lease_id: string;
  ok: boolean;
  status?: number;
  error?: { code: string; message: string };
}

/** Submit a page of leases in one request (one transaction on the server). Resolves once
 * every lease is either stored or refused for good (a lease the rules refuse, e.g. an item
 * decided meanwhile, cannot be submitted again); throws when some could be stored by
 * submitting again (edits still on their way, the server busy), naming how many. Leases
 * already stored answer "repeated" on a second try, so submitting the page again is safe. */
export async function submitPage(items: { lease_id: string; state_vector: string; duration_ms: number }[]): Promise<Submitted[]> {
  const r = await post<{ results: Submitted[] }>("/api/v1/leases/submit", { submissions: items });
  const again = r.results.filter((x) => !x.ok && (x.error?.code === "document_behind" || (x.status ?? 0) >= 500));
  if (again.length) {
    const first = again[0];
    throw new ApiError(first.status ?? 409, first.error?.code ?? "not_submitted",
      `${again.length} of ${r.results.length} images were not submitted: ${first.error?.message ?? "try again"}`);
  }
  return r.results;
}
