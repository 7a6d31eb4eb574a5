// The create-project wizard: one screen per step (details, data, labels, instructions,
// quality control, ML assistance, review), then create, bind or upload the data, and start.
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, get, post, type Project } from "../api";
import { Page } from "../ui";
import { StepError } from "./wizard/common";
import { checkKey, checkProblem, NO_CHECK, runCheck, type DataCheckState } from "./wizard/DataCheck";
import { DataStep } from "./wizard/DataStep";
import { DetailsStep } from "./wizard/DetailsStep";
import { CreateProgress, Done } from "./wizard/Finish";
import { InstructionsStep } from "./wizard/InstructionsStep";
import { LabelEditor } from "./wizard/LabelEditor";
import { keyAtLoc } from "./wizard/labelTree";
import { MlStep } from "./wizard/MlStep";
import { QualityStep } from "./wizard/QualityStep";
import { errorDetails, projectBody, serverIssues, stepOfError } from "./wizard/requests";
import { ReviewStep } from "./wizard/ReviewStep";
import { INITIAL_DRAFT, STEP_TITLES, stepsFor, type Issues, type StepKey, type WizardDraft } from "./wizard/state";
import { StepIndicator } from "./wizard/StepIndicator";
import { useCreate } from "./wizard/useCreate";
import { projectNameKey, validateStep } from "./wizard/validate";
import "../wizard.css";

type StepErrors = Partial<Record<StepKey, unknown>>;

/** Names of the projects this user can see, to catch a reused name before sending. */
function useTakenNames(): Set<string> {
  const [names, setNames] = useState<Set<string>>(new Set());
  useEffect(() => {
    get<{ projects: Project[] }>("/api/v1/projects?limit=500")
      .then((r) => setNames(new Set(r.projects.map((p) => projectNameKey(p.name)))), () => undefined);
  }, []);
  return names;
}

/** Ask before leaving while something is being sent. */
function useLeaveGuard(active: boolean): void {
  useEffect(() => {
    if (!active) return;
    const warn = (e: BeforeUnloadEvent) => e.preventDefault();
    addEventListener("beforeunload", warn);
    return () => removeEventListener("beforeunload", warn);
  }, [active]);
}

/**
 * Every label's own problem (the editor shows them as they are typed), the tree-wide one only
 * once Next was tried, and the node a server error points at.
 */
function labelIssues(draft: WizardDraft, all: Issues, tree: string | undefined, error: unknown): Issues {
  const issues: Issues = { ...all };
  delete issues.tree;
  if (tree) issues.tree = tree;
  const first = errorDetails(error)[0];
  const key = first && keyAtLoc(draft.labels, first.loc);
  if (key) issues[key] = first.msg;
  return issues;
}

