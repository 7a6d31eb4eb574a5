// The request bodies the wizard sends, and which step a server error belongs to.
import { ApiError, type TaskType } from "../../api";
import { toBody, type LabelBody } from "./labelTree";
import type { DataDraft, StepKey, WizardDraft } from "./state";

export interface ProjectCreateBody {
  name: string;
  media_type: "image";
  task_type: TaskType;
  labels: LabelBody[];
  instructions: { text: string; url: string | null };
  consensus: { enabled: boolean; min: number; max: number; threshold: number };
  ml_assist: { enabled: boolean; min_labeled: number; precision_target: number; backbone_weights: string | null };
}

export function projectBody(d: WizardDraft): ProjectCreateBody {
  const task = d.details.taskType;
  // Settings of hidden steps go back to their defaults: the server refuses consensus for
  // polygon projects and ML assistance for semantic ones.
  const consensus = task === "polygon" ? { ...d.consensus, enabled: false } : d.consensus;
  const ml = task === "semantic" ? { ...d.ml, enabled: false } : d.ml;
  return {
    name: d.details.name.trim(),
    media_type: d.details.mediaType,
    task_type: task,
    labels: toBody(d.labels),
    instructions: { text: d.instructions.text, url: d.instructions.url.trim() || null },
    consensus: consensus.enabled
      ? { enabled: true, min: consensus.min, max: consensus.max, threshold: consensus.threshold }
      : { enabled: false, min: 2, max: 3, threshold: 0.5 },
    ml_assist: ml.enabled
      ? { enabled: true, min_labeled: ml.minLabeled, precision_target: ml.precisionTarget,
          backbone_weights: ml.backboneWeights.trim() || null }
      : { enabled: false, min_labeled: 300, precision_target: 0.9, backbone_weights: null },
  };
}

export type DatastoreBody =
  | { kind: "local"; path: string }
  | { kind: "azure_blob"; account_url: string; container: string; prefix: string; [credential: string]: string };

export interface DatasetBody {
  datastore: DatastoreBody;
  pattern: string;
  refresh: { enabled: boolean; interval_s: number };
}

/** The PUT /dataset body for a folder or Azure source (uploads bind themselves). */
export function datasetBody(d: DataDraft): DatasetBody {
  const datastore: DatastoreBody = d.source === "local"
    ? { kind: "local", path: d.localPath.trim() }
    : {
      kind: "azure_blob", account_url: d.azureUrl.trim(), container: d.azureContainer.trim(),
      prefix: d.azurePrefix.trim(), [d.azureCredentialKind]: d.azureCredential.trim(),
    };
  return {
    datastore,
    pattern: d.pattern.trim(),
    refresh: { enabled: d.refreshEnabled, interval_s: Math.round(d.refreshMinutes * 60) },
  };
}

const FIELD_STEPS: Record<string, StepKey> = {
  name: "details", task_type: "details", media_type: "details",
  labels: "labels", instructions: "instructions", consensus: "quality", ml_assist: "ml",
  datastore: "data", pattern: "data", refresh: "data", dataset: "data",
};

export interface ErrorDetail {
  loc: (string | number)[];
  msg: string;
}

/** The {loc, msg} list of a 422, or an empty list. */
export function errorDetails(err: unknown): ErrorDetail[] {
  if (!(err instanceof ApiError) || !Array.isArray(err.details)) return [];
  return (err.details as unknown[]).filter((d): d is ErrorDetail =>
    typeof d === "object" && d !== null && Array.isArray((d as ErrorDetail).loc) &&
    typeof (d as ErrorDetail).msg === "string");
}

/** The step whose fields an error is about; `fallback` when it names none. */
export function stepOfError(err: unknown, fallback: StepKey): StepKey {
  const first = errorDetails(err)[0];
  if (first && typeof first.loc[0] === "string" && FIELD_STEPS[first.loc[0]]) return FIELD_STEPS[first.loc[0]];
  if (err instanceof ApiError) {
    const field = (err.details as { field?: unknown } | null)?.field;
    if (typeof field === "string" && FIELD_STEPS[field]) return FIELD_STEPS[field];
  }
  return fallback;
}

// Server field locations -> the wizard field that shows the problem.
const FIELD_ISSUES: [string, string][] = [
  ["name", "name"], ["datastore.path", "localPath"], ["datastore.account_url", "azureUrl"],
  ["datastore.container", "azureContainer"], ["datastore.prefix", "azurePrefix"], ["pattern", "pattern"],
  ["refresh", "refreshMinutes"], ["instructions.text", "text"], ["instructions.url", "url"],
  ["consensus.min", "min"], ["consensus.max", "max"], ["consensus.threshold", "threshold"],
  ["ml_assist.min_labeled", "minLabeled"], ["ml_assist.precision_target", "precisionTarget"],
  ["ml_assist.backbone_weights", "backboneWeights"],
];

/** The fields a server error names, marked without text: the step shows the error itself. */
export function serverIssues(err: unknown): Record<string, string> {
  // A create body carries the binding under `dataset`; its own endpoint has it at the top.
  const locs = errorDetails(err).map((d) => d.loc.join(".").replace(/^dataset\./, ""));
  const field = err instanceof ApiError ? (err.details as { field?: unknown } | null)?.field : null;
  if (typeof field === "string") locs.push(field.replace(/^dataset\./, ""));
  const issues: Record<string, string> = {};
  for (const loc of locs) {
    const hit = FIELD_ISSUES.find(([prefix]) => loc === prefix || loc.startsWith(prefix + "."));
    if (hit) issues[hit[1]] = "";
  }
  return issues;
}
