// What an owner (or, for exports, a reviewer) does to the selected items: re-open, send to
// review, skip, delete, export. The server applies each to the items it fits and says how
// many it changed.
import { useState } from "preact/hooks";
import type { Project } from "../../api";
import { ErrorBox } from "../../ui";
import { act, filterBody, type Action, type Query } from "./query";

export type Selection = { ids: number[] } | { everything: true; query: Query };

const EXPORT_FORMATS: Record<string, string[]> = {
  multiclass: ["coco", "jsonl", "csv"], multilabel: ["coco", "jsonl", "csv"], bbox: ["coco", "jsonl", "voc", "yolo"],
  polygon: ["coco", "jsonl", "yolo"], semantic: ["coco", "masks"],
};
const DONE: Record<Action, string> = {
  reopen: "re-opened", review: "sent to review", skip: "skipped", delete: "deleted", export: "exported",
};

export function Actions({ project, selection, count, onDone, compact }: {
  project: Project; selection: Selection; count: string; onDone: (action: Action) => void; compact?: boolean;
}) {
  const owner = project.role === "owner";
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<preact.ComponentChildren>(null);
  const [confirming, setConfirming] = useState(false);
  const formats = EXPORT_FORMATS[project.task_type] ?? ["coco"];
  const [format, setFormat] = useState(formats[0]);
  const empty = "ids" in selection && selection.ids.length === 0;
  const body = "ids" in selection ? { ids: selection.ids, filter: {} } : { filter: filterBody(selection.query) };

  const run = async (action: Action) => {
    setBusy(true);
    setConfirming(false);
    try {
      const out = await act(project.id, action, body, action === "export" ? { export: { format } } : {});
      if (action === "export") {
        setNotice(<>Export started. <a href={`#/p/${project.id}/export`} data-testid="export-link">Follow it on the Export page</a>.</>);
      } else {
        const left = out.unchanged ? `; ${out.unchanged} left as ${out.unchanged === 1 ? "it was" : "they were"} (not applicable)` : "";
        setNotice(`${out.changed} item${out.changed === 1 ? "" : "s"} ${DONE[action]}${left}.`);
      }
      setError(null);
      onDone(action);
    } catch (e) {
      setError(e);
      setNotice(null);
    } finally {
      setBusy(false);
    }
  };
  const off = busy || empty;
  return (
    <div class={`dm-actions ${compact ? "compact" : ""}`} data-testid="actions">
      <div class="row">
        {!compact && <span class="muted">{empty ? "Select items to act on them." : `${count} selected:`}</span>}
        {owner && <>
          <button type="button" disabled={off} onClick={() => run("reopen")} data-testid="action-reopen"
            title="Decided, in-review or skipped items go back to labeling">Re-open</button>
          <button type="button" disabled={off} onClick={() => run("review")} data-testid="action-review"
            title="A person decides these items on the Review page">Send to review</button>
          <button type="button" disabled={off} onClick={() => run("skip")} data-testid="action-skip"
            title="Take out of labeling without a label (re-open brings them back)">Skip</button>
          {confirming ? (
            <span class="dm-confirm">Delete {count} item(s) and their annotations from the project?
              <button type="button" class="danger" onClick={() => run("delete")} data-testid="confirm-delete">Delete</button>
              <button type="button" onClick={() => setConfirming(false)}>Cancel</button>
            </span>
          ) : <button type="button" class="danger" disabled={off} onClick={() => setConfirming(true)} data-testid="action-delete">Delete…</button>}
        </>}
        {!compact && <>
          <select value={format} onChange={(e) => setFormat(e.currentTarget.value)} aria-label="export format">
            {formats.map((f) => <option key={f} value={f}>{f.toUpperCase()}</option>)}
          </select>
          <button type="button" disabled={off} onClick={() => run("export")} data-testid="action-export">Export selection</button>
        </>}
      </div>
      {notice && <div class="notice" data-testid="action-notice">{notice}</div>}
      <ErrorBox error={error} />
    </div>
  );
}
