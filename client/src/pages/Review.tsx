// Review: the Needs Review queue; for an item, every labeler's annotation (their live
// documents, in their colours with label tags, updating as they change) overlaid on the final
// or side by side with it, why the item is in review, and the `final` document that reviewers
// edit together (taking a labeler's whole annotation or single shapes in one click) before
// deciding it.
import { useEffect, useMemo, useState } from "preact/hooks";
import { get, post, type LabelNode, type Project } from "../api";
import { readShapes, type Shape } from "../doc/annotation";
import { LiveDoc, openDoc, userColor } from "../doc/live";
import { documentName } from "../doc/names";
import { ErrorBox, Page, Spinner, session, useProject } from "../ui";
import { DrawView } from "./labeling/Draw";
import { labelColors, labelNames, useLive } from "./labeling/parts";
import { ClassReview } from "./review/ClassReview";
import { Outcome } from "./review/Outcome";
import { LabelersCard } from "./review/LabelersCard";
import { SideBySide } from "./review/SideBySide";
import { Why } from "./review/Why";
import { copyShapes, replaceMask, replaceShapes } from "./review/copy";
import { DisputedPlaces, LabelerShapes, UndecidedTiles, placeTags } from "./review/overlay";
import { disputed, itemHref, type Labeler, type ReviewItem } from "./review/types";
import "./review/review.css";

type Mode = "overlay" | "side";
/** A message about one item, which names it by file name and links to it. */
type Notice = { key: string; iid: number; text: string };
const MODE_KEY = "colabel.reviewMode";

/** Every labeler of the item (at work or done), each on their live document in their colour. */
function useLabelers(pid: number, item: ReviewItem | null): Labeler[] {
  const [docs, setDocs] = useState<Labeler[]>([]);
  const me = session.user!;
  const people = new Map<number, string>();
  for (const a of item?.annotations ?? []) people.set(a.user.id, a.user.name);
  for (const l of item?.labelers ?? []) people.set(l.user.id, l.user.name);
  const ids = [...people.keys()].sort((a, b) => a - b);
  useEffect(() => {
    if (!item) return;
    const opened = ids.map((id) => ({
      id, name: people.get(id)!, color: userColor(id),
      doc: new LiveDoc(documentName(pid, item.id, id), { id: me.id, name: me.name || me.email }),
    }));
    setDocs(opened);
    return () => opened.forEach((b) => b.doc.destroy());
  }, [item?.id, ids.join(",")]);
  return docs;
}

