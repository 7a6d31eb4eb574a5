// The row of steps above the form: where you are, where you have been, what needs fixing.
import { STEP_TITLES, type StepKey } from "./state";

export function StepIndicator({ steps, current, visited, failed, finished, onJump }: {
  steps: StepKey[]; current: StepKey; visited: Set<StepKey>; failed: Set<StepKey>; finished: boolean;
  onJump: (step: StepKey) => void;
}) {
  return (
    <ol class="wz-steps" aria-label="Steps">
      {steps.map((step, i) => {
        const classes = ["wz-step"];
        if (step === current && !finished) classes.push("current");
        else if (finished || visited.has(step)) classes.push("visited");
        if (failed.has(step)) classes.push("failed");
        return (
          <li key={step} class={classes.join(" ")}>
            <button type="button" data-testid={`wizard-step-${step}`} aria-current={step === current ? "step" : undefined}
              disabled={finished || !visited.has(step) || step === current} onClick={() => onJump(step)}>
              <span class="wz-step-num">{i + 1}</span>
              <span class="wz-step-title">{STEP_TITLES[step]}</span>
            </button>
          </li>
        );
      })}
    </ol>
  );
}
