// Step 4: labeling instructions written here in markdown (with a live preview) and/or a
// link to a page that has them.
import { Field } from "./common";
import { Markdown } from "./markdown";
import type { InstructionsDraft, Issues } from "./state";

const QUESTIONS = [
  "Which labels are there, and how should labelers choose among them?",
  "What to do when no label fits, or when several do?",
  "Should labelers give their best guess when unsure?",
  "How to treat occluded, overlapping or clipped objects, and poor image quality?",
  "For boxes and polygons: how tight should the outline be, and are tiny objects labeled?",
];

export function InstructionsStep({ value, onChange, issues }: {
  value: InstructionsDraft; onChange: (v: InstructionsDraft) => void; issues: Issues;
}) {
  return (
    <div>
      <details class="wz-tips">
        <summary>What good instructions answer</summary>
        <ul>{QUESTIONS.map((q) => <li key={q}>{q}</li>)}</ul>
        <p class="muted">Labelers pick labels with the keys shown beside them (1–9, 0, then letters; leaves before groups); say so if it helps.</p>
      </details>
      <div class="grid2 wz-md">
        <Field label="Instructions (markdown)" issue={issues.text}>
          <textarea name="instructions_text" data-testid="instructions-text" rows={14} value={value.text}
            placeholder={"# What to label\n\nPick the **one** label that fits best.\n\n- Cats: …\n- Dogs: …"}
            onInput={(e) => onChange({ ...value, text: e.currentTarget.value })} />
        </Field>
        <div class="wz-field">
          <span class="wz-label">Preview</span>
          <div class="wz-preview" data-testid="instructions-preview">
            {value.text.trim()
              ? <Markdown text={value.text} class="instructions" />
              : <p class="muted">The formatted instructions appear here.</p>}
          </div>
        </div>
      </div>
      <Field label="Or link to instructions elsewhere (optional)" issue={issues.url}
        hint="Labelers see a link to this page next to the instructions above.">
        <input type="url" name="instructions_url" data-testid="instructions-url" placeholder="https://wiki.example.com/labeling"
          value={value.url} aria-invalid={issues.url !== undefined} autocomplete="off"
          onInput={(e) => onChange({ ...value, url: e.currentTarget.value })} />
      </Field>
    </div>
  );
}
