// Step 5: consensus labeling — each item goes to several labelers until they agree.
import { Check, Field, numberOf, numberValue } from "./common";
import type { ConsensusDraft, Issues } from "./state";

const THRESHOLDS: { value: number; title: string }[] = [
  { value: 0.5, title: "More than half (strict majority)" },
  { value: 0.6, title: "More than 60%" },
  { value: 0.66, title: "More than two thirds" },
  { value: 0.75, title: "More than 75%" },
  { value: 0.9, title: "More than 90%" },
];

export function QualityStep({ value, onChange, issues }: {
  value: ConsensusDraft; onChange: (v: ConsensusDraft) => void; issues: Issues;
}) {
  return (
    <div>
      <Check name="consensus_enabled" testid="consensus-enabled" checked={value.enabled}
        onChange={(enabled) => onChange({ ...value, enabled })}>
        Enable consensus labeling
      </Check>
      <p class="muted">
        Each item goes to the minimum number of labelers. If they do not agree it goes to one more, up to the
        maximum; with no agreement then, it is marked <em>Needs review</em> and an owner or reviewer decides.
      </p>
      {value.enabled && (
        <div>
          <div class="grid2">
            <Field label="Minimum labelers" issue={issues.min}>
              <input type="number" name="consensus_min" data-testid="consensus-min" min={1} max={10} step={1}
                class="wz-number" value={numberValue(value.min)} aria-invalid={issues.min !== undefined}
                onInput={(e) => onChange({ ...value, min: numberOf(e) })} />
            </Field>
            <Field label="Maximum labelers" issue={issues.max}>
              <input type="number" name="consensus_max" data-testid="consensus-max" min={1} max={10} step={1}
                class="wz-number" value={numberValue(value.max)} aria-invalid={issues.max !== undefined}
                onInput={(e) => onChange({ ...value, max: numberOf(e) })} />
            </Field>
          </div>
          <Field label="Agreement needed" issue={issues.threshold}>
            <select name="consensus_threshold" data-testid="consensus-threshold" value={String(value.threshold)}
              onChange={(e) => onChange({ ...value, threshold: Number(e.currentTarget.value) })}>
              {THRESHOLDS.map((t) => <option key={t.value} value={String(t.value)}>{t.title}</option>)}
            </select>
          </Field>
          <div class="notice">
            Make sure the project has at least as many labelers as the maximum. These settings cannot change once
            the project has started.
          </div>
        </div>
      )}
    </div>
  );
}
