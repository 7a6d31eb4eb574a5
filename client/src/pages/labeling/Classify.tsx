// Classification: a grid of 1, 4, 6 or 9 images, each on its own live document, each shown
// whole and the page fitting the window. Click selects an image, shift- or ctrl-click adds to
// the selection; with the keyboard, arrow keys move between images (shift extends the
// selection), Space adds or removes the focused one. Label keys (or the picker) set the
// label on every selected image (multi-label: toggle it).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { mediaUrl, post, type LabelNode, type Lease, type Project } from "../../api";
import {
  readClasses, readSuggestions, resolveSuggestions, setSingleClass, toggleClass,
} from "../../doc/annotation";
import { LiveDoc } from "../../doc/live";
import { ErrorBox, session } from "../../ui";
import {
  ClosedNotice, ImageControls, Instructions, LabelPicker, People, ShortcutSheet, SyncBadge, hotkeyLabel, labelColors,
  labelNames, useKeys, useLive,
} from "./parts";
import { useActiveTime } from "./activeTime";
import { submitPage } from "./leases";
import { columnsFor, moveTarget } from "./gridKeys";
import { labelKeyOf } from "./hotkeys";
import { isTyping } from "./keys";
import { UNDO_SHORTCUTS, UndoButtons, onHistoryKey, useHistory } from "./undo";

const SHORTCUTS: [string, string][] = [
  ["label key (1–9, 0, then letters)", "set (multi-label: toggle) a label on the selected images"],
  ["arrow keys", "move to the next image (it becomes the selection)"],
  ["Shift+arrow", "extend the selection"],
  ["Ctrl+arrow", "move the focus only"],
  ["Space", "add the focused image to the selection, or take it out"],
  ["click / shift-click", "select an image / add it to the selection"],
  ["A", "select all images"],
  ...UNDO_SHORTCUTS,
  ["Ctrl+Enter", "submit the page"],
  ["?", "this sheet"],
];

/** Going back to a submitted item: correct it (`resubmit`), or only look at it (`readonly`,
 * once it is decided). */
export interface Revisit {
  readonly: boolean;
  resubmit: (stateVector: string, durationMs: number) => Promise<unknown>;
}

