// A project's settings in the words of the people who run it: what labelers do, how many
// people label each item, where the images come from. No field names (task_type,
// consensus, dataset) reach the screen.
import type { Project, TaskType } from "../api";

const TASKS: Record<TaskType, { short: string; long: string }> = {
  multiclass: { short: "Pick one label", long: "Pick one label for each image" },
  multilabel: { short: "Pick all labels that apply", long: "Pick every label that applies to each image" },
  bbox: { short: "Draw boxes", long: "Draw boxes around each object and label them" },
  polygon: { short: "Draw outlines", long: "Draw an outline (polygon) around each object and label it" },
  semantic: { short: "Paint areas", long: "Paint every pixel of each image with its label" },
};

export function taskShort(task: TaskType | string): string {
  return TASKS[task as TaskType]?.short ?? task;
}

export function taskLong(task: TaskType | string): string {
  return TASKS[task as TaskType]?.long ?? task;
}

export const STATUS_TEXT: Record<string, string> = {
  initializing: "Setting up", running: "Running", paused: "Paused", completed: "Completed",
};

export function statusText(project: Pick<Project, "status"> & { archived?: boolean }): string {
  const text = STATUS_TEXT[project.status] ?? project.status;
  return project.archived ? `Archived (${text.toLowerCase()})` : text;
}

/** How many people label each item, and until when. */
export function consensusText(c: Project["consensus"]): string {
  if (!c.enabled) return "Each item is labeled by one person";
  const min = c.min ?? 2;
  const max = c.max ?? min;
  const people = min === max ? `${min}` : `${min}–${max}`;
  return `Each item is labeled by ${people} people until they agree`;
}

export function mlText(ml: Project["ml_assist"]): string {
  return ml.enabled ? "A model learns from the team's labels and suggests labels" : "No model suggestions";
}

function plural(n: number, one: string, many: string): string {
  return `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;
}

/** Where the images come from, and how many there are. */
export function dataText(dataset: any, total: number): string {
  if (!dataset) return "No images yet";
  const store = dataset.datastore ?? {};
  const files = plural(total, "file", "files");
  const below = dataset.pattern && dataset.pattern !== "**/*.*" ? ` matching ${dataset.pattern}` : "";
  switch (store.kind) {
    case "local": return `Images from the server folder ${store.path}${below}, ${files}`;
    case "upload": return `Images uploaded to the server, ${files}`;
    case "azure_blob": {
      const where = `${store.container}${store.prefix ? "/" + store.prefix : ""}`;
      return `Images from the Azure Blob container ${where}${below}, ${files}`;
    }
    default: return `${files}`;
  }
}

export const ITEM_STATUS_TEXT: Record<string, string> = {
  unlabeled: "Not labeled yet",
  in_progress: "Being labeled",
  labeled: "Done",
  needs_review: "Waiting for a reviewer",
  skipped: "Skipped (taken out of labeling)",
  missing: "Gone from the data source",
};

const FIELD_TEXT: Record<string, string> = {
  media_type: "", // images are the only kind: not worth a word
  task_type: "what labelers do",
  consensus: "how many people label each item",
  dataset: "where the images come from",
  name: "the name",
  labels: "the labels",
  instructions: "the instructions",
  ml_assist: "model suggestions",
  refresh: "the data refresh",
};

/** Settings, named in words: "what labelers do, how many people label each item". */
export function fieldsText(fields: string[]): string {
  const named = [...new Set(fields.map((f) => FIELD_TEXT[f] ?? f.replace(/_/g, " ")))].filter(Boolean);
  return named.join(", ");
}

export const ROLE_TEXT: Record<string, string> = {
  owner: "Owner", reviewer: "Reviewer", labeler: "Labeler",
};
