// Exports for owners and reviewers: choose a format that fits the task type, start a background
// export, follow its progress live, download or delete the file.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, del, get, post, type Project, type TaskType } from "../api";
import { useProjectEvents, type ProjectEvent } from "../events";
import { ErrorBox, Page, Spinner, formatBytes, useProject } from "../ui";
import { ConnectionBadge } from "./Monitor";
import "../monitor.css";

type Format = "coco" | "jsonl" | "csv" | "masks" | "voc" | "yolo";
type ExportStatus = "queued" | "running" | "done" | "failed";

interface ExportJob {
  id: number;
  project_id: number;
  format: Format;
  filters: { needs_review?: boolean; raw_annotations?: boolean };
  image_url_prefix: string | null;
  status: ExportStatus;
  done: number;
  total: number | null;
  size_bytes: number | null;
  warnings: string[] | null;
  error: string | null;
  created_by: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  download_url: string | null;
}

const ALL: TaskType[] = ["multiclass", "multilabel", "bbox", "polygon", "semantic"];
const FORMATS: { id: Format; name: string; fits: TaskType[]; about: string }[] = [
  { id: "coco", name: "COCO JSON", fits: ALL,
    about: "categories named by label path; pixel boxes, polygon segmentation, semantic masks as RLE per class" },
  { id: "jsonl", name: "JSON Lines (Azure ML AutoML)", fits: ["multiclass", "multilabel", "bbox", "polygon"],
    about: "one image per line: image_url, label(s) with confidence, normalized boxes or polygons" },
  { id: "csv", name: "CSV", fits: ["multiclass", "multilabel"],
    about: "image, label(s), confidence, decided_by, decided_by_users, status" },
  { id: "masks", name: "Mask PNGs", fits: ["semantic"],
    about: "zip of indexed PNG masks, one per image, plus classes.csv" },
  { id: "voc", name: "Pascal VOC", fits: ["bbox"], about: "zip of one Pascal VOC XML file per image" },
  { id: "yolo", name: "YOLO", fits: ["bbox", "polygon"], about: "zip of YOLO txt files, classes.txt and data.yaml" },
];
const FORMAT_NAMES = Object.fromEntries(FORMATS.map((f) => [f.id, f.name])) as Record<Format, string>;
const POLL_MS = 1000;

function active(job: ExportJob): boolean {
  return job.status === "queued" || job.status === "running";
}

