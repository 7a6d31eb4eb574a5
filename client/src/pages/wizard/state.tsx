// What the wizard collects, its defaults, and which steps a task type shows.
import type { TaskType } from "../../api";
import type { PickedFile } from "./files";
import type { LabelDraft } from "./labelTree";

export interface TaskTypeInfo {
  value: TaskType;
  title: string;
  blurb: string;
  note?: string;
}

export const TASK_TYPES: TaskTypeInfo[] = [
  { value: "multiclass", title: "Image Classification Multi-class",
    blurb: "Apply a single label to each image from a set of labels." },
  { value: "multilabel", title: "Image Classification Multi-label",
    blurb: "Apply one or more labels to each image, e.g. both dog and daytime." },
  { value: "bbox", title: "Object Identification (Bounding Box)",
    blurb: "Label each object in an image and draw a box around it." },
  { value: "polygon", title: "Polygon (Instance Segmentation)",
    blurb: "Label each object in an image and draw a polygon around it.",
    note: "Each item goes to one labeler: consensus labeling is not available." },
  { value: "semantic", title: "Semantic Segmentation",
    blurb: "Paint masks that assign a label class to every pixel.",
    note: "ML-assisted labeling is not available." },
];

export function taskTitle(t: TaskType): string {
  return TASK_TYPES.find((x) => x.value === t)?.title ?? t;
}

export interface DetailsDraft {
  name: string;
  taskType: TaskType;
  mediaType: "image";
}

export type DataSource = "upload" | "local" | "azure_blob";
export type AzureCredential = "sas_token" | "account_key" | "connection_string";

export const AZURE_CREDENTIALS: { value: AzureCredential; title: string }[] = [
  { value: "sas_token", title: "SAS token" },
  { value: "account_key", title: "Account key" },
  { value: "connection_string", title: "Connection string" },
];

export interface DataDraft {
  source: DataSource;
  localPath: string;
  pattern: string;
  azureUrl: string;
  azureContainer: string;
  azurePrefix: string;
  azureCredentialKind: AzureCredential;
  azureCredential: string;
  files: PickedFile[];
  refreshEnabled: boolean;
  refreshMinutes: number;
}

export interface InstructionsDraft {
  text: string;
  url: string;
}

export interface ConsensusDraft {
  enabled: boolean;
  min: number;
  max: number;
  threshold: number;
}

export interface MlDraft {
  enabled: boolean;
  minLabeled: number;
  precisionTarget: number;
  backboneWeights: string;
}

export interface WizardDraft {
  details: DetailsDraft;
  data: DataDraft;
  labels: LabelDraft[];
  instructions: InstructionsDraft;
  consensus: ConsensusDraft;
  ml: MlDraft;
}

export const INITIAL_DRAFT: WizardDraft = {
  details: { name: "", taskType: "multiclass", mediaType: "image" },
  data: {
    source: "upload", localPath: "", pattern: "**/*.*", azureUrl: "", azureContainer: "",
    azurePrefix: "", azureCredentialKind: "sas_token", azureCredential: "", files: [],
    refreshEnabled: false, refreshMinutes: 60,
  },
  labels: [],
  instructions: { text: "", url: "" },
  consensus: { enabled: false, min: 2, max: 3, threshold: 0.5 },
  ml: { enabled: false, minLabeled: 300, precisionTarget: 0.9, backboneWeights: "" },
};

export type StepKey = "details" | "data" | "labels" | "instructions" | "quality" | "ml" | "review";

export const STEP_TITLES: Record<StepKey, string> = {
  details: "Details",
  data: "Data",
  labels: "Label categories",
  instructions: "Instructions",
  quality: "Quality control",
  ml: "ML-assisted labeling",
  review: "Review and create",
};

/** The steps a task type shows, in order (the server refuses the hidden ones' settings). */
export function stepsFor(taskType: TaskType): StepKey[] {
  const steps: StepKey[] = ["details", "data", "labels", "instructions"];
  if (taskType !== "polygon") steps.push("quality");
  if (taskType !== "semantic") steps.push("ml");
  steps.push("review");
  return steps;
}

/** Field name -> what is wrong with it; empty when the step is fine. */
export type Issues = Record<string, string>;
