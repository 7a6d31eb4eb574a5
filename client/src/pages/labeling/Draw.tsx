// Editing one image's live document with drawing tools: boxes, polygons or a semantic mask,
// with presence and prelabels to accept or reject. Labelers submit or skip their own
// document; reviewers decide the `final` one while the labelers' documents show beneath.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { ComponentChildren } from "preact";
import { flattenLabels, mediaUrl, type Item, type LabelNode, type Project } from "../../api";
import { useShapeTools } from "../../canvas/shapes";
import { MaskLayer, maskIsEmpty, useBrush } from "../../canvas/mask";
import { Stage, type Point, type View } from "../../canvas/Stage";
import { deleteShapes, paintedTiles, readShapes, updateShape } from "../../doc/annotation";
import { LiveDoc } from "../../doc/live";
import { ErrorBox, session } from "../../ui";
import {
  ClosedNotice, ImageControls, Instructions, LabelPicker, People, ShortcutSheet, SyncBadge, hotkeyLabel, labelColors,
  labelNames, useKeys, useLive,
} from "./parts";
import { useActiveTime } from "./activeTime";
import { useCurrentLabel } from "./currentLabel";
import { TOOL_NAMES, drawShortcuts, type Tool } from "./drawShortcuts";
import { labelKeyOf } from "./hotkeys";
import { isTyping } from "./keys";
import { MaskLabelPanel, ShapePanel } from "./ShapePanel";
import { useShapeView } from "./shapeView";
import { UndoButtons, onHistoryKey, useHistory } from "./undo";

/** A document shown read-only beneath the one being edited (a labeler's, in review). */
export interface Beneath {
  name: string;
  color: string;
  doc: LiveDoc;
}

export interface Action {
  text: string;
  testid: string;
  primary?: boolean;
  /** Called with the live document (the server submits its copy of it) and the visible time spent on
   * the item so far (milliseconds); resolves when done. */
  run: (doc: LiveDoc, durationMs: number) => Promise<unknown>;
  /** Submitting needs a complete annotation; skipping does not. */
  checks?: boolean;
}