export function Wizard() {
  const [draft, setDraft] = useState<WizardDraft>(INITIAL_DRAFT);
  const [step, setStep] = useState<StepKey>("details");
  const [visited, setVisited] = useState<Set<StepKey>>(new Set(["details"]));
  const [tried, setTried] = useState<Set<StepKey>>(new Set());
  const [errors, setErrors] = useState<StepErrors>({});
  const [check, setCheck] = useState<DataCheckState>(NO_CHECK);
  const [checking, setChecking] = useState(false);
  const taken = useTakenNames();
  const heading = useRef<HTMLHeadingElement>(null);
  const goTo = (next: StepKey) => {
    setStep(next);
    setVisited((v) => new Set([...v, next]));
  };
  const flow = useCreate((failedStep, error) => {
    setErrors((e) => ({ ...e, [failedStep]: error }));
    goTo(failedStep);
  });
  useLeaveGuard(flow.phase !== null);
  const steps = stepsFor(draft.details.taskType);
  const index = steps.indexOf(step);
  const finished = flow.created !== null && flow.dataBound;
  const locked = flow.created !== null && step !== "data" && step !== "review";
  // Once created, the project's own name is no longer a clash to report.
  const names = flow.created ? new Set<string>() : taken;
  const issues = validateStep(step, draft, names);
  const checkCurrent = check.key === checkKey(draft.data);
  const checkError = step === "data" && checkCurrent ? check.error : null;
  const shownIssues = { ...serverIssues(errors[step]), ...serverIssues(checkError), ...(tried.has(step) ? issues : {}) };

  useEffect(() => {
    scrollTo(0, 0);
    if (step !== "details") heading.current?.focus();
  }, [step, finished]);

  const update = <K extends keyof WizardDraft>(section: K, owner: StepKey) => (value: WizardDraft[K]) => {
    setDraft((d) => ({ ...d, [section]: value }));
    setErrors((e) => (e[owner] ? { ...e, [owner]: null } : e));
  };

  /** The first visible step that still has a problem, marking each as tried. */
  const firstInvalid = (): StepKey | null => {
    const bad = steps.filter((s) => Object.keys(validateStep(s, draft, names)).length > 0);
    setTried((t) => new Set([...t, ...bad]));
    return bad[0] ?? null;
  };

  /** The dry run of the data binding; the result when it is one the project can use. */
  const checkData = async (): Promise<boolean> => {
    const key = checkKey(draft.data);
    let state = check;
    if (check.key !== key || (!check.result && !check.busy)) {
      setCheck({ key, busy: true, result: null, error: null });
      try {
        state = { key, busy: false, result: await runCheck(draft.data, flow.created?.pid ?? null), error: null };
      } catch (e) {
        state = { key, busy: false, result: null, error: e };
      }
      setCheck(state);
    }
    return state.result !== null && checkProblem(state.result, draft.data) === null;
  };

  /**
   * The server's own rules for what this step and the ones before it hold (a name taken by a
   * project this user cannot see, label names, settings that do not go together): the create
   * body is checked and nothing is kept. A problem of a later step waits for that step.
   */
  const checkOnServer = async (): Promise<boolean> => {
    if (step === "data") return draft.data.source === "upload" || await checkData();
    if (flow.created) return true;
    try {
      await post("/api/v1/projects/check", projectBody(draft));
      return true;
    } catch (e) {
      const at = e instanceof ApiError && e.status < 500 ? stepOfError(e, step) : step;
      if (steps.indexOf(at) > index) return true;
      setErrors((old) => ({ ...old, [at]: e }));
      if (at !== step) goTo(at);
      return false;
    }
  };

  const next = async () => {
    if (Object.keys(issues).length > 0) {
      setTried((t) => new Set([...t, step]));
      return;
    }
    setChecking(true);
    const ok = await checkOnServer().finally(() => setChecking(false));
    if (ok) goTo(steps[Math.min(index + 1, steps.length - 1)]);
  };

  const create = async () => {
    const bad = firstInvalid();
    if (bad) {
      goTo(bad);
      return;
    }
    setErrors({});
    await flow.run(draft);
  };

  const failed = new Set(steps.filter((s) => errors[s]));
  return (
    <Page title="New project">
      <div class="wz" data-testid="wizard" data-step={finished ? "done" : step}>
        <StepIndicator steps={steps} current={step} visited={visited} failed={failed} finished={finished}
          onJump={goTo} />
        {finished ? (
          <div class="card">
            <Done pid={flow.created!.pid} name={flow.created!.name} outcome={flow.outcome} onChangeData={() => {
              flow.rebind();
              goTo("data");
            }} />
          </div>
        ) : (
          <form class="card wz-card" noValidate onSubmit={(e) => {
            e.preventDefault();
            if (flow.phase || checking) return;
            if (step === "review") void create();
            else void next();
          }}>
            <h2 ref={heading} tabIndex={-1} data-testid="wizard-title">
              <span class="muted">Step {index + 1} of {steps.length} ·</span> {STEP_TITLES[step]}
            </h2>
            {locked && (
              <p class="notice" data-testid="wizard-locked">
                The project has been created with these settings; change them later on the project's page.
              </p>
            )}
            <StepError error={errors[step]} testid={`wizard-error-${step}`} />
            <fieldset class="wz-body" disabled={locked || flow.phase !== null}>
              <StepBody step={step} draft={draft} issues={shownIssues} allIssues={issues} error={errors[step]}
                showEmpty={tried.has(step)} stored={flow.stored} update={update} onEdit={goTo} steps={steps}
                check={check} checkCurrent={checkCurrent} onCheck={() => {
                  if (Object.keys(issues).length > 0) setTried((t) => new Set([...t, step]));
                  else void checkData();
                }} />
            </fieldset>
            {step === "review" && flow.phase && <CreateProgress phase={flow.phase} upload={flow.upload} />}
            {tried.has(step) && Object.keys(issues).length > 0 && (
              <p class="wz-issue wz-issues-line" role="alert" data-testid="wizard-issues">
                Fix the marked fields to continue.
              </p>
            )}
            <Nav first={index === 0} last={step === "review"} busy={flow.phase !== null || checking || check.busy}
              createdPid={flow.created?.pid ?? null} onBack={() => goTo(steps[Math.max(0, index - 1)])} />
          </form>
        )}
      </div>
    </Page>
  );
}

