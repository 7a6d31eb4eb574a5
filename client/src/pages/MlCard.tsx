// ML assistance on the monitoring page: the phase (waiting for labels, training, ready), the
// model version with its metrics and confidence threshold, how many items get prelabels and
// how often labelers keep them, class imbalance, and whether the model service is up.
import { useEffect, useState } from "preact/hooks";
import { get, post, type Project } from "../api";
import { ErrorBox } from "../ui";

interface MlModel {
  version: number;
  status: string;
  trained_on: number | null;
  threshold: number | null;
  metrics: Record<string, unknown> | null;
  class_counts: Record<string, number> | null;
  error: string | null;
  finished_at: string | null;
  prelabels: { shown: number; submitted: number; accepted_unchanged: number; acceptance_rate: number | null };
}

interface MlStatus {
  phase: "off" | "unsupported" | "unavailable" | "waiting_for_labels" | "training" | "ready" | "failed";
  reason: string | null;
  decided: number;
  min_labeled: number | null;
  model: MlModel | null;
  latest: MlModel | null;
  predictions: { predicted: number; with_prelabel: number; open_items: number; prelabel_share: number | null };
  service: { up: boolean; reason?: string | null };
}

const PHASE: Record<MlStatus["phase"], string> = {
  off: "off", unsupported: "not available", unavailable: "not installed", waiting_for_labels: "waiting for labels",
  training: "training",
  ready: "ready", failed: "last training failed",
};

// Phases in which no model can run here: nothing to train, no service to report on.
const IDLE: MlStatus["phase"][] = ["off", "unsupported", "unavailable"];

const pct = (v: number | null | undefined) => (v == null ? "—" : `${Math.round(v * 100)}%`);

function metric(metrics: Record<string, unknown> | null, ...keys: string[]): number | null {
  for (const k of keys) {
    const v = metrics?.[k];
    if (typeof v === "number") return v;
  }
  return null;
}

export function MlCard({ project, names }: { project: Project; names: (id: number) => string }) {
  const [status, setStatus] = useState<MlStatus | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = () => get<{ ml: MlStatus }>(`/api/v1/projects/${project.id}/ml`).then((r) => {
    setStatus(r.ml);
    setError(null);
  }, setError);
  useEffect(() => {
    load();
    const t = setInterval(load, 10000);
    return () => clearInterval(t);
  }, [project.id]);
  const train = () => post(`/api/v1/projects/${project.id}/ml`, { action: "train" }).then(load, setError);
  const m = status?.model;
  const counts = Object.entries(m?.class_counts ?? {}).sort((a, b) => b[1] - a[1]);
  const most = counts.length ? counts[0][1] : 0;
  return (
    <section class="card" data-testid="ml-status">
      <h3>ML assistance</h3>
      <ErrorBox error={error} />
      {status && (
        <>
          <p>
            <span class={status.phase === "ready" ? "badge running" : "badge"} data-testid="ml-phase"
              data-phase={status.phase}>{PHASE[status.phase]}</span>
            {status.reason && <span class="muted" data-testid="ml-reason"> {status.reason}</span>}
            {!IDLE.includes(status.phase) && (
              <span class="muted" data-testid="ml-service"> · model service {status.service.up ? "up"
                : `down${status.service.reason ? ` (${status.service.reason})` : ""}; labeling goes on without prelabels`}</span>
            )}
          </p>
          {status.phase === "waiting_for_labels" && status.min_labeled != null && (
            <p class="muted">{status.decided} of {status.min_labeled} decided items needed for the first training.</p>
          )}
          {status.latest?.status === "failed" && <p class="error">{status.latest.error}</p>}
          {m && (
            <table class="list">
              <tbody>
                <tr><td>Model</td><td data-testid="ml-version">v{m.version}, trained on {m.trained_on} items</td></tr>
                <tr><td>Confidence threshold</td><td>{m.threshold == null ? "none reaches the precision target: no prelabels"
                  : m.threshold.toFixed(3)}</td></tr>
                <tr><td>Test precision at threshold</td><td>{pct(metric(m.metrics, "precision_at_threshold", "precision"))}</td></tr>
                <tr><td>Test accuracy / AP</td><td>{pct(metric(m.metrics, "accuracy", "ap50", "ap"))}</td></tr>
                <tr><td>Items with a prelabel</td><td>{status.predictions.with_prelabel} of {status.predictions.predicted} predicted
                  ({pct(status.predictions.prelabel_share)})</td></tr>
                <tr><td>Prelabels kept unchanged</td><td>{m.prelabels.accepted_unchanged} of {m.prelabels.submitted} submitted
                  ({pct(m.prelabels.acceptance_rate)})</td></tr>
              </tbody>
            </table>
          )}
          {counts.length > 0 && (
            <div class="imbalance">
              <h3>Training labels per class</h3>
              {counts.map(([id, n]) => (
                <div class="row" key={id}>
                  <span style="width:140px">{names(Number(id))}</span>
                  <div class="progress" style="flex:1"><div style={{ width: `${(100 * n) / Math.max(1, most)}%` }} /></div>
                  <span class="muted">{n}</span>
                </div>
              ))}
            </div>
          )}
          {project.role === "owner" && !IDLE.includes(status.phase) && (
            <p><button onClick={train} disabled={status.phase === "training"} data-testid="ml-train">Train now</button></p>
          )}
        </>
      )}
    </section>
  );
}