export function DrawView({ project, tree, room, item, actions, beneath = [], side, beneathOverlay, refit = 0,
  readonly = false }: {
  project: Project; tree: LabelNode[]; room: string; item: Item; actions: Action[]; beneath?: Beneath[];
  side?: ComponentChildren;
  /** Draws the documents beneath (review draws them its own way); by default thin outlines. */
  beneathOverlay?: (view: View, size: { w: number; h: number }) => ComponentChildren;
  /** Bump to fit the image again (its stage changed size). */
  refit?: number;
  /** Shown, not edited (a labeler's own document once its item is decided). */
  readonly?: boolean;
}) {
  const task = project.task_type;
  const me = session.user!;
  const author = String(me.id);
  const [live, setLive] = useState<LiveDoc | null>(null);
  const version = useLive([live, ...beneath.map((b) => b.doc)]);
  const [size, setSize] = useState<{ w: number; h: number } | null>(null);
  const [tool, setTool] = useState<Tool>(task === "bbox" ? "box" : task === "polygon" ? "polygon" : "brush");
  const [label, chooseLabel] = useCurrentLabel(project.id, tree);
  const [picked, setSelected] = useState<string | null>(null);
  const [brightness, setBrightness] = useState(1);
  const [contrast, setContrast] = useState(1);
  const [win, setWin] = useState<{ wc: string; ww: string }>({ wc: "", ww: "" });
  const [radius, setRadius] = useState(12);
  const [opacity, setOpacity] = useState(0.55);
  const [fit, setFit] = useState(0);
  const [help, setHelp] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const color = useMemo(() => labelColors(tree), [tree]);
  const name = useMemo(() => labelNames(tree), [tree]);

  useEffect(() => {
    const d = new LiveDoc(room, { id: me.id, name: me.name || me.email });
    setLive(d);
    setSelected(null);
    return () => d.destroy();
  }, [room]);

  const history = useHistory([live?.doc], author);
  const elapsed = useActiveTime(room);
  const view = useShapeView(room);
  const shapes = live ? readShapes(live.doc) : [];
  // Hidden shapes are not drawn at all; locked ones are drawn but stay out of reach.
  const shown = shapes.filter((s) => !view.hidden(s.id, s.label));
  const lockedIds = new Set(shapes.filter((s) => view.locked(s.id, s.label)).map((s) => s.id));
  // A selected shape that is gone (undone, or deleted by a collaborator), hidden or locked
  // is no selection.
  const selected = picked && shown.some((s) => s.id === picked && !lockedIds.has(s.id)) ? picked : null;
  const tools = useShapeTools({
    doc: live?.doc ?? null, shapes: shown, tool: tool === "brush" || tool === "eraser" ? "pan" : tool, label, author,
    size, selected, setSelected, color, labelName: name, locked: (id) => lockedIds.has(id), readonly,
  });
  const painting = tool === "brush" || tool === "eraser";
  // The brush outline follows the pointer without a render per move (a stroke's moves must
  // stay cheap): its position is set on the element itself.
  const brushCursor = useRef<SVGGElement>(null);
  const placeBrushCursor = (p: Point | null) => {
    const g = brushCursor.current;
    if (!g) return;
    if (p) g.setAttribute("transform", `translate(${p.x} ${p.y})`);
    g.style.visibility = p ? "visible" : "hidden";
  };
  // Semantic masks: hidden labels are drawn transparent, locked ones kept by the brush.
  const hiddenKey = view.state.hiddenLabels.join();
  const maskColor = useMemo(() => {
    const hidden = new Set(view.state.hiddenLabels);
    return (l: number) => (hidden.has(l) ? "transparent" : color(l));
  }, [color, hiddenKey]);
  const keep = useMemo(() => new Set(view.state.lockedLabels), [view.state.lockedLabels.join()]);
  const brush = useBrush({ doc: live?.doc ?? null, size, radius, label, erase: tool === "eraser", author,
    active: !readonly && (tool === "brush" || tool === "eraser"), history, keep });

  const relabel = (id: number) => {
    if (selected && live && !readonly) updateShape(live.doc, selected, { label: id }, author);
  };
  // A click in the picker is explicit: it chooses the label and relabels the selected shape.
  const pick = (id: number) => {
    chooseLabel(id);
    relabel(id);
  };

  const run = async (action: Action) => {
    if (!live) return;
    if (action.checks && task === "semantic" && maskIsEmpty(live.doc)) {
      setError(new Error("paint at least one region, or skip this image"));
      return;
    }
    const pending = readShapes(live.doc).filter((s) => s.source === "model").length;
    if (action.checks && pending) {
      setError(new Error(`accept or reject the ${pending} suggested shape(s) first`));
      return;
    }
    setBusy(true);
    try {
      await action.run(live, elapsed());
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const primary = actions.find((a) => a.primary);

  useKeys((e: KeyboardEvent) => {
    if (isTyping(e)) return;
    if (!readonly && onHistoryKey(history, e)) return;
    const key = labelKeyOf(e);
    const hot = key != null && !e.ctrlKey && !e.metaKey && !e.altKey ? hotkeyLabel(tree, key) : null;
    if (hot != null) return e.shiftKey ? relabel(hot) : chooseLabel(hot);
    if (e.key === "?") return setHelp(true);
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && primary) return void run(primary);
    if (e.key === "Enter") return tools.closeDraft();
    if (e.key === "Escape") {
      tools.cancelDraft();
      return setSelected(null);
    }
    if ((e.key === "Delete" || e.key === "Backspace") && selected && live && !readonly) {
      deleteShapes(live.doc, [selected], author);
      return setSelected(null);
    }
    const k = e.key.toLowerCase();
    if (k === "f") setFit((f) => f + 1);
    if (task === "bbox" && k === "b") setTool("box");
    if (task === "polygon" && k === "p") setTool("polygon");
    if (task !== "semantic" && k === "v") setTool("select");
    if (k === "h") setTool("pan");
    if (task === "semantic" && k === "r") setTool("brush");
    if (task === "semantic" && k === "e") setTool("eraser");
    if (k === "[") setRadius((r) => Math.max(1, Math.round(r / 1.25)));
    if (k === "]") setRadius((r) => Math.min(200, Math.round(r * 1.25)));
  });

  const dicom = item.media_kind === "dicom";
  const src = mediaUrl(project.id, item.id, dicom && win.wc && win.ww ? { wc: win.wc, ww: win.ww } : {});
  const others = live ? live.others() : [];
  const onPointer = painting ? brush.onPointer : tools.onPointer;
  const toolButtons: [Tool, string][] = task === "semantic"
    ? [["brush", "Brush (R)"], ["eraser", "Eraser (E)"], ["pan", "Pan (H)"]]
    : [[task === "bbox" ? "box" : "polygon", task === "bbox" ? "Box (B)" : "Polygon (P)"], ["select", "Select (V)"],
      ["pan", "Pan (H)"]];

  return (
    <div class="labeler" data-version={version}>
      <div class="work">
        <div class="toolbar">
          {toolButtons.map(([t, text]) => (
            <button class={tool === t ? "active" : ""} data-testid={`tool-${t}`} onClick={() => setTool(t)}>{text}</button>
          ))}
          {task === "semantic" && (
            <>
              <span class="sep" />
              <label class="inline">Size<input type="range" min="1" max="120" value={radius}
                onInput={(e) => setRadius(Number(e.currentTarget.value))} /></label>
              <label class="inline">Opacity<input type="range" min="0.1" max="1" step="0.05" value={opacity}
                onInput={(e) => setOpacity(Number(e.currentTarget.value))} /></label>
            </>
          )}
          <span class="sep" />
          <UndoButtons history={history} />
          <span class="sep" />
          <button onClick={() => setFit((f) => f + 1)}>Fit (F)</button>
          <button onClick={() => setHelp(true)} title="Keyboard shortcuts">?</button>
          <span class="spacer" />
          {live && <SyncBadge state={live.state} />}
          <People people={others} />
        </div>
        <div style="flex:1;min-height:0">
          <Stage src={src} label={`Drawing canvas for ${item.key}`} brightness={brightness} contrast={contrast}
            fitSignal={fit + refit}
            cursor={painting ? "crosshair" : tools.cursor}
            onSize={(w, h) => setSize({ w, h })}
            onPointer={(kind, p, e, v) => {
              live?.setCursor(size ? { x: p.x / size.w, y: p.y / size.h } : null);
              if (painting) placeBrushCursor(p);
              return onPointer(kind, p, e, v);
            }}
            onLeave={() => {
              live?.setCursor(null);
              placeBrushCursor(null);
            }}
            onDoubleClick={tools.onDoubleClick}
            under={live && size && task === "semantic" ? (
              <>
                {beneath.map((b) => (
                  <MaskLayer doc={b.doc.doc} width={size.w} height={size.h} opacity={0.25}
                    color={solidColor(b.color)} />
                ))}
                <MaskLayer doc={live.doc} width={size.w} height={size.h} opacity={opacity} color={maskColor} />
              </>) : null}
            overlay={(view, s) => (
              <g>
                {beneathOverlay ? beneathOverlay(view, s) : beneath.flatMap((b) => readShapes(b.doc.doc).map((sh) => (
                  <BeneathShape shape={sh} color={b.color} view={view} w={s.w} h={s.h} />)))}
                {tools.overlay(view)}
                {others.filter((o) => o.cursor).map((o) => (
                  <g>
                    <circle cx={o.cursor!.x * s.w} cy={o.cursor!.y * s.h} r={5 / view.scale} fill={o.user.color} />
                    <text x={o.cursor!.x * s.w + 8 / view.scale} y={o.cursor!.y * s.h + 4 / view.scale}
                      fill={o.user.color} font-size={12 / view.scale}>{o.user.name}</text>
                  </g>
                ))}
                {painting && (
                  // The brush's reach in image pixels, so it scales with the zoom as the paint does.
                  <g ref={brushCursor} data-testid="brush-cursor" data-radius={radius} pointer-events="none"
                    style="visibility:hidden">
                    <circle r={radius} fill="none" stroke="#000" stroke-opacity="0.55" stroke-width={3 / view.scale} />
                    <circle r={radius} fill="none" stroke="#fff" stroke-width={1.25 / view.scale}
                      stroke-dasharray={tool === "eraser" ? `${4 / view.scale} ${3 / view.scale}` : undefined}
                      data-testid="brush-circle" />
                  </g>
                )}
              </g>
            )} />
        </div>
      </div>
      <aside class="side">
        <div class="card">
          <div class="row">
            <strong title={item.key}>{item.key}</strong>
          </div>
          <div class="row" style="margin-top:8px">
            {actions.map((a) => (
              <button class={a.primary ? "primary" : ""} disabled={busy} onClick={() => run(a)}
                data-testid={a.testid}>{a.text}</button>
            ))}
          </div>
          <ErrorBox error={error} />
          <ClosedNotice docs={[live]} />
        </div>
        {side}
        {label == null && (
          <div class="notice" data-testid="no-label">
            This project has no labels yet, so there is nothing to draw with: its owner adds labels on the
            project page.
          </div>
        )}
        <LabelPicker tree={tree} current={[]} active={label} onPick={pick} color={color} />
        {task !== "semantic" && (
          <ShapePanel shapes={shapes} tree={tree} view={view} color={color} name={name} selected={selected}
            select={setSelected} live={live} author={author} readonly={readonly} />
        )}
        {task === "semantic" && <MaskLabelPanel tree={tree} view={view} color={color} name={name} />}
        {task === "semantic" && live && (
          <p class="muted" data-testid="painted-tiles" data-count={paintedTiles(live.doc)}>
            {paintedTiles(live.doc)} painted tile(s)</p>
        )}
        <ImageControls brightness={brightness} contrast={contrast} setBrightness={setBrightness}
          setContrast={setContrast} dicom={dicom} wc={win.wc} ww={win.ww} setWindow={(wc, ww) => setWin({ wc, ww })} />
        <Instructions project={project} />
      </aside>
      {help && (
        <ShortcutSheet keys={drawShortcuts(task, tool, flattenLabels(tree).map((n) => n.hotkey))}
          title={`Keyboard shortcuts: ${TOOL_NAMES[tool]} tool`} onClose={() => setHelp(false)} />
      )}
    </div>
  );
}

/** A colour function giving every label one colour, the same function for the same colour
 * (the mask layer redraws everything when its colour function changes). */
const solids = new Map<string, (label: number) => string>();
function solidColor(color: string): (label: number) => string {
  let fn = solids.get(color);
  if (!fn) solids.set(color, (fn = () => color));
  return fn;
}

function BeneathShape({ shape, color, view, w, h }: {
  shape: ReturnType<typeof readShapes>[number]; color: string; view: { scale: number }; w: number; h: number;
}) {
  const common = { fill: "none", stroke: color, "stroke-width": 1.5 / view.scale, "stroke-opacity": 0.9,
    "stroke-dasharray": `${2 / view.scale} ${3 / view.scale}`, "pointer-events": "none" };
  if (shape.kind === "box") {
    return <rect x={shape.x! * w} y={shape.y! * h} width={shape.w! * w} height={shape.h! * h} {...common} />;
  }
  const pts = shape.points!;
  return <polygon points={pts.reduce((acc, v, i) => acc + (i % 2 ? `,${v * h} ` : `${v * w}`), "")} {...common} />;
}
