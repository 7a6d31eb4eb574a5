// Step 3: the label tree editor. Add top-level labels, children and siblings, rename in
// place, delete (with undo), reorder siblings by dragging or with the arrow buttons.
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import {
  addChild, addPaths, addSiblingAfter, countLabels, flatten, MAX_DEPTH, moveBeside, newLabel, remove,
  rename, restore, sameParent, setHotkey, shift, type LabelDraft, type RefusedLine, type Removed,
} from "./labelTree";
import { HOTKEYS } from "../labeling/hotkeys";
import type { Issues } from "./state";

interface DropHint {
  key: string;
  after: boolean;
}

interface Controls {
  hotkeys: Record<string, string>;
  /** Keys owners chose, so one key is not offered twice. */
  chosen: Set<string>;
  setHotkey: (key: string, hotkey: string) => void;
  paths: Record<string, string>;
  issues: Issues;
  showEmpty: boolean;
  focusKey: string | null;
  dragging: string | null;
  hint: DropHint | null;
  onFocused: () => void;
  rename: (key: string, name: string) => void;
  addChild: (node: LabelDraft, depth: number) => void;
  addSibling: (key: string) => void;
  shift: (key: string, delta: number) => void;
  remove: (key: string) => void;
  dragStart: (key: string, row: HTMLElement | null, e: DragEvent) => void;
  dragOver: (key: string, e: DragEvent) => void;
  drop: (e: DragEvent) => void;
  dragEnd: () => void;
}

export function LabelEditor({ tree, onChange, issues, showEmpty }: {
  tree: LabelDraft[]; onChange: (tree: LabelDraft[]) => void; issues: Issues; showEmpty: boolean;
}) {
  const [focusKey, setFocusKey] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [undo, setUndo] = useState<Removed | null>(null);
  const [dragging, setDragging] = useState<string | null>(null);
  const [hint, setHint] = useState<DropHint | null>(null);
  const flat = flatten(tree);
  const edit = (next: LabelDraft[], focus: string | null = null) => {
    setMessage(null);
    setUndo(null);
    onChange(next);
    if (focus) setFocusKey(focus);
  };
  const addRoot = () => {
    const node = newLabel();
    edit([...tree, node], node.key);
  };
  const controls: Controls = {
    hotkeys: Object.fromEntries(flat.filter((f) => f.hotkey).map((f) => [f.node.key, f.hotkey!])),
    chosen: new Set(flat.map((f) => f.node.hotkey).filter((k): k is string => !!k)),
    setHotkey: (key, hotkey) => onChange(setHotkey(tree, key, hotkey)),
    paths: Object.fromEntries(flat.map((f) => [f.node.key, f.path])),
    issues, showEmpty, focusKey, dragging, hint,
    onFocused: () => setFocusKey(null),
    rename: (key, name) => onChange(rename(tree, key, name)),
    addChild: (node, depth) => {
      if (depth >= MAX_DEPTH) {
        setMessage(`"${node.name.trim() || "This label"}" is at level ${MAX_DEPTH}: labels can be at most ` +
          `${MAX_DEPTH} levels deep, so it cannot have children.`);
        return;
      }
      const child = newLabel();
      edit(addChild(tree, node.key, child), child.key);
    },
    addSibling: (key) => {
      const sibling = newLabel();
      edit(addSiblingAfter(tree, key, sibling), sibling.key);
    },
    shift: (key, delta) => edit(shift(tree, key, delta), key),
    remove: (key) => {
      const [next, removed] = remove(tree, key);
      edit(next);
      setUndo(removed);
    },
    dragStart: (key, row, e) => {
      setDragging(key);
      if (e.dataTransfer) {
        e.dataTransfer.effectAllowed = "move";
        e.dataTransfer.setData("text/plain", controls.paths[key] ?? key);
        if (row) e.dataTransfer.setDragImage(row, 16, 16);
      }
    },
    dragOver: (key, e) => {
      if (!dragging || dragging === key || !sameParent(tree, dragging, key)) return;
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = "move";
      const box = (e.currentTarget as HTMLElement).getBoundingClientRect();
      const after = e.clientY > box.top + box.height / 2;
      if (hint?.key !== key || hint.after !== after) setHint({ key, after });
    },
    drop: (e) => {
      e.preventDefault();
      if (dragging && hint) edit(moveBeside(tree, dragging, hint.key, hint.after));
      setDragging(null);
      setHint(null);
    },
    dragEnd: () => {
      setDragging(null);
      setHint(null);
    },
  };
  return (
    <div class="wz-labels">
      <p class="muted">
        Use a flat list or groups up to {MAX_DEPTH} levels deep; labelers can pick a label at any level
        (e.g. <code>Animal</code> and <code>Animal/Cat</code>). Keys 1–9, 0 and then letters go to the labels in
        order, leaves before groups; choose a key in a label's key menu to fix it.
      </p>
      {tree.length > 0 && (
        <ul class="wz-tree" role="tree" data-testid="label-tree">
          <LabelList nodes={tree} depth={1} controls={controls} />
        </ul>
      )}
      {message && <div class="error" role="alert" data-testid="label-message">{message}</div>}
      {undo && (
        <div class="notice row" data-testid="label-undo-notice">
          Deleted "{undo.node.name.trim() || "unnamed label"}"
          {countLabels(undo.node.children) > 0 && ` and ${countLabels(undo.node.children)} label(s) under it`}.
          <button type="button" data-testid="label-undo" onClick={() => {
            onChange(restore(tree, undo));
            setUndo(null);
          }}>Undo</button>
        </div>
      )}
      <div class="row wz-label-actions">
        <button type="button" class="primary" data-testid="label-add-root" onClick={addRoot}>+ Add label category</button>
        <span class="muted">{flat.length} label{flat.length === 1 ? "" : "s"}</span>
      </div>
      {issues.tree && <span class="wz-issue" role="alert" data-testid="label-issue">{issues.tree}</span>}
      <BulkAdd tree={tree} onChange={(next) => edit(next)} />
    </div>
  );
}

