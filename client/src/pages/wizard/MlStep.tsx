// Step 6: ML-assisted labeling — a model trained on the finished labels groups similar
// images and pre-labels new ones.
import type { TaskType } from "../../api";
import { Check, Field, numberOf, numberValue } from "./common";
import type { Issues, MlDraft } from "./state";

export function MlStep({ value, onChange, issues, taskType }: {
  value: MlDraft; onChange: (v: MlDraft) => void; issues: Issues; taskType: TaskType;
}) {
  const classification = taskType === "multiclass" || taskType === "multilabel";
  return (
    <div>
      <Check name="ml_enabled" testid="ml-enabled" checked={value.enabled}
        onChange={(enabled) => onChange({ ...value, enabled })}>
        Enable ML-assisted labeling
      </Check>
      <ul class="muted wz-phases">
        {classification && (
          <li><strong>Clustering:</strong> similar images are shown together on a page of 4, 6 or 9.</li>
        )}
        <li>
          <strong>Prelabeling:</strong> once the model is accurate enough, labelers see its{" "}
          {classification ? "predicted labels" : "predicted shapes"} and correct them.
        </li>
        <li>Training starts from the labeled (or consensus) items; DICOM images are left out.</li>
      </ul>
      {value.enabled && (
        <div>
          <div class="grid2">
            <Field label="Labeled items before the first training" issue={issues.minLabeled}
              hint="Often a few hundred; more when your images differ from everyday photos.">
              <input type="number" name="ml_min_labeled" data-testid="ml-min-labeled" min={1} max={500000} step={1}
                class="wz-number" value={numberValue(value.minLabeled)} aria-invalid={issues.minLabeled !== undefined}
                onInput={(e) => onChange({ ...value, minLabeled: numberOf(e) })} />
            </Field>
            <Field label="Precision target (%)" issue={issues.precisionTarget}
              hint="Prelabels appear only above the confidence at which the model is this precise.">
              <input type="number" name="ml_precision_target" data-testid="ml-precision" min={1} max={100} step={1}
                class="wz-number" value={numberValue(Math.round(value.precisionTarget * 100))}
                aria-invalid={issues.precisionTarget !== undefined}
                onInput={(e) => onChange({ ...value, precisionTarget: numberOf(e) / 100 })} />
            </Field>
          </div>
          <Field label="Starting weights (optional)" issue={issues.backboneWeights}
            hint="Absolute path of a pretrained weights file on the server; without one the model learns from scratch.">
            <input name="ml_backbone_weights" data-testid="ml-weights" placeholder="/models/resnet50.pth"
              value={value.backboneWeights} aria-invalid={issues.backboneWeights !== undefined} autocomplete="off"
              onInput={(e) => onChange({ ...value, backboneWeights: e.currentTarget.value })} />
          </Field>
        </div>
      )}
    </div>
  );
}
