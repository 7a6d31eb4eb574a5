// Classification review: the image (zoom with the wheel or the buttons, pan by dragging), what
// each labeler chose, why they disagree, and the final classes, chosen with the label keys or
// the label picker (multi-label: toggled) or taken whole from one labeler in one click.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { mediaUrl, post, type LabelNode, type Project } from "../../api";
import { readClasses, setSingleClass, toggleClass } from "../../doc/annotation";
import { LiveDoc } from "../../doc/live";
import { Stage } from "../../canvas/Stage";
import { ErrorBox, session } from "../../ui";
import {
  ClosedNotice, ImageControls, LabelPicker, People, ShortcutSheet, SyncBadge, hotkeyLabel, labelColors, labelNames,
  useKeys, useLive,
} from "../labeling/parts";
import { isTyping } from "../labeling/keys";
import { labelKeyOf } from "../labeling/hotkeys";
import { UNDO_SHORTCUTS, UndoButtons, onHistoryKey, useHistory } from "../labeling/undo";
import { replaceClasses } from "./copy";
import { Outcome } from "./Outcome";
import { Why } from "./Why";
import { ZoomButtons, zoomStage } from "./zoom";
import { inkOn } from "./overlay";
import type { Labeler, ReviewItem } from "./types";

const SHORTCUTS: [string, string][] = [
  ["label key (1–9, 0, then letters)", "set (multi-label: toggle) a label on the final document"],
  ["click a label", "the same, for any label (type to search)"],
  ...UNDO_SHORTCUTS,
  ["+ / − / wheel", "zoom"],
  ["F", "fit the image"],
  ["drag", "pan"],
  ["Ctrl+Enter", "decide"],
  ["?", "this sheet"],
];

export function ClassReview({ project, tree, item, labelers, people, onDecided }: {
  project: Project; tree: LabelNode[]; item: ReviewItem; labelers: Labeler[];
  people: Map<number, { name: string; color: string }>; onDecided: () => void;
}) {
  const me = session.user!;
  const author = String(me.id);
  const [final, setFinal] = useState<LiveDoc | null>(null);
  const version = useLive([final, ...labelers.map((b) => b.doc)]);
  const history = useHistory([final?.doc], author);
  const [error, setError] = useState<unknown>(null);
  const [help, setHelp] = useState(false);
  const [fit, setFit] = useState(0);
  const [brightness, setBrightness] = useState(1);
  const [contrast, setContrast] = useState(1);
  const box = useRef<HTMLDivElement>(null);
  const color = useMemo(() => labelColors(tree), [tree]);
  const name = useMemo(() => labelNames(tree), [tree]);
  useEffect(() => {
    const d = new LiveDoc(item.final_document, { id: me.id, name: me.name || me.email });
    setFinal(d);
    return () => d.destroy();
  }, [item.id]);
  const single = project.task_type === "multiclass";
  const chosen = final ? readClasses(final.doc) : [];
  const pick = (id: number) => {
    if (!final) return;
    if (single) setSingleClass(final.doc, id, author);
    else toggleClass(final.doc, id, false, author);
  };
  const decide = async () => {
    if (!chosen.length) return;
    try {
      await post(`/api/v1/projects/${project.id}/items/${item.id}/decide`, { annotation: { classes: chosen } });
      onDecided();
    } catch (e) {
      setError(e);
    }
  };
  // The same keys as on the labeling grid, and the drawing page's zoom keys.
  useKeys((e: KeyboardEvent) => {
    if (isTyping(e)) return;
    if (onHistoryKey(history, e)) return;
    const key = labelKeyOf(e);
    const hot = key != null && !e.ctrlKey && !e.metaKey && !e.altKey ? hotkeyLabel(tree, key) : null;
    if (hot != null) return pick(hot);
    if (e.key === "?") return setHelp(true);
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) return void decide();
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "+" || e.key === "=") zoomStage(box.current, 1);
    if (e.key === "-") zoomStage(box.current, -1);
    if (e.key.toLowerCase() === "f") setFit((f) => f + 1);
  });
  return (
    <div class="labeler" data-version={version}>
      <div class="work" ref={box}>
        <div class="toolbar">
          <ZoomButtons box={box} onFit={() => setFit((f) => f + 1)} />
          <span class="sep" />
          <UndoButtons history={history} />
          <button onClick={() => setHelp(true)} title="Keyboard shortcuts">?</button>
        </div>
        <div style="flex:1;min-height:0">
          <Stage src={mediaUrl(project.id, item.id)} label={`Image ${item.key}`} brightness={brightness}
            contrast={contrast} fitSignal={fit} cursor="grab" />
        </div>
      </div>
      <aside class="side">
        <Outcome pid={project.id} item={item} />
        <div class="card">
          <div class="row"><strong>Final</strong><span class="spacer" />{final && <SyncBadge state={final.state} />}
            {final && <People people={final.others()} />}</div>
          <p data-testid="final-classes">{chosen.map(name).join(", ") || <span class="muted">not chosen yet</span>}</p>
          <button class="primary" disabled={!chosen.length} onClick={decide} data-testid="decide">Decide</button>
          <ErrorBox error={error} />
          <ClosedNotice docs={[final, ...labelers.map((b) => b.doc)]} />
        </div>
        <div class="card">
          <h3 style="margin-top:0">Labelers</h3>
          {labelers.length === 0 && <p class="muted">Nobody has labeled this item yet.</p>}
          {labelers.map((b) => {
            const theirs = readClasses(b.doc.doc);
            return (
              <div class="row labeler-row" data-testid={`labeler-${b.id}`}>
                <span class="person" style={{ background: b.color, color: inkOn(b.color) }}>{b.name}</span>
                <span>{theirs.map(name).join(", ") || <span class="muted">nothing</span>}</span>
                <span class="spacer" />
                <button disabled={!final || !theirs.length} data-testid={`accept-${b.id}`}
                  title={`Make ${b.name}'s classes the final ones`}
                  onClick={() => final && replaceClasses(final.doc, theirs, author)}>Use</button>
              </div>
            );
          })}
        </div>
        <Why item={item} name={name} people={people} />
        <LabelPicker tree={tree} current={chosen} color={color} onPick={pick} />
        <ImageControls brightness={brightness} contrast={contrast} setBrightness={setBrightness}
          setContrast={setContrast} />
      </aside>
      {help && <ShortcutSheet keys={SHORTCUTS} onClose={() => setHelp(false)} />}
    </div>
  );
}