function LabelList({ nodes, depth, controls }: { nodes: LabelDraft[]; depth: number; controls: Controls }) {
  return (
    <>
      {nodes.map((node, i) => (
        <li key={node.key} role="treeitem" aria-level={depth}>
          <LabelRow node={node} depth={depth} first={i === 0} last={i === nodes.length - 1} controls={controls} />
          {node.children.length > 0 && (
            <ul role="group"><LabelList nodes={node.children} depth={depth + 1} controls={controls} /></ul>
          )}
        </li>
      ))}
    </>
  );
}

function LabelRow({ node, depth, first, last, controls: c }: {
  node: LabelDraft; depth: number; first: boolean; last: boolean; controls: Controls;
}) {
  const input = useRef<HTMLInputElement>(null);
  const row = useRef<HTMLDivElement>(null);
  // Focus before the next key press arrives, so fast typing lands in the new label.
  useLayoutEffect(() => {
    if (c.focusKey === node.key && input.current) {
      input.current.focus();
      c.onFocused();
    }
  }, [c.focusKey]);
  const issue = c.issues[node.key];
  const shown = issue && (c.showEmpty || node.name.trim() !== "") ? issue : null;
  const name = node.name.trim() || "this label";
  const hotkey = c.hotkeys[node.key];
  const classes = ["wz-label-row"];
  if (shown) classes.push("invalid");
  if (c.dragging === node.key) classes.push("dragging");
  if (c.hint?.key === node.key) classes.push(c.hint.after ? "drop-after" : "drop-before");
  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "Enter") {
      e.preventDefault();
      if (node.name.trim()) c.addSibling(node.key);
    } else if (e.altKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
      e.preventDefault();
      c.shift(node.key, e.key === "ArrowUp" ? -1 : 1);
    }
  };
  return (
    <div ref={row} class={classes.join(" ")} data-testid="label-row" data-path={c.paths[node.key]} data-depth={depth}
      onDragOver={(e) => c.dragOver(node.key, e)} onDrop={c.drop}>
      <span class="wz-handle" draggable title="Drag to reorder among its siblings" data-testid="label-drag"
        onDragStart={(e) => c.dragStart(node.key, row.current, e)} onDragEnd={c.dragEnd}>⠿</span>
      <span class="wz-hotkey">{hotkey && <kbd data-testid="label-hotkey" title={`Hotkey ${hotkey}`}>{hotkey.toUpperCase()}</kbd>}</span>
      <select class="wz-hotkey-pick" data-testid="label-hotkey-pick" aria-label={`Hotkey of ${name}`}
        title="Hotkey: automatic, or one of your choice" value={node.hotkey ?? ""}
        style={{ padding: "2px", fontSize: "12px", width: "52px" }}
        onChange={(e) => c.setHotkey(node.key, e.currentTarget.value)}>
        <option value="">auto</option>
        {[...HOTKEYS].map((k) => (
          <option value={k} disabled={k !== node.hotkey && c.chosen.has(k)}>{k.toUpperCase()}</option>))}
      </select>
      <input ref={input} name="label_name" data-testid="label-name" value={node.name} placeholder="Label name"
        maxLength={100} aria-label={`Label name, level ${depth}`} aria-invalid={!!shown} autocomplete="off"
        onInput={(e) => c.rename(node.key, e.currentTarget.value)} onKeyDown={onKeyDown} />
      <button type="button" data-testid="label-add-child" title={`Add a label under ${name}`}
        class={depth >= MAX_DEPTH ? "wz-at-limit" : undefined} onClick={() => c.addChild(node, depth)}>+ Child</button>
      <button type="button" data-testid="label-add-sibling" title={`Add a label after ${name}`}
        onClick={() => c.addSibling(node.key)}>+ Sibling</button>
      <button type="button" class="wz-icon" data-testid="label-up" aria-label={`Move ${name} up`} title="Move up (Alt+↑)"
        disabled={first} onClick={() => c.shift(node.key, -1)}>↑</button>
      <button type="button" class="wz-icon" data-testid="label-down" aria-label={`Move ${name} down`}
        title="Move down (Alt+↓)" disabled={last} onClick={() => c.shift(node.key, 1)}>↓</button>
      <button type="button" class="wz-icon danger" data-testid="label-delete" aria-label={`Delete ${name}`}
        title="Delete (with everything under it)" onClick={() => c.remove(node.key)}>×</button>
      {shown && <span class="wz-issue" role="alert">{shown}</span>}
    </div>
  );
}