export function ClassifyView({ project, tree, leases: page, onDone, revisit }: {
  project: Project; tree: LabelNode[]; leases: Lease[]; onDone: () => void; revisit?: Revisit;
}) {
  const me = session.user!;
  const author = String(me.id);
  const single = project.task_type === "multiclass";
  const [gone, setGone] = useState<Set<string>>(new Set());
  const leases = useMemo(() => page.filter((l) => !gone.has(l.lease_id)), [page, gone]);
  const [docs, setDocs] = useState<LiveDoc[]>([]);
  const version = useLive(docs);
  const history = useHistory(docs.map((d) => d.doc), author);
  const elapsed = useActiveTime(page);
  const [selected, setSelected] = useState<Set<number>>(new Set([0]));
  const [focus, setFocus] = useState(0);
  const cells = useRef<(HTMLDivElement | null)[]>([]);
  const [brightness, setBrightness] = useState(1);
  const [contrast, setContrast] = useState(1);
  const [help, setHelp] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const color = useMemo(() => labelColors(tree), [tree]);
  const name = useMemo(() => labelNames(tree), [tree]);

  useEffect(() => {
    const opened = leases.map((l) => new LiveDoc(l.document, { id: me.id, name: me.name || me.email }));
    setDocs(opened);
    setSelected(new Set([0]));
    setFocus(0);
    return () => opened.forEach((d) => d.destroy());
  }, [leases]);

  // A new page starts with its first image focused, so keyboard work goes on without a click;
  // focus is left alone when the labeler is somewhere else (typing in the label search).
  useEffect(() => {
    const at = document.activeElement;
    if (!at || at === document.body) cells.current[0]?.focus();
  }, [leases]);

  /** The images a label goes to: the selection, else the focused image. */
  const targets = () => (selected.size ? [...selected] : [focus]).filter((i) => i < docs.length);

  const apply = (label: number) => {
    if (revisit?.readonly) return;
    for (const i of targets()) {
      const d = docs[i];
      if (single) setSingleClass(d.doc, label, author);
      else toggleClass(d.doc, label, false, author);
    }
  };

  const submit = async () => {
    const missing = docs.map((d, i) => (readClasses(d.doc).length ? -1 : i)).filter((i) => i >= 0);
    if (single && missing.length) {
      setSelected(new Set(missing));
      setError(new Error(`give ${missing.length === 1 ? "the selected image" : "the selected images"} a label, or skip`));
      return;
    }
    setBusy(true);
    try {
      // The page's time is shared by its images.
      const duration_ms = Math.round(elapsed() / Math.max(1, leases.length));
      if (revisit) await revisit.resubmit(docs[0].stateVector(), duration_ms);
      else await submitPage(leases.map((l, i) => ({ lease_id: l.lease_id, state_vector: docs[i].stateVector(), duration_ms })));
      setError(null);
      onDone();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const skip = async () => {
    setBusy(true);
    try {
      const targets = selected.size && selected.size < leases.length ? [...selected].map((i) => leases[i]) : leases;
      await Promise.all(targets.map((l) => post(`/api/v1/leases/${l.lease_id}/skip`)));
      if (targets.length === leases.length) onDone();
      else setGone(new Set([...gone, ...targets.map((l) => l.lease_id)]));
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const n = leases.length;
  const cols = columnsFor(n);
  const rows = Math.max(1, Math.ceil(n / cols));

  /** Arrows move the selection with the focus, Shift+arrow extends it, Ctrl+arrow moves the
   * focus alone (then Space picks images one by one), as in a file manager. */
  const moveTo = (i: number, how: "select" | "extend" | "focus") => {
    setFocus(i);
    if (how === "select") setSelected(new Set([i]));
    if (how === "extend") setSelected(new Set([...selected, i]));
    cells.current[i]?.focus();
  };

  const onCellKey = (e: KeyboardEvent, i: number) => {
    const to = moveTarget(e.key, i, n, cols);
    if (to != null && !e.altKey) {
      e.preventDefault();
      moveTo(to, e.ctrlKey || e.metaKey ? "focus" : e.shiftKey ? "extend" : "select");
      return;
    }
    if (e.key === " ") {
      e.preventDefault(); // Space would scroll the page
      const next = new Set(selected);
      if (next.has(i)) next.delete(i);
      else next.add(i);
      setSelected(next);
    }
  };

  useKeys((e: KeyboardEvent) => {
    if (isTyping(e)) return;
    if (onHistoryKey(history, e)) return;
    const key = labelKeyOf(e);
    const hot = key != null && !e.ctrlKey && !e.metaKey && !e.altKey ? hotkeyLabel(tree, key) : null;
    if (hot != null) return apply(hot);
    if (e.key === "?") return setHelp(true);
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !revisit?.readonly) return void submit();
    if (e.key.toLowerCase() === "a" && !e.ctrlKey && !e.metaKey) setSelected(new Set(leases.map((_, i) => i)));
  });

  const current = targets().flatMap((i) => (docs[i] ? readClasses(docs[i].doc) : []));
  const others = docs.flatMap((d) => d.others());
  const states = docs.map((d) => d.state);
  const state = states.includes("offline") ? "offline" : states.includes("syncing") ? "syncing" : "synced";

  return (
    <div class="labeler" data-version={version}>
      <div class="work">
        <div class="toolbar">
          <span class="muted">{n} image{n === 1 ? "" : "s"} · {selected.size} selected</span>
          <button onClick={() => setSelected(new Set(leases.map((_, i) => i)))}>Select all (A)</button>
          <UndoButtons history={history} />
          <button onClick={() => setHelp(true)} title="Keyboard shortcuts">?</button>
          <span class="spacer" />
          {docs.length > 0 && <SyncBadge state={state} />}
          <People people={others} />
        </div>
        <div class="gridview" role="listbox" aria-multiselectable="true" aria-label="Images on this page"
          style={{ gridTemplateColumns: `repeat(${cols}, minmax(0, 1fr))`, gridTemplateRows: `repeat(${rows}, minmax(0, 1fr))` }}>
          {leases.map((l, i) => {
            const classes = docs[i] ? readClasses(docs[i].doc) : [];
            return (
              <div class={`cell ${selected.has(i) ? "selected" : ""}`} data-testid={`cell-${i}`} key={l.lease_id}
                ref={(el) => {
                  cells.current[i] = el;
                }} role="option" aria-selected={selected.has(i)}
                aria-label={`${l.item.key}${classes.length ? `: ${classes.map(name).join(", ")}` : ""}`}
                tabIndex={i === focus ? 0 : -1} onFocus={() => setFocus(i)} onKeyDown={(e) => onCellKey(e, i)}
                onClick={(e) => {
                  const next = e.shiftKey || e.ctrlKey || e.metaKey ? new Set(selected) : new Set<number>();
                  if (next.has(i) && next.size > 1) next.delete(i);
                  else next.add(i);
                  setSelected(next);
                }}>
                <img src={mediaUrl(project.id, l.item.id)} alt={l.item.key} draggable={false}
                  style={{ filter: `brightness(${brightness}) contrast(${contrast})` }} />
                <div class="tags" data-testid={`tags-${i}`}>
                  {classes.map((c) => <span style={{ borderLeft: `4px solid ${color(c)}` }}>{name(c)}</span>)}
                  {docs[i] && readSuggestions(docs[i].doc).map((s) => (
                    <span class="suggested" data-testid={`suggestion-${i}`} title="suggested by the model"
                      style={{ borderLeft: `4px dashed ${color(s.label)}` }}>
                      {name(s.label)} {Math.round(s.confidence * 100)}%?
                    </span>
                  ))}
                </div>
              </div>
            );
          })}
        </div>
      </div>
      <aside class="side">
        <div class="card">
          <div class="row">
            {!revisit && <button class="primary" disabled={busy} onClick={submit} data-testid="submit">Submit {n > 1 ? "page" : ""}</button>}
            {!revisit && <button disabled={busy} onClick={skip} data-testid="skip">Skip {selected.size < n ? "selected" : ""}</button>}
            {revisit && !revisit.readonly && (
              <button class="primary" disabled={busy} onClick={submit} data-testid="resubmit">Resubmit</button>)}
          </div>
          <ErrorBox error={error} />
          <ClosedNotice docs={docs} />
          {docs.some((d) => readSuggestions(d.doc).length > 0) && (
            <div class="row" style="margin-top:8px">
              <span class="muted">Model suggestions:</span>
              <button data-testid="accept-suggestions"
                onClick={() => docs.forEach((d) => resolveSuggestions(d.doc, true, single, author))}>Accept all</button>
              <button class="danger"
                onClick={() => docs.forEach((d) => resolveSuggestions(d.doc, false, single, author))}>Reject all</button>
            </div>
          )}
        </div>
        <LabelPicker tree={tree} current={current} onPick={apply} color={color} />
        <ImageControls brightness={brightness} contrast={contrast} setBrightness={setBrightness} setContrast={setContrast} />
        <Instructions project={project} />
      </aside>
      {help && <ShortcutSheet keys={SHORTCUTS} onClose={() => setHelp(false)} />}
    </div>
  );
}
