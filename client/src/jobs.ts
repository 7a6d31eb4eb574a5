// Long work the server runs as a job (a binding's registration, a refresh, an import): the
// request answers at once with the job, and the page follows it until it ends.
import { ApiError, get } from "./api";

export interface Job<R = any> {
  id: number;
  project_id: number;
  kind: "bind" | "refresh" | "label_import" | "table_import";
  status: "queued" | "running" | "done" | "failed" | "cancelled";
  done: number;
  total: number | null;
  result: R | null;
  error: { code: string; message: string; details?: unknown } | null;
  created_at: string;
  finished_at: string | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Follow a job until it ends; its result when done, an ApiError (as the request would have
 * answered) when it failed or was cancelled. Polling backs off from 150 ms to 1 s. */
export async function waitForJob<R = any>(job: Job<R>, onProgress?: (job: Job<R>) => void): Promise<R> {
  let current = job;
  let pause = 150;
  while (current.status === "queued" || current.status === "running") {
    onProgress?.(current);
    await sleep(pause);
    pause = Math.min(pause * 1.5, 1000);
    current = (await get<{ job: Job<R> }>(`/api/v1/jobs/${job.id}`)).job;
  }
  if (current.status === "done") return current.result as R;
  if (current.status === "cancelled") throw new ApiError(409, "job_cancelled", "the job was cancelled");
  const err = current.error;
  throw new ApiError(422, err?.code ?? "job_failed", err?.message ?? "the job failed", err?.details ?? null);
}
