// A project's home: status and its controls, items, members and roles, data and settings.
import { useState } from "preact/hooks";
import { post, type LabelNode } from "../api";
import { type Job, waitForJob } from "../jobs";
import { ErrorBox, Page, Spinner, useProject } from "../ui";

interface IngestOutcome {
  added: number;
  missing: number;
  restored: number;
  superseded?: boolean;
}
import { DataCard } from "./DataCard";
import { LabelsCard } from "./LabelsCard";
import { Members } from "./Members";
import { ProjectLifecycle } from "./ProjectLifecycle";
import { ProjectSettings } from "./ProjectSettings";
import {
  ITEM_STATUS_TEXT, consensusText, dataText, fieldsText, mlText, statusText, taskLong,
} from "./projectWords";

function Tree({ nodes }: { nodes: LabelNode[] }) {
  return (
    <ul class="tree">
      {nodes.map((n) => (
        <li key={n.id}>{n.hotkey && <span class="key">{n.hotkey}</span>} {n.name}
          {n.children.length > 0 && <Tree nodes={n.children} />}</li>
      ))}
    </ul>
  );
}

function everyText(seconds: number): string {
  if (seconds % 86400 === 0) return seconds === 86400 ? "day" : `${seconds / 86400} days`;
  if (seconds % 3600 === 0) return seconds === 3600 ? "hour" : `${seconds / 3600} hours`;
  if (seconds % 60 === 0) return seconds === 60 ? "minute" : `${seconds / 60} minutes`;
  return `${seconds} seconds`;
}

export function ProjectHome({ pid }: { pid: number }) {
  const [project, labels, error, reload] = useProject(pid);
  const [actionError, setActionError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [refreshNote, setRefreshNote] = useState<string | null>(null);
  if (!project) return <Page title="Project"><ErrorBox error={error} />{!error && <Spinner />}</Page>;
  const owner = project.role === "owner";
  const staff = owner || project.role === "reviewer";
  const items = (project as any).items as Record<string, number>;
  const act = async (path: string) => {
    setBusy(true);
    try {
      await post(path);
      setActionError(null);
      reload();
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(false);
    }
  };
  // A refresh is a job on the server: follow it, then say what it found.
  const refresh = async () => {
    setBusy(true);
    setRefreshNote("Looking for new and vanished files…");
    try {
      const { job } = await post<{ job: Job<IngestOutcome> }>(`/api/v1/projects/${pid}/refresh`);
      const found = await waitForJob(job);
      setRefreshNote(found.superseded ? "Done." : `Done: ${found.added.toLocaleString("en-US")} new, ` +
        `${found.missing.toLocaleString("en-US")} gone, ${found.restored.toLocaleString("en-US")} back.`);
      setActionError(null);
      reload();
    } catch (e) {
      setRefreshNote(null);
      setActionError(e);
    } finally {
      setBusy(false);
    }
  };
  const base = `/api/v1/projects/${pid}`;
  const archived = !!(project as any).archived;
  const locked = archived ? [] : Object.entries(project.editable).filter(([, ok]) => !ok).map(([k]) => k);
  return (
    <Page title={project.name} project={project}>
      {archived && <p class="notice warn" data-testid="archived-note">This project is archived: it is read-only
        and labelers no longer see it.{owner && " Unarchive it below to work on it again."}</p>}
      <div class="row">
        <span class={`badge ${archived ? "archived" : project.status}`} data-testid="project-status"
          data-status={project.status}>
          {statusText(project as any)}</span>
        <span class="muted" data-testid="project-summary">{taskLong(project.task_type)} ·{" "}
          {(items.total ?? 0).toLocaleString("en-US")} {items.total === 1 ? "image" : "images"}</span>
        <span class="spacer" />
        {owner && !archived && project.status === "initializing" &&
          <button class="primary" disabled={busy} onClick={() => act(`${base}/start`)}>Start labeling</button>}
        {owner && project.status === "running" &&
          <button disabled={busy} onClick={() => act(`${base}/pause`)}>Pause</button>}
        {owner && !archived && project.status === "paused" &&
          <button class="primary" disabled={busy} onClick={() => act(`${base}/resume`)}>Resume</button>}
        {project.status === "running" && <a class="button primary" href={`#/p/${pid}/label`}>Label</a>}
      </div>
      <ErrorBox error={actionError} />
      {owner && project.status === "initializing" && <DataCard project={project} onBound={reload} />}
      <div class="grid2" style="margin-top:16px">
        <section class="card">
          <h3>Items</h3>
          <table class="list" data-testid="item-counts">
            <tbody>
              {["unlabeled", "in_progress", "labeled", "needs_review", "skipped", "missing"].map((s) => (
                <tr key={s}><td>{staff ? <a href={`#/p/${pid}/data?status=${s}`}>{ITEM_STATUS_TEXT[s]}</a>
                  : ITEM_STATUS_TEXT[s]}</td><td>{(items[s] ?? 0).toLocaleString("en-US")}</td></tr>
              ))}
            </tbody>
          </table>
          {staff && <p><a class="button" href={`#/p/${pid}/data`} data-testid="browse-items">Browse, filter and act on items</a></p>}
          <h3>Data</h3>
          {project.dataset ? (
            <p class="muted" data-testid="data-summary">{dataText(project.dataset, items.total ?? 0)}
              {project.refresh.enabled && ` · looks for new files every ${everyText(project.refresh.interval_s ?? 3600)}`}
              {project.refresh.last_refresh_at && ` · last looked ${new Date(project.refresh.last_refresh_at).toLocaleString()}`}
            </p>
          ) : <p class="muted">No images yet.</p>}
          {owner && !archived && project.dataset &&
            <button disabled={busy} onClick={refresh}>Refresh data now</button>}
          {refreshNote && <p class="muted" data-testid="refresh-note">{refreshNote}</p>}
        </section>
        <section class="card">
          <h3>Labels</h3>
          {labels && <Tree nodes={labels} />}
          <h3>How it works</h3>
          <ul class="muted" data-testid="how-it-works">
            <li>{taskLong(project.task_type)}</li>
            <li>{consensusText(project.consensus)}</li>
            {project.task_type !== "semantic" && <li>{mlText(project.ml_assist)}</li>}
          </ul>
          {locked.length > 0 && <p class="muted" data-testid="fixed-settings">Fixed since labeling started: {fieldsText(locked)}.</p>}
          {project.instructions.html && (
            <details><summary>Instructions</summary>
              <div class="instructions" dangerouslySetInnerHTML={{ __html: project.instructions.html }} />
            </details>
          )}
        </section>
      </div>
      {owner && labels && !archived && (
        <div class="grid2" style="margin-top:16px">
          <ProjectSettings project={project} onSaved={reload} />
          <LabelsCard project={project} tree={labels} onSaved={reload} />
        </div>
      )}
      {(owner || project.role === "reviewer") && <Members project={project} />}
      {owner && <div style="margin-top:16px"><ProjectLifecycle project={project} onChanged={reload} /></div>}
    </Page>
  );
}
