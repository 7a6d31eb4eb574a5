// Step 7: every choice in one place, each with a way back to change it.
import type { ComponentChildren } from "preact";
import { formatBytes } from "../../ui";
import { groupPicks, totalBytes } from "./files";
import { flatten } from "./labelTree";
import { Markdown } from "./markdown";
import { AZURE_CREDENTIALS, STEP_TITLES, taskTitle, type StepKey, type WizardDraft } from "./state";

const SHOWN_LABELS = 30;

export function ReviewStep({ draft, steps, onEdit }: {
  draft: WizardDraft; steps: StepKey[]; onEdit: (step: StepKey) => void;
}) {
  const section = (step: StepKey, body: ComponentChildren) => steps.includes(step) && (
    <section class="wz-summary-section" data-testid={`review-${step}`}>
      <div class="row">
        <h3>{STEP_TITLES[step]}</h3>
        <span class="spacer" />
        <button type="button" data-testid={`review-edit-${step}`} onClick={() => onEdit(step)}>Edit</button>
      </div>
      {body}
    </section>
  );
  return (
    <div class="wz-summary" data-testid="wizard-summary">
      <p class="notice">
        Once the project is created its task type and data source are fixed; labels, instructions and the
        ML settings stay editable, and consensus can change until labeling starts.
      </p>
      {section("details", <DetailsSummary draft={draft} />)}
      {section("data", <DataSummary draft={draft} />)}
      {section("labels", <LabelsSummary draft={draft} />)}
      {section("instructions", <InstructionsSummary draft={draft} />)}
      {section("quality", <QualitySummary draft={draft} />)}
      {section("ml", <MlSummary draft={draft} />)}
    </div>
  );
}

function Facts({ rows }: { rows: [string, ComponentChildren][] }) {
  return (
    <dl class="wz-facts">
      {rows.map(([k, v]) => [<dt key={`${k}-k`}>{k}</dt>, <dd key={`${k}-v`}>{v}</dd>])}
    </dl>
  );
}

function DetailsSummary({ draft }: { draft: WizardDraft }) {
  const d = draft.details;
  return <Facts rows={[["Name", d.name.trim()], ["Media type", "Image"], ["Task type", taskTitle(d.taskType)]]} />;
}

function refreshText(draft: WizardDraft): string {
  const d = draft.data;
  return d.refreshEnabled ? `Every ${d.refreshMinutes} minute${d.refreshMinutes === 1 ? "" : "s"}` : "Off";
}

function DataSummary({ draft }: { draft: WizardDraft }) {
  const d = draft.data;
  if (d.source === "upload") {
    const groups = groupPicks(d.files);
    return (
      <Facts rows={[
        ["Source", "Upload from this computer"],
        ["Files", `${d.files.length} (${formatBytes(totalBytes(d.files))})`],
        ["Includes", groups.slice(0, 8).map((g) => g.name).join(", ") + (groups.length > 8 ? ", …" : "")],
      ]} />
    );
  }
  if (d.source === "local") {
    return (
      <Facts rows={[
        ["Source", "Folder on the server"], ["Folder", <code>{d.localPath.trim()}</code>],
        ["Files", <code>{d.pattern.trim()}</code>], ["Incremental refresh", refreshText(draft)],
      ]} />
    );
  }
  const credential = AZURE_CREDENTIALS.find((c) => c.value === d.azureCredentialKind)?.title ?? "";
  return (
    <Facts rows={[
      ["Source", "Azure Blob container"], ["Account", <code>{d.azureUrl.trim()}</code>],
      ["Container", <code>{d.azureContainer.trim()}</code>], ["Prefix", d.azurePrefix.trim() || "(whole container)"],
      ["Credential", credential], ["Files", <code>{d.pattern.trim()}</code>],
      ["Incremental refresh", refreshText(draft)],
    ]} />
  );
}

function LabelsSummary({ draft }: { draft: WizardDraft }) {
  const flat = flatten(draft.labels);
  return (
    <div>
      <ul class="wz-label-summary">
        {flat.slice(0, SHOWN_LABELS).map((f) => (
          <li key={f.node.key}><span class="wz-key-col">{f.hotkey && <kbd>{f.hotkey}</kbd>}</span>{f.path}</li>
        ))}
      </ul>
      {flat.length > SHOWN_LABELS && <p class="muted">and {flat.length - SHOWN_LABELS} more</p>}
    </div>
  );
}

function InstructionsSummary({ draft }: { draft: WizardDraft }) {
  const i = draft.instructions;
  if (!i.text.trim() && !i.url.trim()) return <p class="muted">None</p>;
  return (
    <div>
      {i.url.trim() && <Facts rows={[["Link", <code>{i.url.trim()}</code>]]} />}
      {i.text.trim() && <div class="wz-preview wz-preview-small"><Markdown text={i.text} class="instructions" /></div>}
    </div>
  );
}

function QualitySummary({ draft }: { draft: WizardDraft }) {
  const c = draft.consensus;
  if (!c.enabled) return <p>Consensus labeling off: each item goes to one labeler.</p>;
  return (
    <Facts rows={[
      ["Consensus", "On"], ["Labelers per item", `${c.min} to ${c.max}`],
      ["Agreement needed", `More than ${Math.round(c.threshold * 100)}%`],
    ]} />
  );
}

function MlSummary({ draft }: { draft: WizardDraft }) {
  const m = draft.ml;
  if (!m.enabled) return <p>ML-assisted labeling off.</p>;
  return (
    <Facts rows={[
      ["ML assistance", "On"], ["First training after", `${m.minLabeled} labeled items`],
      ["Precision target", `${Math.round(m.precisionTarget * 100)}%`],
      ["Starting weights", m.backboneWeights.trim() || "None"],
    ]} />
  );
}