/** Many labels at once: one path per line, levels separated by '/'. */
function BulkAdd({ tree, onChange }: { tree: LabelDraft[]; onChange: (tree: LabelDraft[]) => void }) {
  const [text, setText] = useState("");
  const [refused, setRefused] = useState<RefusedLine[]>([]);
  const add = () => {
    const [next, bad] = addPaths(tree, text);
    onChange(next);
    setRefused(bad);
    // Keep only what still needs fixing.
    setText(bad.map((r) => r.line).join("\n"));
  };
  return (
    <details class="wz-bulk">
      <summary>Add many at once</summary>
      <p class="muted">One label per line; write a path such as <code>Animal/Cat</code> to nest it (missing parents are
        created).</p>
      <textarea name="label_bulk" data-testid="label-bulk" rows={5} value={text} placeholder={"Animal/Cat\nAnimal/Dog\nColor/Black"}
        onInput={(e) => setText(e.currentTarget.value)} />
      <div class="row">
        <button type="button" data-testid="label-bulk-add" disabled={!text.trim()} onClick={add}>Add labels</button>
      </div>
      {refused.length > 0 && (
        <div class="error" role="alert" data-testid="label-bulk-refused">
          Not added:
          <ul>{refused.slice(0, 20).map((r) => <li>{r.line}: {r.why}</li>)}</ul>
        </div>
      )}
    </details>
  );
}
