// The mistakes each step catches before anything is sent; the server checks again.
import { countLabels, MAX_LABELS, treeIssues } from "./labelTree";
import type { ConsensusDraft, DataDraft, DetailsDraft, InstructionsDraft, Issues, MlDraft, StepKey, WizardDraft }
  from "./state";

const CONTAINER = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;
const MAX_INSTRUCTIONS = 100_000;
export const MIN_REFRESH_MINUTES = 1;
export const MAX_REFRESH_MINUTES = 7 * 24 * 60;

/** Names compare ignoring case and repeated whitespace, as the server reserves them. */
export function projectNameKey(name: string): string {
  return name.split(/\s+/).filter(Boolean).join(" ").toLowerCase();
}

export function validateDetails(d: DetailsDraft, takenNames: Set<string>): Issues {
  const issues: Issues = {};
  const name = d.name.trim();
  if (!name) issues.name = "Enter a project name";
  else if (name.length > 200) issues.name = "At most 200 characters";
  else if (takenNames.has(projectNameKey(name))) issues.name = "A project with this name already exists";
  return issues;
}

function checkPattern(pattern: string): string | null {
  const p = pattern.trim();
  if (!p) return "Enter a file pattern, e.g. **/*.*";
  if (p.startsWith("/")) return "Patterns are relative: remove the leading '/'";
  if (p.includes("\\")) return "Use '/' between folders, not '\\'";
  if (p.split("/").includes("..")) return "Patterns cannot contain '..'";
  return null;
}

function checkRefresh(d: DataDraft, issues: Issues): void {
  const m = d.refreshMinutes;
  if (d.refreshEnabled && (!Number.isInteger(m) || m < MIN_REFRESH_MINUTES || m > MAX_REFRESH_MINUTES)) {
    issues.refreshMinutes = `Enter whole minutes from ${MIN_REFRESH_MINUTES} to ${MAX_REFRESH_MINUTES} (a week)`;
  }
}

export function validateData(d: DataDraft): Issues {
  const issues: Issues = {};
  if (d.source === "upload") {
    if (d.files.length === 0) issues.files = "Choose the image files or folders to upload";
    return issues;
  }
  const pattern = checkPattern(d.pattern);
  if (pattern) issues.pattern = pattern;
  checkRefresh(d, issues);
  if (d.source === "local") {
    const path = d.localPath.trim();
    if (!path) issues.localPath = "Enter the folder's absolute path on the server";
    else if (!path.startsWith("/")) issues.localPath = "Enter an absolute path, starting with '/'";
    return issues;
  }
  const url = d.azureUrl.trim();
  if (!url) issues.azureUrl = "Enter the storage account URL";
  else if (!/^https?:\/\/[^/\s]+/i.test(url)) issues.azureUrl = "Enter a URL such as https://account.blob.core.windows.net";
  if (!CONTAINER.test(d.azureContainer.trim())) {
    issues.azureContainer = "3-63 lowercase letters, digits and single hyphens";
  }
  if (!d.azureCredential.trim()) issues.azureCredential = "Enter the credential";
  return issues;
}

export function validateLabels(tree: WizardDraft["labels"]): Issues {
  const issues: Issues = treeIssues(tree);
  const n = countLabels(tree);
  if (n === 0) issues.tree = "Add at least one label category";
  else if (n > MAX_LABELS) issues.tree = `A project has at most ${MAX_LABELS} labels (this tree has ${n})`;
  else if (Object.keys(issues).length) issues.tree = "Fix the highlighted labels";
  return issues;
}

export function validateInstructions(i: InstructionsDraft): Issues {
  const issues: Issues = {};
  if (i.text.length > MAX_INSTRUCTIONS) issues.text = `At most ${MAX_INSTRUCTIONS.toLocaleString()} characters`;
  const url = i.url.trim();
  if (url && !/^https?:\/\/[^/\s]+\S*$/i.test(url)) issues.url = "Enter an http:// or https:// address";
  return issues;
}

export function validateConsensus(c: ConsensusDraft): Issues {
  const issues: Issues = {};
  if (!c.enabled) return issues;
  const whole = (n: number) => Number.isInteger(n) && n >= 1 && n <= 10;
  if (!whole(c.min)) issues.min = "A whole number from 1 to 10";
  if (!whole(c.max)) issues.max = "A whole number from 1 to 10";
  else if (whole(c.min) && c.min > c.max) issues.max = "Must be at least the minimum";
  if (!(c.threshold >= 0.5 && c.threshold < 1)) issues.threshold = "Choose an agreement level";
  return issues;
}

export function validateMl(m: MlDraft): Issues {
  const issues: Issues = {};
  if (!m.enabled) return issues;
  if (!Number.isInteger(m.minLabeled) || m.minLabeled < 1 || m.minLabeled > 500_000) {
    issues.minLabeled = "A whole number from 1 to 500,000";
  }
  if (!(m.precisionTarget > 0 && m.precisionTarget <= 1)) issues.precisionTarget = "Between 1% and 100%";
  const w = m.backboneWeights.trim();
  if (w && (!w.startsWith("/") || w.includes("://"))) issues.backboneWeights = "An absolute path to a file on the server";
  return issues;
}

export function validateStep(step: StepKey, draft: WizardDraft, takenNames: Set<string>): Issues {
  switch (step) {
    case "details": return validateDetails(draft.details, takenNames);
    case "data": return validateData(draft.data);
    case "labels": return validateLabels(draft.labels);
    case "instructions": return validateInstructions(draft.instructions);
    case "quality": return validateConsensus(draft.consensus);
    case "ml": return validateMl(draft.ml);
    case "review": return {};
  }
}
