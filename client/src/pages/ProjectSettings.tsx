// Owners change a project's settings after creation; what the start has fixed (task type,
// consensus, the dataset binding) is shown but cannot be edited.
import { useState } from "preact/hooks";
import { patch, type Project } from "../api";
import { ErrorBox } from "../ui";
import { taskLong } from "./projectWords";

function Fixed({ when }: { when: boolean }) {
  return when ? <span class="muted"> (fixed since the project started)</span> : null;
}

export function ProjectSettings({ project, onSaved }: { project: Project; onSaved: () => void }) {
  const can = project.editable;
  const [name, setName] = useState(project.name);
  const [text, setText] = useState(project.instructions.text ?? "");
  const [url, setUrl] = useState(project.instructions.url ?? "");
  const [consensus, setConsensus] = useState({ enabled: !!project.consensus.enabled, min: project.consensus.min ?? 2,
    max: project.consensus.max ?? 3 });
  const ml = project.ml_assist as { enabled: boolean; min_labeled?: number; precision_target?: number };
  const [mlOn, setMlOn] = useState(!!ml.enabled);
  const [minLabeled, setMinLabeled] = useState(ml.min_labeled ?? 300);
  const [precision, setPrecision] = useState(ml.precision_target ?? 0.9);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  const save = async (e: Event) => {
    e.preventDefault();
    const body: Record<string, unknown> = {
      name, instructions: { text, url: url.trim() || null },
    };
    if (can.consensus && project.task_type !== "polygon") body.consensus = consensus;
    if (project.task_type !== "semantic") {
      body.ml_assist = { enabled: mlOn, min_labeled: minLabeled, precision_target: precision };
    }
    try {
      await patch(`/api/v1/projects/${project.id}`, body);
      setError(null);
      setSaved(true);
      onSaved();
    } catch (err) {
      setError(err);
      setSaved(false);
    }
  };
  return (
    <form class="card" onSubmit={save} data-testid="settings">
      <h3 style="margin-top:0">Settings</h3>
      <label>Name<input value={name} onInput={(e) => setName(e.currentTarget.value)} required maxLength={200} /></label>
      <p class="muted">What labelers do: {taskLong(project.task_type)}<Fixed when={!can.task_type} /></p>
      <label>Instructions (markdown)<textarea value={text} onInput={(e) => setText(e.currentTarget.value)} /></label>
      <label>Instructions link<input type="url" value={url} placeholder="https://…"
        onInput={(e) => setUrl(e.currentTarget.value)} /></label>
      {project.task_type !== "polygon" && (
        <fieldset disabled={!can.consensus}>
          <legend>How many people label each item<Fixed when={!can.consensus} /></legend>
          <label class="inline"><input type="checkbox" checked={consensus.enabled}
            onChange={(e) => setConsensus({ ...consensus, enabled: e.currentTarget.checked })} />
            Several labelers per item until they agree</label>
          {consensus.enabled && (
            <div class="row">
              <label class="inline">At least<input type="number" min={1} max={10} value={consensus.min}
                onInput={(e) => setConsensus({ ...consensus, min: Number(e.currentTarget.value) })} /></label>
              <label class="inline">at most<input type="number" min={1} max={10} value={consensus.max}
                onInput={(e) => setConsensus({ ...consensus, max: Number(e.currentTarget.value) })} /></label>
            </div>
          )}
        </fieldset>
      )}
      {project.task_type !== "semantic" && (
        <fieldset>
          <legend>Model suggestions</legend>
          <label class="inline"><input type="checkbox" checked={mlOn} onChange={(e) => setMlOn(e.currentTarget.checked)} />
            Train on the team's labels and suggest prelabels</label>
          {mlOn && (
            <div class="row">
              <label class="inline">Start after<input type="number" min={1} value={minLabeled}
                onInput={(e) => setMinLabeled(Number(e.currentTarget.value))} />decided items</label>
              <label class="inline">Suggest only when right at least this often (0–1)<input type="number" min={0.01} max={1} step={0.01} value={precision}
                onInput={(e) => setPrecision(Number(e.currentTarget.value))} /></label>
            </div>
          )}
        </fieldset>
      )}
      <ErrorBox error={error} />
      {saved && <p class="muted">Saved.</p>}
      <button type="submit" class="primary">Save settings</button>
    </form>
  );
}