function took(job: ExportJob): string | null {
  if (!job.started_at || !job.finished_at) return null;
  const s = (Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000;
  if (s < 1) return `${Math.max(1, Math.round(s * 1000))} ms`;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.round(s / 60)} min`;
}

function Form({ project, onStarted }: { project: Project; onStarted: (job: ExportJob) => void }) {
  const fitting = FORMATS.filter((f) => f.fits.includes(project.task_type));
  const [format, setFormat] = useState<Format>(fitting[0]?.id ?? "coco");
  const [needsReview, setNeedsReview] = useState(false);
  const [raw, setRaw] = useState(false);
  const [prefix, setPrefix] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const azure = project.dataset?.datastore?.kind === "azure_blob";

  const start = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const body: Record<string, unknown> = { format, filters: { needs_review: needsReview, raw_annotations: raw } };
      if (format === "jsonl" && prefix.trim()) body.image_url_prefix = prefix.trim();
      const res = await post<{ export: ExportJob }>(`/api/v1/projects/${project.id}/exports`, body);
      setError(null);
      onStarted(res.export);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card export-form" onSubmit={start}>
      <h3>Format</h3>
      <div class="formats" role="radiogroup">
        {fitting.map((f) => (
          <label key={f.id} class={`format${format === f.id ? " chosen" : ""}`}>
            <input type="radio" name="format" value={f.id} checked={format === f.id}
              data-testid={`export-format-${f.id}`} onChange={() => setFormat(f.id)} />
            <span><b>{f.name}</b><span class="muted"> · {f.about}</span></span>
          </label>
        ))}
      </div>
      <h3>What to include</h3>
      <label class="inline">
        <input type="checkbox" checked={needsReview} data-testid="export-needs-review"
          onChange={(e) => setNeedsReview(e.currentTarget.checked)} />
        Items still waiting for review (they have no final label yet)
      </label>
      <label class="inline">
        <input type="checkbox" checked={raw} data-testid="export-raw-annotations"
          onChange={(e) => setRaw(e.currentTarget.checked)} />
        Every labeler's own annotation, beside the final label
      </label>
      {format === "jsonl" && (
        <label>
          Image URL prefix
          <input type="text" value={prefix} data-testid="export-prefix" placeholder={azure
            ? "default: the Azure container's URL" : "default: none (image_url is the bare item key)"}
            onInput={(e) => setPrefix(e.currentTarget.value)} />
          <span class="muted small-text">Put in front of every item's key to form its image_url.</span>
        </label>
      )}
      <ErrorBox error={error} />
      <div class="row">
        <button type="submit" class="primary" disabled={busy || fitting.length === 0} data-testid="export-start">
          {busy ? "Starting…" : "Start export"}
        </button>
        <span class="muted small-text">Runs in the background; you can leave this page.</span>
      </div>
    </form>
  );
}

function JobRow({ job, onDelete }: { job: ExportJob; onDelete: (job: ExportJob) => void }) {
  const filters = [job.filters?.needs_review && "items in review", job.filters?.raw_annotations && "every labeler's annotation"]
    .filter(Boolean).join(", ");
  const pct = job.total ? Math.min(100, (job.done / job.total) * 100) : job.status === "done" ? 100 : 0;
  const duration = took(job);
  return (
    <li class={`export-job ${job.status}`} data-testid="export-row" data-export-id={job.id} data-status={job.status}>
      <div class="job-head">
        <b>#{job.id} · {FORMAT_NAMES[job.format] ?? job.format}</b>
        <span class={`badge export-${job.status}`} data-testid="export-status">{job.status}</span>
        <span class="spacer" />
        {job.status === "done" && job.download_url && (
          <a class="button primary" href={job.download_url} download data-testid="export-download">
            Download{job.size_bytes !== null && ` (${formatBytes(job.size_bytes)})`}
          </a>
        )}
        <button type="button" class="danger" data-testid="export-delete" onClick={() => onDelete(job)}>Delete</button>
      </div>
      <div class="muted small-text">Requested {new Date(job.created_at).toLocaleString()}
        {filters && ` · with ${filters}`}
        {job.image_url_prefix && ` · image URL prefix ${job.image_url_prefix}`}</div>
      {active(job) && (
        <div class="export-progress">
          <div class="progress" data-testid="export-progress"><div style={{ width: `${pct}%` }} /></div>
          <span class="muted small-text">
            {job.status === "queued" ? "waiting to start" : job.total === null ? "counting items…"
              : `${job.done} of ${job.total} items`}
          </span>
        </div>
      )}
      {job.status === "done" && (
        <div class="muted small-text">
          {job.done} item(s){job.size_bytes !== null && ` · ${formatBytes(job.size_bytes)}`}{duration && ` · took ${duration}`}
        </div>
      )}
      {job.warnings && job.warnings.length > 0 && (
        <div class="warnings" data-testid="export-warnings">
          <b>{job.warnings.length} warning(s)</b>
          <ul>{job.warnings.map((w, i) => <li key={i}>{w}</li>)}</ul>
        </div>
      )}
      {job.status === "failed" && <div class="error" data-testid="export-error">{job.error || "the export failed"}</div>}
    </li>
  );
}

function Jobs({ project }: { project: Project }) {
  const pid = project.id;
  const [jobs, setJobs] = useState<ExportJob[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const jobsRef = useRef<ExportJob[] | null>(null);
  jobsRef.current = jobs;

  const loadAll = () => get<{ exports: ExportJob[] }>(`/api/v1/projects/${pid}/exports`).then(
    (r) => (setJobs(r.exports), setError(null)), setError);
  const merge = (id: number, change: Partial<ExportJob>) =>
    setJobs((list) => list && list.map((j) => (j.id === id ? { ...j, ...change } : j)));
  const refetch = (id: number) => get<{ export: ExportJob }>(`/api/v1/exports/${id}`).then(
    (r) => merge(id, r.export),
    (err) => {
      if (err instanceof ApiError && err.status === 404) setJobs((list) => list && list.filter((j) => j.id !== id));
    });

  const onEvent = (e: ProjectEvent) => {
    if (e.type !== "export") return;
    const known = jobsRef.current?.find((j) => j.id === e.export_id);
    if (!known) {
      loadAll();
      return;
    }
    const change: Partial<ExportJob> = { status: e.status, done: e.done };
    if (e.total !== null) change.total = e.total;
    if (e.warnings) change.warnings = e.warnings;
    if (e.error) change.error = e.error;
    merge(e.export_id, change);
    // The event does not carry the file's size or link.
    if (e.status !== "running") refetch(e.export_id);
  };
  const connection = useProjectEvents(pid, onEvent);

  useEffect(() => {
    loadAll();
  }, [pid]);
  useEffect(() => {
    if (connection.state === "open") loadAll();
  }, [connection.state]);

  // Polling in addition to the events: they are best effort, and a queued export sends none.
  const activeIds = (jobs ?? []).filter(active).map((j) => j.id).join(",");
  useEffect(() => {
    if (!activeIds) return;
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      Promise.all(activeIds.split(",").map((id) => refetch(Number(id)))).finally(() => (busy = false));
    }, POLL_MS);
    return () => clearInterval(timer);
  }, [activeIds]);

  const remove = async (job: ExportJob) => {
    const what = active(job) ? "Cancel and delete" : "Delete";
    if (!confirm(`${what} export #${job.id} (${FORMAT_NAMES[job.format] ?? job.format})?`)) return;
    try {
      await del(`/api/v1/exports/${job.id}`);
      setJobs((list) => list && list.filter((j) => j.id !== job.id));
      setError(null);
    } catch (err) {
      setError(err);
    }
  };

  return (
    <>
      <Form project={project} onStarted={(job) => setJobs((list) => [job, ...(list ?? []).filter((j) => j.id !== job.id)])} />
      <div class="row export-head">
        <h2>Exports</h2>
        <span class="spacer" />
        <ConnectionBadge connection={connection} />
      </div>
      <ErrorBox error={error} />
      {jobs === null && !error && <Spinner />}
      {jobs && jobs.length === 0 && <p class="muted">No exports yet.</p>}
      {jobs && jobs.length > 0 && (
        <ul class="export-list" data-testid="export-list">
          {jobs.map((j) => <JobRow key={j.id} job={j} onDelete={remove} />)}
        </ul>
      )}
    </>
  );
}

export function Export({ pid }: { pid: number }) {
  const [project, , error] = useProject(pid);
  if (!project) return <Page title="Export"><ErrorBox error={error} />{!error && <Spinner />}</Page>;
  if (project.role !== "owner" && project.role !== "reviewer") {
    return (
      <Page title="Export" project={project}>
        <p class="error">Exports are open to the project's owners and reviewers.</p>
      </Page>
    );
  }
  return (
    <Page title={`Export · ${project.name}`} project={project}>
      <Jobs project={project} />
    </Page>
  );
}