function StepBody({ step, draft, issues, allIssues, error, showEmpty, stored, update, onEdit, steps, check,
  checkCurrent, onCheck }: {
  step: StepKey; draft: WizardDraft; issues: Issues; allIssues: Issues; error: unknown; showEmpty: boolean;
  stored: ReadonlySet<string>; check: DataCheckState; checkCurrent: boolean; onCheck: () => void;
  update: <K extends keyof WizardDraft>(section: K, owner: StepKey) => (value: WizardDraft[K]) => void;
  onEdit: (step: StepKey) => void; steps: StepKey[];
}): ComponentChildren {
  switch (step) {
    case "details":
      return <DetailsStep value={draft.details} onChange={update("details", "details")} issues={issues} />;
    case "data":
      return <DataStep value={draft.data} onChange={update("data", "data")} issues={issues} stored={stored}
        check={check} checkCurrent={checkCurrent} onCheck={onCheck} />;
    case "labels":
      return <LabelEditor tree={draft.labels} onChange={update("labels", "labels")} showEmpty={showEmpty}
        issues={labelIssues(draft, allIssues, issues.tree, error)} />;
    case "instructions":
      return <InstructionsStep value={draft.instructions} onChange={update("instructions", "instructions")}
        issues={issues} />;
    case "quality":
      return <QualityStep value={draft.consensus} onChange={update("consensus", "quality")} issues={issues} />;
    case "ml":
      return <MlStep value={draft.ml} onChange={update("ml", "ml")} issues={issues} taskType={draft.details.taskType} />;
    case "review":
      return <ReviewStep draft={draft} steps={steps} onEdit={onEdit} />;
  }
}

function Nav({ first, last, busy, createdPid, onBack }: {
  first: boolean; last: boolean; busy: boolean; createdPid: number | null; onBack: () => void;
}) {
  return (
    <div class="row wz-nav">
      <button type="button" data-testid="wizard-back" disabled={first || busy} onClick={onBack}>← Back</button>
      <span class="spacer" />
      {!busy && (
        <a href={createdPid ? `#/p/${createdPid}` : "#/"} data-testid="wizard-cancel" class="wz-cancel">
          {createdPid ? "Leave (the project is kept)" : "Cancel"}
        </a>
      )}
      {last ? (
        <button type="submit" class="primary" data-testid="wizard-create" disabled={busy}>
          {busy ? "Working…" : createdPid ? "Finish creating" : "Create project"}
        </button>
      ) : (
        <button type="submit" class="primary" data-testid="wizard-next" disabled={busy}>Next →</button>
      )}
    </div>
  );
}
