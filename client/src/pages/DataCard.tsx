// A project's data before labeling starts: bind it, or change it, with the wizard's form and
// dry run. A project created without data (or left without it by an older version's wizard)
// is finished here. Once labeling starts the binding is fixed, so this card is not shown.
import { useState } from "preact/hooks";
import { put, type Project } from "../api";
import { type Job, waitForJob } from "../jobs";
import { ErrorBox, useUser } from "../ui";
import { checkKey, checkProblem, NO_CHECK, runCheck, type DataCheckState } from "./wizard/DataCheck";
import { DataStep } from "./wizard/DataStep";
import { uploadFiles, type UploadProgress } from "./wizard/files";
import { datasetBody, serverIssues } from "./wizard/requests";
import { INITIAL_DRAFT, type AzureCredential, type DataDraft } from "./wizard/state";
import { validateData } from "./wizard/validate";
import "../wizard.css";

/** The form's starting values: the project's binding (credentials are never sent back). */
function draftOf(project: Project, admin: boolean): DataDraft {
  const base: DataDraft = { ...INITIAL_DRAFT.data, source: admin ? "local" : "upload" };
  const bound = project.dataset;
  const store = bound?.datastore;
  if (!store) return base;
  const refresh = {
    refreshEnabled: project.refresh.enabled,
    refreshMinutes: Math.round((project.refresh.interval_s ?? 3600) / 60),
  };
  if (store.kind === "local") return { ...base, ...refresh, source: "local", localPath: store.path, pattern: bound.pattern };
  if (store.kind === "azure_blob") {
    return {
      ...base, ...refresh, source: "azure_blob", azureUrl: store.account_url, azureContainer: store.container,
      azurePrefix: store.prefix ?? "", azureCredentialKind: (store.credential ?? "sas_token") as AzureCredential,
      pattern: bound.pattern,
    };
  }
  return { ...base, source: "upload" };
}

export function DataCard({ project, onBound }: { project: Project; onBound: () => void }) {
  const admin = useUser()?.is_admin === true;
  const [draft, setDraft] = useState<DataDraft>(() => draftOf(project, admin));
  const [tried, setTried] = useState(false);
  const [check, setCheck] = useState<DataCheckState>(NO_CHECK);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const [progress, setProgress] = useState<UploadProgress | null>(null);
  const [stored] = useState(() => new Set<string>());
  const issues = validateData(draft);
  const current = check.key === checkKey(draft);

  const runDryRun = async (): Promise<boolean> => {
    if (current && check.result) return checkProblem(check.result, draft) === null;
    const key = checkKey(draft);
    setCheck({ key, busy: true, result: null, error: null });
    try {
      const result = await runCheck(draft, project.id);
      setCheck({ key, busy: false, result, error: null });
      return checkProblem(result, draft) === null;
    } catch (e) {
      setCheck({ key, busy: false, result: null, error: e });
      return false;
    }
  };

  const bind = async () => {
    setTried(true);
    if (Object.keys(issues).length > 0) return;
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      if (draft.source === "upload") {
        if (project.dataset?.datastore?.kind !== "upload") {
          const bound = await put<{ job: Job | null }>(`/api/v1/projects/${project.id}/dataset`,
            { datastore: { kind: "upload" } });
          if (bound.job) await waitForJob(bound.job);
        }
        let total = 0;
        await uploadFiles(project.id, draft.files.filter((f) => !stored.has(f.key)), setProgress, (batch, reply) => {
          batch.forEach((f) => stored.add(f.key));
          total = reply.ingest.total_items;
        });
        setDone(`${total.toLocaleString()} images in the project.`);
      } else {
        if (!(await runDryRun())) return;
        const reply = await put<{ job: Job<{ total_items: number }> | null }>(
          `/api/v1/projects/${project.id}/dataset`, datasetBody(draft));
        const ingest = reply.job ? await waitForJob(reply.job) : null;
        setDone(ingest ? `${ingest.total_items.toLocaleString()} images registered.` : "Saved.");
      }
      onBound();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
      setProgress(null);
    }
  };

  const shown = { ...serverIssues(error), ...serverIssues(current ? check.error : null), ...(tried ? issues : {}) };
  return (
    <section class="card wz-data-card" data-testid="project-data" style="margin-top:16px">
      <h3>{project.dataset ? "Change the data" : "Bind the data"}</h3>
      <p class="muted">
        {project.dataset
          ? "Until labeling starts, the project can read other data: binding it replaces the images registered now."
          : "This project has no images yet. Choose where they come from; labeling can start once they are registered."}
        {" "}Once labeling starts the data is fixed (only the refresh schedule and credentials can change).
      </p>
      <ErrorBox error={error} />
      <form noValidate onSubmit={(e) => {
        e.preventDefault();
        if (!busy) void bind();
      }}>
        <fieldset class="wz-body" disabled={busy}>
          <DataStep value={draft} onChange={(v) => {
            setDraft(v);
            setError(null);
          }} issues={shown} stored={stored} check={check} checkCurrent={current} onCheck={() => {
            setTried(true);
            if (Object.keys(issues).length === 0) void runDryRun();
          }} />
        </fieldset>
        {progress && (
          <p class="muted" data-testid="project-data-progress">
            {progress.doneFiles} of {progress.totalFiles} files stored
          </p>
        )}
        {done && <p class="notice" data-testid="project-data-done">{done}</p>}
        <div class="row">
          <button type="submit" class="primary" data-testid="project-data-bind" disabled={busy || check.busy}>
            {busy ? "Working…" : draft.source === "upload" ? "Upload and add" : "Bind this data"}
          </button>
        </div>
      </form>
    </section>
  );
}
