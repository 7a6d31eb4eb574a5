// Creating the project, then binding or uploading its data. Each part runs once: after a
// failure, running again resumes where it stopped (no second project, no file sent twice).
import { useRef, useState } from "preact/hooks";
import { post, put, type Project } from "../../api";
import { type Job, waitForJob } from "../../jobs";
import { uploadFiles, type UploadProgress } from "./files";
import type { DataOutcome, Phase } from "./Finish";
import { datasetBody, projectBody, stepOfError } from "./requests";
import type { StepKey, WizardDraft } from "./state";

interface IngestJson {
  total_items: number;
  over_cap: number;
  cap: number;
  skipped: number;
  errors: string[];
}

function outcomeOf(ingest: IngestJson | null): DataOutcome | null {
  if (!ingest) return null;
  return { totalItems: ingest.total_items, overCap: ingest.over_cap, cap: ingest.cap, skipped: ingest.skipped,
    errors: ingest.errors ?? [] };
}

export interface CreateFlow {
  phase: Phase | null;
  upload: UploadProgress | null;
  created: { pid: number; name: string } | null;
  dataBound: boolean;
  outcome: DataOutcome | null;
  /** Paths of the selected files the server already holds. */
  stored: ReadonlySet<string>;
  run: (draft: WizardDraft) => Promise<void>;
  /** Allow binding other data (before labeling starts the server replaces the binding). */
  rebind: () => void;
}

export function useCreate(onError: (step: StepKey, error: unknown) => void): CreateFlow {
  const [phase, setPhase] = useState<Phase | null>(null);
  const [upload, setUpload] = useState<UploadProgress | null>(null);
  const [created, setCreated] = useState<{ pid: number; name: string } | null>(null);
  const [dataBound, setDataBound] = useState(false);
  const [outcome, setOutcome] = useState<DataOutcome | null>(null);
  const uploaded = useRef(new Set<string>());

  const sendData = async (pid: number, draft: WizardDraft) => {
    const data = draft.data;
    if (data.source !== "upload") {
      setPhase("binding");
      const reply = await put<{ job: Job<IngestJson> | null }>(`/api/v1/projects/${pid}/dataset`, datasetBody(data));
      setOutcome(outcomeOf(reply.job ? await waitForJob(reply.job) : null));
      return;
    }
    setPhase("uploading");
    const remaining = data.files.filter((p) => !uploaded.current.has(p.key));
    await uploadFiles(pid, remaining, setUpload, (batch, reply) => {
      batch.forEach((p) => uploaded.current.add(p.key));
      setOutcome((o) => ({
        totalItems: reply.ingest.total_items, overCap: (o?.overCap ?? 0) + reply.ingest.over_cap,
        cap: reply.ingest.cap, skipped: 0, errors: [],
      }));
    });
  };

  const run = async (draft: WizardDraft) => {
    let pid = created?.pid;
    if (pid === undefined) {
      setPhase("creating");
      try {
        // A folder or container is bound in the same request: the server creates the project
        // only if the binding succeeds, so a refused one leaves nothing behind. Uploads need the
        // project first; a failed upload resumes here, or from the project's page.
        const bindNow = draft.data.source !== "upload";
        const body = bindNow ? { ...projectBody(draft), dataset: datasetBody(draft.data) } : projectBody(draft);
        if (bindNow) setPhase("binding");
        const reply = await post<{ project: Project; job?: Job<IngestJson> | null }>("/api/v1/projects", body);
        pid = reply.project.id;
        setCreated({ pid, name: reply.project.name });
        if (bindNow) {
          // The project exists and is bound; its files are registered by the job it queued.
          setOutcome(outcomeOf(reply.job ? await waitForJob(reply.job) : null));
          setDataBound(true);
          setPhase(null);
          return;
        }
      } catch (e) {
        setPhase(null);
        onError(stepOfError(e, "review"), e);
        return;
      }
    }
    if (!dataBound) {
      try {
        await sendData(pid, draft);
        setDataBound(true);
      } catch (e) {
        setPhase(null);
        onError(stepOfError(e, "data"), e);
        return;
      }
    }
    setPhase(null);
  };

  const rebind = () => {
    setDataBound(false);
    setOutcome(null);
  };

  return { phase, upload, created, dataBound, outcome, stored: uploaded.current, run, rebind };
}
