// What happens after Create: progress while the project is made and its data bound or
// uploaded, then the outcome and the choice to start labeling now.
import { useState } from "preact/hooks";
import { post } from "../../api";
import { formatBytes, navigate } from "../../ui";
import { StepError } from "./common";
import type { UploadProgress } from "./files";

export type Phase = "creating" | "binding" | "uploading";

export interface DataOutcome {
  totalItems: number;
  overCap: number;
  cap: number;
  skipped: number;
  errors: string[];
}

export function CreateProgress({ phase, upload }: { phase: Phase; upload: UploadProgress | null }) {
  const text = phase === "creating" ? "Creating the project…"
    : phase === "binding" ? "Reading the datastore and registering its images…" : "Uploading images…";
  const pct = upload && upload.totalBytes > 0 ? (100 * upload.sentBytes) / upload.totalBytes : 0;
  return (
    <div class="wz-progress" data-testid="wizard-progress" aria-live="polite">
      <p><span class="wz-spin" /> {text}</p>
      {phase === "uploading" && upload && (
        <div data-testid="upload-progress">
          <div class="progress" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(pct)}>
            <div style={{ width: `${pct}%` }} />
          </div>
          <p class="muted" data-testid="upload-progress-text">
            {formatBytes(Math.round(upload.sentBytes))} of {formatBytes(upload.totalBytes)} ·{" "}
            {upload.doneFiles} of {upload.totalFiles} files stored
          </p>
        </div>
      )}
    </div>
  );
}

export function Done({ pid, name, outcome, onChangeData }: {
  pid: number; name: string; outcome: DataOutcome | null; onChangeData: () => void;
}) {
  const [starting, setStarting] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const start = async () => {
    setStarting(true);
    try {
      await post(`/api/v1/projects/${pid}/start`);
      navigate(`#/p/${pid}`);
    } catch (e) {
      setError(e);
      setStarting(false);
    }
  };
  const empty = outcome !== null && outcome.totalItems === 0;
  return (
    <div class="wz-done" data-testid="wizard-done" data-project-id={pid}>
      <h2><span class="wz-ok">✓</span> Project “{name}” created</h2>
      {outcome && (
        <p data-testid="wizard-item-count">
          <strong>{outcome.totalItems.toLocaleString()}</strong> image{outcome.totalItems === 1 ? "" : "s"} ready to label.
          {outcome.skipped > 0 && <span class="muted"> {outcome.skipped.toLocaleString()} other files were skipped.</span>}
        </p>
      )}
      {outcome && outcome.overCap > 0 && (
        <div class="notice">
          {outcome.overCap.toLocaleString()} files were left out: a project holds at most {outcome.cap.toLocaleString()} images.
        </div>
      )}
      {outcome && outcome.errors.length > 0 && (
        <div class="notice"><ul>{outcome.errors.slice(0, 10).map((e) => <li>{e}</li>)}</ul></div>
      )}
      {empty && (
        <div class="error" role="alert">
          No images were found, so labeling cannot start yet. Check the folder and the file pattern.
          <div class="row"><button type="button" data-testid="wizard-change-data" onClick={onChangeData}>Change data</button></div>
        </div>
      )}
      <p class="muted">
        Labeling starts when you say so; until then you can still add members and adjust labels and instructions.
        Labelers see the images in a shuffled order fixed at the start.
      </p>
      <StepError error={error} testid="wizard-start-error" />
      <div class="row">
        <button type="button" class="primary" data-testid="wizard-start" disabled={starting || empty} onClick={start}>
          {starting ? "Starting…" : "Start labeling now"}
        </button>
        <button type="button" data-testid="wizard-open-project" onClick={() => navigate(`#/p/${pid}`)}>
          Open the project without starting
        </button>
      </div>
    </div>
  );
}

