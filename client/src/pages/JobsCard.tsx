// The project's recent jobs (data registrations, refreshes, imports) on the monitoring
// page, their progress followed live from the project's events.
import { useEffect, useState } from "preact/hooks";
import { get } from "../api";
import type { JobEvent } from "../events";
import type { Job } from "../jobs";

const KIND_TEXT: Record<Job["kind"], string> = {
  bind: "Registering the data",
  refresh: "Refresh",
  label_import: "Label import",
  table_import: "Table import",
};

function progressText(job: Pick<Job, "status" | "done" | "total">): string {
  if (job.status !== "running") return "";
  const done = job.done.toLocaleString("en-US");
  return job.total ? `${done} of ${job.total.toLocaleString("en-US")}` : job.done ? `${done} so far` : "working…";
}

function outcomeText(job: Job): string {
  const r = job.result as Record<string, any> | null;
  if (job.status === "failed") return job.error?.message ?? "failed";
  if (job.status !== "done" || !r) return "";
  if (typeof r.added === "number") return `${r.added.toLocaleString("en-US")} added` +
    (r.missing ? `, ${r.missing} missing` : "") + (r.restored ? `, ${r.restored} back` : "");
  if (typeof r.labeled === "number") return `${r.labeled.toLocaleString("en-US")} labeled` +
    (r.prelabeled ? `, ${r.prelabeled.toLocaleString("en-US")} prelabeled` : "");
  return "";
}

/** Owners only (the jobs API answers 403 to anyone else, and the card stays hidden). */
export function JobsCard({ pid, event }: { pid: number; event: JobEvent | null }) {
  const [jobs, setJobs] = useState<Job[] | null>(null);
  const load = () => get<{ jobs: Job[] }>(`/api/v1/projects/${pid}/jobs?limit=5`)
    .then((r) => setJobs(r.jobs), () => setJobs(null));
  useEffect(() => { load(); }, [pid]);
  useEffect(() => {
    if (!event || !jobs) return;
    if (!jobs.some((j) => j.id === event.job_id) || event.status !== "running") {
      load();  // a new job, or one that ended: its result is on the server
      return;
    }
    setJobs(jobs.map((j) => (j.id === event.job_id
      ? { ...j, status: event.status, done: event.done ?? j.done, total: event.total ?? j.total } : j)));
  }, [event]);
  if (!jobs || jobs.length === 0) return null;
  return (
    <section class="card" data-testid="jobs">
      <h3>Data jobs</h3>
      <table class="list">
        <tbody>
          {jobs.map((j) => (
            <tr key={j.id} data-testid={`job-${j.id}`} data-status={j.status}>
              <td>{KIND_TEXT[j.kind] ?? j.kind}</td>
              <td><span class={`badge ${j.status === "running" ? "running" : ""}`}>{j.status}</span></td>
              <td class="muted">{progressText(j) || outcomeText(j)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
