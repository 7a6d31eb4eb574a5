// Owners edit a project's label tree at any time: rename, move, reorder and add labels with
// the wizard's editor; existing labels keep their ids (the server refuses to delete labels
// that annotations already use).
import { useEffect, useState } from "preact/hooks";
import { patch, type LabelNode, type Project } from "../api";
import { ErrorBox } from "../ui";
import { LabelEditor } from "./wizard/LabelEditor";
import { treeIssues, type LabelDraft } from "./wizard/labelTree";

const ID_KEY = "id:";

function toDraft(nodes: LabelNode[]): LabelDraft[] {
  return nodes.map((n) => ({ key: `${ID_KEY}${n.id}`, name: n.name, children: toDraft(n.children),
    ...(n.assigned_hotkey ? { hotkey: n.assigned_hotkey } : {}) }));
}

interface Body {
  id?: number;
  name: string;
  hotkey?: string;
  children: Body[];
}

function toBody(nodes: LabelDraft[]): Body[] {
  return nodes.map((n) => ({
    ...(n.key.startsWith(ID_KEY) ? { id: Number(n.key.slice(ID_KEY.length)) } : {}),
    name: n.name.trim(),
    ...(n.hotkey ? { hotkey: n.hotkey } : {}),
    children: toBody(n.children),
  }));
}

export function LabelsCard({ project, tree, onSaved }: { project: Project; tree: LabelNode[]; onSaved: () => void }) {
  const [draft, setDraft] = useState<LabelDraft[]>(() => toDraft(tree));
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  // The saved tree comes back with the new labels' ids: edit that from now on.
  useEffect(() => setDraft(toDraft(tree)), [JSON.stringify(tree)]);
  const issues = treeIssues(draft);
  const save = async () => {
    try {
      await patch(`/api/v1/projects/${project.id}/labels`, { labels: toBody(draft) });
      setError(null);
      setSaved(true);
      onSaved();
    } catch (e) {
      setError(e);
      setSaved(false);
    }
  };
  return (
    <section class="card" data-testid="labels-editor">
      <h3 style="margin-top:0">Labels</h3>
      <LabelEditor tree={draft} onChange={(t) => {
        setDraft(t);
        setSaved(false);
      }} issues={issues} showEmpty={false} />
      <ErrorBox error={error} />
      {saved && <p class="muted">Saved.</p>}
      <button class="primary" disabled={Object.keys(issues).length > 0} onClick={save}
        data-testid="labels-save">Save labels</button>
    </section>
  );
}
