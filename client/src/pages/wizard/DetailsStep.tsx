// Step 1: the project's name, media type and labeling task type.
import type { TaskType } from "../../api";
import { Field } from "./common";
import { TASK_TYPES, type DetailsDraft, type Issues } from "./state";

export function DetailsStep({ value, onChange, issues }: {
  value: DetailsDraft; onChange: (v: DetailsDraft) => void; issues: Issues;
}) {
  return (
    <div>
      <Field label="Project name" issue={issues.name}
        hint="Names are unique and cannot be reused, even after the project is deleted.">
        <input name="name" data-testid="wizard-name" value={value.name} maxLength={200} autoFocus
          aria-invalid={issues.name !== undefined} autocomplete="off"
          onInput={(e) => onChange({ ...value, name: e.currentTarget.value })} />
      </Field>
      <Field label="Media type">
        <select name="media_type" data-testid="wizard-media-type" value={value.mediaType}
          onChange={() => onChange({ ...value, mediaType: "image" })}>
          <option value="image">Image</option>
        </select>
      </Field>
      <fieldset class="wz-choices" data-testid="wizard-task-types">
        <legend class="wz-label">Labeling task type</legend>
        {TASK_TYPES.map((t) => (
          <label class={value.taskType === t.value ? "wz-choice selected" : "wz-choice"} key={t.value}>
            <input type="radio" name="task_type" value={t.value} data-testid={`task-type-${t.value}`}
              checked={value.taskType === t.value}
              onChange={() => onChange({ ...value, taskType: t.value as TaskType })} />
            <span>
              <strong>{t.title}</strong>
              <span class="muted">{t.blurb}</span>
              {t.note && <span class="wz-note">{t.note}</span>}
            </span>
          </label>
        ))}
      </fieldset>
    </div>
  );
}
