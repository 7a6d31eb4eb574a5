// The label the drawing tools give the next shape. It starts chosen, so that drawing works
// the moment the page opens: the label this person last chose in this project (kept in the
// browser), else the first leaf in display order (the most specific label, as a labeler
// coming from Label Studio or CVAT finds it at the top of the list).
import { useState } from "preact/hooks";
import { flattenLabels, type LabelNode } from "../../api";

const key = (pid: number) => `colabel.label.${pid}`;

export function firstLeaf(tree: LabelNode[]): number | null {
  const flat = flattenLabels(tree);
  return (flat.find((n) => n.children.length === 0) ?? flat[0])?.id ?? null;
}

export function startingLabel(pid: number, tree: LabelNode[]): number | null {
  const saved = Number(localStorage.getItem(key(pid)));
  if (saved && flattenLabels(tree).some((n) => n.id === saved)) return saved;
  return firstLeaf(tree);
}

/** [label for the next shape, choose another one (remembered for this project)]. */
export function useCurrentLabel(pid: number, tree: LabelNode[]): [number | null, (id: number) => void] {
  const [label, setLabel] = useState(() => startingLabel(pid, tree));
  const choose = (id: number) => {
    localStorage.setItem(key(pid), String(id));
    setLabel(id);
  };
  return [label, choose];
}