export function Review({ pid }: { pid: number }) {
  const [project, tree, error] = useProject(pid);
  const [queue, setQueue] = useState<ReviewItem[] | null>(null);
  const [queueError, setQueueError] = useState<unknown>(null);
  const [currentId, setCurrentId] = useState<number | null>(
    () => Number(new URLSearchParams(location.hash.split("?")[1] ?? "").get("item")) || null);
  const [current, setCurrent] = useState<ReviewItem | null>(null);
  const [notice, setNotice] = useState<Notice | null>(null);
  const load = () => get<{ items: ReviewItem[] }>(`/api/v1/projects/${pid}/review?limit=200`).then((r) => {
    setQueue(r.items);
    setQueueError(null);
    setCurrentId((c) => c ?? r.items[0]?.id ?? null);
  }, setQueueError);
  useEffect(() => {
    load();
    const t = setInterval(load, 10000);
    return () => clearInterval(t);
  }, [pid]);
  // The item on screen, as the review endpoint tells it (with why it is in review and who is
  // at work on it), refreshed with the queue.
  useEffect(() => {
    if (currentId == null) {
      setCurrent(null);
      return;
    }
    let live = true;
    const fetchOne = () => get<{ item: ReviewItem }>(`/api/v1/projects/${pid}/review/${currentId}`).then(
      (r) => live && setCurrent(r.item), (e) => live && setQueueError(e));
    setCurrent((c) => (c?.id === currentId ? c : null));
    fetchOne();
    const t = setInterval(fetchOne, 10000);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, [pid, currentId]);
  const labelers = useLabelers(pid, current);
  if (!project || !tree) return <Page title="Review"><ErrorBox error={error} />{!error && <Spinner />}</Page>;
  const decided = () => {
    if (current) setNotice({ key: current.key, iid: current.id, text: "decided." });
    setCurrentId(null);
    setCurrent(null);
    load();
  };
  const classify = project.task_type === "multiclass" || project.task_type === "multilabel";
  return (
    <Page title={`Review · ${project.name}`} project={project} wide>
      {notice && (
        <div class="notice" data-testid="review-notice">
          <a href={itemHref(pid, notice.iid)}>{notice.key}</a> {notice.text}
        </div>
      )}
      <div class="review">
        <Queue project={project} queue={queue} currentId={currentId} error={queueError}
          onPick={(iid) => setCurrentId(iid)} />
        <section style="grid-column: span 2; min-height: 0">
          {currentId == null && <p class="muted">Pick an item from the queue.</p>}
          {currentId != null && !current && <Spinner />}
          {current && classify && (
            <ClassReview key={current.id} project={project} tree={tree} item={current} labelers={labelers}
              people={peopleOf(labelers)} onDecided={decided} />
          )}
          {current && !classify && (
            <DrawReview key={current.id} project={project} tree={tree} item={current} labelers={labelers}
              onDecided={decided} />
          )}
        </section>
      </div>
    </Page>
  );
}

function peopleOf(labelers: Labeler[]): Map<number, { name: string; color: string }> {
  return new Map(labelers.map((b) => [b.id, { name: b.name, color: b.color }]));
}

function Queue({ project, queue, currentId, error, onPick }: {
  project: Project; queue: ReviewItem[] | null; currentId: number | null; error: unknown;
  onPick: (iid: number) => void;
}) {
  const pid = project.id;
  return (
    <aside class="queue card">
      <h3 style="margin-top:0">Needs review ({queue?.length ?? "…"})</h3>
      <ErrorBox error={error} />
      {queue?.length === 0 && <p class="muted" data-testid="review-empty">Nothing needs review.</p>}
      {queue?.map((i) => (
        <div class="queue-entry">
          <button class={currentId === i.id ? "active" : ""} data-testid={`review-item-${i.key}`}
            onClick={() => onPick(i.id)}>
            <span>{i.key}</span><span class="muted">{i.annotations.length} labelers</span>
          </button>
          <a href={itemHref(pid, i.id)} title={`${i.key} in the data manager`} aria-label={`${i.key} in the data manager`}>↗</a>
        </div>
      ))}
      {project.role === "owner" && (
        <p class="muted" style="margin-top:16px" data-testid="reopen-hint">
          To send a decided item back to labeling, find it among the{" "}
          <a href={`#/p/${pid}/data?status=labeled`}>done items</a> of the data manager and re-open it there.
        </p>
      )}
    </aside>
  );
}

function DrawReview({ project, tree, item, labelers, onDecided }: {
  project: Project; tree: LabelNode[]; item: ReviewItem; labelers: Labeler[]; onDecided: () => void;
}) {
  const me = session.user!;
  const author = String(me.id);
  const [mode, setModeState] = useState<Mode>(() => (localStorage.getItem(MODE_KEY) === "side" ? "side" : "overlay"));
  const [hidden, setHidden] = useState<Set<number>>(new Set());
  const [refit, setRefit] = useState(0);
  // The final's stage changes size with the mode: fit its image again once the layout has.
  useEffect(() => {
    const frame = requestAnimationFrame(() => setRefit((r) => r + 1));
    return () => cancelAnimationFrame(frame);
  }, [mode]);
  const version = useLive(labelers.map((b) => b.doc));
  const name = useMemo(() => labelNames(tree), [tree]);
  const color = useMemo(() => labelColors(tree), [tree]);
  const semantic = project.task_type === "semantic";
  const places = disputed(item.reason);
  const setMode = (m: Mode) => {
    localStorage.setItem(MODE_KEY, m);
    setModeState(m);
  };
  // The final document DrawView has open in this tab: edits made here join its undo history.
  const final = () => openDoc(item.final_document)?.doc ?? null;
  const accept = (who: Labeler) => {
    const doc = final();
    if (!doc) return;
    if (semantic) replaceMask(doc, who.doc.doc, author);
    else replaceShapes(doc, readShapesOf(who), author);
  };
  const copy = (shape: Shape) => {
    const doc = final();
    if (doc) copyShapes(doc, [shape], author);
  };
  const shown = labelers.filter((b) => !hidden.has(b.id));
  return (
    <div class={`review-body ${mode}`} data-version={version} data-mode={mode}>
      {mode === "side" ? (
        <SideBySide project={project} item={item} labelers={labelers} places={places} name={name} color={color}
          onAccept={accept} onCopy={copy} />
      ) : null}
      <DrawView project={project} tree={tree} room={item.final_document} item={item} refit={refit}
        beneath={mode === "overlay" ? shown.map((b) => ({ name: b.name, color: b.color, doc: b.doc })) : []}
        beneathOverlay={(view, s) => (
          <g>
            {/* Places first: the labelers' outlines and tags stay on top of them. */}
            <DisputedPlaces places={places} view={view} w={s.w} h={s.h} />
            {mode === "overlay" && !semantic && (() => {
              const layers = shown.map((b) => ({ who: b.id, color: b.color, shapes: readShapesOf(b) }));
              const tagX = placeTags(layers, name, view, s.w, s.h);
              return layers.map((l) => (
                <LabelerShapes who={l.who} shapes={l.shapes} color={l.color} name={name} view={view} w={s.w} h={s.h}
                  tagX={tagX} />
              ));
            })()}
            {item.reason?.kind === "pixels" && (
              <UndecidedTiles tiles={item.reason.tiles} size={item.reason.tile_size} view={view} />
            )}
          </g>
        )}
        actions={[{
          text: "Decide", testid: "decide", primary: true,
          run: (doc) => post(`/api/v1/projects/${project.id}/items/${item.id}/decide`,
            { state_vector: doc.stateVector() }).then(onDecided),
        }]}
        side={(
          <>
            <Outcome pid={project.id} item={item} />
            <div class="card">
              <div class="segmented" role="group" aria-label="How labelers' annotations are shown">
                <button class={mode === "overlay" ? "active" : ""} aria-pressed={mode === "overlay"}
                  data-testid="mode-overlay" onClick={() => setMode("overlay")}>Overlay</button>
                <button class={mode === "side" ? "active" : ""} aria-pressed={mode === "side"}
                  data-testid="mode-side" onClick={() => setMode("side")}>Side by side</button>
              </div>
            </div>
            <Why item={item} name={name} people={peopleOf(labelers)} />
            <LabelersCard labelers={labelers} hidden={hidden} name={name} semantic={semantic}
              toggle={(id) => {
                const next = new Set(hidden);
                if (next.has(id)) next.delete(id);
                else next.add(id);
                setHidden(next);
              }}
              onAccept={accept} onCopy={copy} />
          </>
        )} />
    </div>
  );
}

function readShapesOf(who: Labeler): Shape[] {
  return readShapes(who.doc.doc);
}
