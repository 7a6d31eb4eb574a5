// Small pieces every step uses: a labelled field with its problem, and server errors.
import type { ComponentChildren } from "preact";
import { ErrorBox } from "../../ui";
import { errorDetails } from "./requests";

/** `issue` "" marks the field without text (the step's error box already explains it). */
export function Field({ label, hint, issue, children }: {
  label: string; hint?: ComponentChildren; issue?: string; children: ComponentChildren;
}) {
  return (
    <label class={issue !== undefined ? "wz-field invalid" : "wz-field"}>
      <span class="wz-label">{label}</span>
      {children}
      {hint && <span class="muted wz-hint">{hint}</span>}
      {issue && <span class="wz-issue" role="alert">{issue}</span>}
    </label>
  );
}

export function Check({ checked, onChange, testid, name, children }: {
  checked: boolean; onChange: (on: boolean) => void; testid: string; name: string; children: ComponentChildren;
}) {
  return (
    <label class="inline wz-check">
      <input type="checkbox" name={name} data-testid={testid} checked={checked}
        onChange={(e) => onChange(e.currentTarget.checked)} />
      <span>{children}</span>
    </label>
  );
}

/** A server error; a 422 also lists each field it refused. */
export function StepError({ error, testid }: { error: unknown; testid?: string }) {
  if (!error) return null;
  const details = errorDetails(error);
  return (
    <div data-testid={testid ?? "wizard-error"}>
      <ErrorBox error={error} />
      {details.length > 1 && (
        <ul class="wz-details">
          {details.slice(0, 20).map((d) => <li>{d.loc.join(".")}: {d.msg}</li>)}
        </ul>
      )}
    </div>
  );
}

/** Parse a number input; NaN stays NaN so that validation can point at it. */
export function numberOf(e: Event): number {
  const v = (e.currentTarget as HTMLInputElement).value.trim();
  return v === "" ? NaN : Number(v);
}

export function numberValue(n: number): string {
  return Number.isFinite(n) ? String(n) : "";
}
