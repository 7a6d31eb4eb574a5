// Going back: the items this labeler submitted since signing in, newest first, and one of
// them open again. While its item is not decided the labeler corrects it and resubmits; once
// it is decided (or waits for review) what they submitted counted, and it is read-only.
import { useEffect, useState } from "preact/hooks";
import { get, mediaUrl, post, type Item, type LabelNode, type Lease, type Project } from "../../api";
import { ErrorBox, Spinner } from "../../ui";
import { ClassifyView } from "./Classify";
import { DrawView } from "./Draw";
import "./goBack.css";

export interface Submitted {
  lease_id: string;
  item: Item;
  document: string;
  submitted_at: string;
  corrected_at: string | null;
  editable: boolean;
}

export function loadSubmitted(pid: number): Promise<Submitted[]> {
  return get<{ items: Submitted[] }>(`/api/v1/projects/${pid}/tasks/history`).then((r) => r.items);
}

function when(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** The list of this session's submissions; choosing one opens it. */
export function SubmittedList({ pid, onOpen, onClose }: {
  pid: number; onOpen: (entries: Submitted[], at: number) => void; onClose: () => void;
}) {
  const [entries, setEntries] = useState<Submitted[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    loadSubmitted(pid).then(setEntries, setError);
  }, [pid]);
  return (
    <div class="card go-back" data-testid="history-list">
      <div class="row">
        <h3 style="margin:0">Submitted since you signed in</h3>
        <span class="spacer" />
        <button onClick={onClose} aria-label="Close the list">✕</button>
      </div>
      <ErrorBox error={error} />
      {!entries && !error && <Spinner />}
      {entries && !entries.length && <p class="muted">Nothing yet: items you submit show up here.</p>}
      {entries && entries.length > 0 && (
        <ul class="go-back-list">
          {entries.map((e, i) => (
            <li key={e.lease_id}>
              <button class="go-back-entry" data-testid={`history-${i}`} onClick={() => onOpen(entries, i)}>
                <img src={mediaUrl(pid, e.item.id, { size: "thumb" })} alt="" loading="lazy" />
                <span class="go-back-name" title={e.item.key}>{e.item.key}</span>
                <span class="muted">{when(e.corrected_at ?? e.submitted_at)}</span>
                <span class={`badge ${e.editable ? "" : "done"}`}>
                  {e.editable ? (e.corrected_at ? "corrected" : "can be corrected") : "decided"}
                </span>
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** One submitted item, open again: its own document, writable while it may be corrected. */
export function RevisitView({ project, tree, entries, at, setAt, onBack, onCorrected }: {
  project: Project; tree: LabelNode[]; entries: Submitted[]; at: number; setAt: (at: number) => void;
  onBack: () => void; onCorrected: (entry: Submitted) => void;
}) {
  const entry = entries[at];
  const classify = project.task_type === "multiclass" || project.task_type === "multilabel";
  const correct = async (stateVector: string, durationMs: number) => {
    await post(`/api/v1/leases/${entry.lease_id}/correct`, { state_vector: stateVector, duration_ms: durationMs });
    onCorrected(entry);
  };
  const lease: Lease = { lease_id: entry.lease_id, item: entry.item, expires_at: 0, document: entry.document };
  return (
    <div data-testid="revisit" data-editable={entry.editable}>
      <div class="row" style="margin-bottom:8px">
        <button onClick={onBack} data-testid="back-to-work">← Back to work</button>
        <button disabled={at + 1 >= entries.length} onClick={() => setAt(at + 1)} data-testid="older">◀ Older</button>
        <button disabled={at === 0} onClick={() => setAt(at - 1)} data-testid="newer">Newer ▶</button>
        <span class="muted">{at + 1} of {entries.length} submitted since you signed in</span>
      </div>
      <div class={`notice ${entry.editable ? "" : "warn"}`} data-testid="revisit-state" role="status">
        {entry.editable
          ? "You submitted this item. It is not decided yet, so you can still correct it: change it, then Resubmit."
          : "This item has been decided: what you submitted counted, so it is read-only now."}
      </div>
      {classify
        ? <ClassifyView key={entry.lease_id} project={project} tree={tree} leases={[lease]} onDone={() => undefined}
          revisit={{ readonly: !entry.editable, resubmit: correct }} />
        : <DrawView key={entry.lease_id} project={project} tree={tree} room={entry.document} item={entry.item}
          readonly={!entry.editable} actions={entry.editable ? [{
            text: "Resubmit", testid: "resubmit", primary: true, checks: true,
            run: (doc, durationMs) => correct(doc.stateVector(), durationMs),
          }] : []} />}
    </div>
  );
}
