// The dry run of a data binding: the server checks the folder or container and the pattern
// and says how many files would become items, with the first few names, before anything is
// created or bound. Used by the wizard's Data step and a project's data section.
import { post } from "../../api";
import { StepError } from "./common";
import { datasetBody } from "./requests";
import type { DataDraft } from "./state";

export interface CheckResult {
  matched: number;
  skipped: number;
  would_register: number;
  over_cap: number;
  cap: number;
  sample: string[];
  kinds: { image: number; dicom: number };
}

export interface DataCheckState {
  /** The request body the result or error belongs to; a different draft needs a new check. */
  key: string;
  busy: boolean;
  result: CheckResult | null;
  error: unknown;
}

export const NO_CHECK: DataCheckState = { key: "", busy: false, result: null, error: null };

/** The identity of what a check covers: the binding body, refresh settings aside. */
export function checkKey(d: DataDraft): string {
  const { datastore, pattern } = datasetBody(d);
  return JSON.stringify({ datastore, pattern });
}

/** Run the dry run for a new project (`pid` null) or an existing one. */
export async function runCheck(d: DataDraft, pid: number | null): Promise<CheckResult> {
  const path = pid === null ? "/api/v1/datasets/check" : `/api/v1/projects/${pid}/dataset/check`;
  const reply = await post<{ check: CheckResult }>(path, datasetBody(d));
  return reply.check;
}

/** What stops the data from being used as it is: no file matches (and nothing will come). */
export function checkProblem(result: CheckResult, d: DataDraft): string | null {
  if (result.matched > 0 || d.refreshEnabled) return null;
  return "No image files match: check the folder and the file pattern (only .jpg, .jpeg, .png, .bmp, .tif, "
    + ".tiff, .dcm and similar are loaded).";
}

export function DataCheckPanel({ state, current, draft, onCheck }: {
  state: DataCheckState; current: boolean; draft: DataDraft; onCheck: () => void;
}) {
  const result = current ? state.result : null;
  const problem = result && checkProblem(result, draft);
  return (
    <div class="wz-check-panel" data-testid="data-check-panel">
      <div class="row">
        <button type="button" data-testid="data-check" disabled={state.busy} onClick={onCheck}>
          {state.busy ? "Checking…" : "Check the data"}
        </button>
        <span class="muted">Lists the files now; nothing is created or changed.</span>
      </div>
      {current && state.error !== null && <StepError error={state.error} testid="data-check-error" />}
      {result && (
        <div class={problem ? "error" : "notice"} data-testid="data-check-result" role="status"
          data-matched={result.matched}>
          <p>
            <strong data-testid="data-check-count">{result.matched.toLocaleString()}</strong>
            {" "}image file{result.matched === 1 ? "" : "s"} match
            {result.kinds.dicom > 0 && ` (${result.kinds.dicom.toLocaleString()} DICOM)`}
            {result.skipped > 0 && <span class="muted"> · {result.skipped.toLocaleString()} other files skipped</span>}
          </p>
          {result.over_cap > 0 && (
            <p>Only the first {result.cap.toLocaleString()} will be loaded: {result.over_cap.toLocaleString()} are
              over the limit of a project.</p>
          )}
          {result.sample.length > 0 && (
            <ul class="wz-sample" data-testid="data-check-sample">
              {result.sample.map((name) => <li key={name}><code>{name}</code></li>)}
              {result.matched > result.sample.length && <li class="muted">…</li>}
            </ul>
          )}
          {problem && <p role="alert">{problem}</p>}
        </div>
      )}
    </div>
  );
}
