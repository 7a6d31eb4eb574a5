// Review: the Needs Review queue; for an item, every labeler's annotation (their live
// documents, overlaid in their colours and updating as they change), the consensus outcome,
// and the `final` document that reviewers edit together before deciding it.
import { useEffect, useMemo, useState } from "preact/hooks";
import { get, mediaUrl, post, type Item, type LabelNode, type Project } from "../api";
import { readClasses, setSingleClass, toggleClass } from "../doc/annotation";
import { LiveDoc, userColor } from "../doc/live";
import { documentName, finalDocument } from "../doc/names";
import { ErrorBox, Page, Spinner, session, useProject } from "../ui";
import { DrawView, type Beneath } from "./labeling/Draw";
import {
  ClosedNotice, LabelPicker, People, ShortcutSheet, SyncBadge, hotkeyLabel, labelColors, labelNames, useKeys,
  useLive,
} from "./labeling/parts";
import { digitOf, isTyping } from "./labeling/keys";
import { UNDO_SHORTCUTS, UndoButtons, onHistoryKey, useHistory } from "./labeling/undo";

const CLASS_SHORTCUTS: [string, string][] = [
  ["1–9", "set (multi-label: toggle) a label on the final document"],
  ...UNDO_SHORTCUTS,
  ["Ctrl+Enter", "decide"],
  ["?", "this sheet"],
];

interface ReviewItem extends Item {
  agreement: number | null;
  annotations: { user: { id: number; name: string }; annotation: any; submitted_at: string }[];
  final_document: string;
}

function useLabelerDocs(pid: number, item: ReviewItem | null): Beneath[] {
  const [docs, setDocs] = useState<Beneath[]>([]);
  const me = session.user!;
  useEffect(() => {
    if (!item) return;
    const opened = item.annotations.map((a) => ({
      name: a.user.name, color: userColor(a.user.id),
      doc: new LiveDoc(documentName(pid, item.id, a.user.id), { id: me.id, name: me.name || me.email }),
    }));
    setDocs(opened);
    return () => opened.forEach((b) => b.doc.destroy());
  }, [item?.id]);
  return docs;
}

function Outcome({ item }: { item: ReviewItem }) {
  return (
    <div class="card" data-testid="outcome">
      <h3 style="margin-top:0">{item.status === "needs_review" ? "Consensus" : "Status"}</h3>
      {item.status === "needs_review" ? (
        <p>No agreement among {item.annotations.length} labelers
          {item.agreement != null && ` (best agreement ${Math.round(item.agreement * 100)}%)`}.
          Edit the final label and decide it.</p>
      ) : (
        <p>{item.status.replace("_", " ")}{item.decided_by ? `, decided by ${item.decided_by}` : ""}
          {" "}· {item.annotations.length} labeler(s); their documents update here live.</p>
      )}
    </div>
  );
}

/** Any item (for example one being labeled right now), opened by id from the URL. */
async function loadItem(pid: number, iid: number): Promise<ReviewItem> {
  const r = await get(`/api/v1/projects/${pid}/items/${iid}`);
  const item = r.item;
  return {
    ...item, agreement: item.agreement ?? null, final_document: finalDocument(pid, iid),
    annotations: (item.labelers ?? []).map((l: any) => ({ user: l.user, annotation: null, submitted_at: "" })),
  };
}

function ClassReview({ project, tree, item, beneath, onDecided }: {
  project: Project; tree: LabelNode[]; item: ReviewItem; beneath: Beneath[]; onDecided: () => void;
}) {
  const me = session.user!;
  const [final, setFinal] = useState<LiveDoc | null>(null);
  const version = useLive([final, ...beneath.map((b) => b.doc)]);
  const history = useHistory([final?.doc], String(me.id));
  const [error, setError] = useState<unknown>(null);
  const [help, setHelp] = useState(false);
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
    if (single) setSingleClass(final.doc, id, String(me.id));
    else toggleClass(final.doc, id, false, String(me.id));
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
  // The same keys as on the labeling grid.
  useKeys((e: KeyboardEvent) => {
    if (isTyping(e)) return;
    if (onHistoryKey(history, e)) return;
    const digit = digitOf(e);
    const hot = digit != null && !e.ctrlKey && !e.metaKey && !e.altKey ? hotkeyLabel(tree, digit) : null;
    if (hot != null) return pick(hot);
    if (e.key === "?") return setHelp(true);
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void decide();
  });
  return (
    <div class="labeler" data-version={version}>
      <div class="stage whole">
        <img src={mediaUrl(project.id, item.id)} alt={item.key} />
      </div>
      <aside class="side">
        <Outcome item={item} />
        <div class="card">
          <h3 style="margin-top:0">Labelers</h3>
          {beneath.map((b) => (
            <p><span class="person" style={{ background: b.color }}>{b.name}</span>{" "}
              {readClasses(b.doc.doc).map(name).join(", ") || <span class="muted">nothing</span>}</p>
          ))}
        </div>
        <div class="card">
          <div class="row"><strong>Final</strong><span class="spacer" />{final && <SyncBadge state={final.state} />}
            {final && <People people={final.others()} />}</div>
          <p data-testid="final-classes">{chosen.map(name).join(", ") || <span class="muted">not chosen yet</span>}</p>
          <div class="row" style="margin-bottom:8px">
            <UndoButtons history={history} />
            <button onClick={() => setHelp(true)} title="Keyboard shortcuts">?</button>
          </div>
          <button class="primary" disabled={!chosen.length} onClick={decide} data-testid="decide">Decide</button>
          <ErrorBox error={error} />
          <ClosedNotice docs={[final, ...beneath.map((b) => b.doc)]} />
        </div>
        <LabelPicker tree={tree} current={chosen} color={color} onPick={pick} />
      </aside>
      {help && <ShortcutSheet keys={CLASS_SHORTCUTS} onClose={() => setHelp(false)} />}
    </div>
  );
}

export function Review({ pid }: { pid: number }) {
  const [project, tree, error] = useProject(pid);
  const [queue, setQueue] = useState<ReviewItem[] | null>(null);
  const [queueError, setQueueError] = useState<unknown>(null);
  const [current, setCurrent] = useState<ReviewItem | null>(null);
  const [hidden, setHidden] = useState<Set<string>>(new Set());
  const [reopenId, setReopenId] = useState("");
  const [notice, setNotice] = useState<string | null>(null);
  const load = () => get<{ items: ReviewItem[] }>(`/api/v1/projects/${pid}/review?limit=200`).then((r) => {
    setQueue(r.items);
    setQueueError(null);
    setCurrent((c) => (c && r.items.find((i) => i.id === c.id)) || c || r.items[0] || null);
  }, setQueueError);
  useEffect(() => {
    const wanted = Number(new URLSearchParams(location.hash.split("?")[1] ?? "").get("item"));
    if (wanted) loadItem(pid, wanted).then(setCurrent, setQueueError);
    load();
    const t = setInterval(load, 10000);
    return () => clearInterval(t);
  }, [pid]);
  const beneath = useLabelerDocs(pid, current);
  if (!project || !tree) return <Page title="Review"><ErrorBox error={error} />{!error && <Spinner />}</Page>;
  const decided = () => {
    setNotice(`Item ${current?.key} decided.`);
    setCurrent(null);
    load();
  };
  const classify = project.task_type === "multiclass" || project.task_type === "multilabel";
  const shown = beneath.filter((b) => !hidden.has(b.name));
  return (
    <Page title={`Review · ${project.name}`} project={project} wide>
      {notice && <div class="notice">{notice}</div>}
      <div class="review">
        <aside class="queue card">
          <h3 style="margin-top:0">Needs review ({queue?.length ?? "…"})</h3>
          <ErrorBox error={queueError} />
          {queue?.length === 0 && <p class="muted" data-testid="review-empty">Nothing needs review.</p>}
          {queue?.map((i) => (
            <button class={current?.id === i.id ? "active" : ""} data-testid={`review-item-${i.key}`}
              onClick={() => setCurrent(i)}>
              <span>{i.key}</span><span class="muted">{i.annotations.length} labelers</span>
            </button>
          ))}
          {project.role === "owner" && (
            <form style="margin-top:16px" onSubmit={async (e) => {
              e.preventDefault();
              try {
                await post(`/api/v1/projects/${pid}/items/${reopenId}/reopen`);
                setNotice(`Item ${reopenId} went back to labeling.`);
              } catch (err) {
                setQueueError(err);
              }
            }}>
              <h3>Re-open a labeled item</h3>
              <div class="row"><input size={8} placeholder="item id" value={reopenId}
                onInput={(e) => setReopenId(e.currentTarget.value)} /><button type="submit">Re-open</button></div>
            </form>
          )}
        </aside>
        <section style="grid-column: span 2; min-height: 0">
          {!current && <p class="muted">Pick an item from the queue.</p>}
          {current && classify && (
            <ClassReview key={current.id} project={project} tree={tree} item={current} beneath={beneath}
              onDecided={decided} />
          )}
          {current && !classify && (
            <DrawView key={current.id} project={project} tree={tree} room={current.final_document} item={current}
              beneath={shown}
              actions={[{
                text: "Decide", testid: "decide", primary: true,
                run: (doc) => post(`/api/v1/projects/${pid}/items/${current.id}/decide`,
                  { state_vector: doc.stateVector() })
                  .then(decided),
              }]}
              side={(
                <>
                  <Outcome item={current} />
                  <div class="card">
                    <h3 style="margin-top:0">Labelers (dashed)</h3>
                    {beneath.map((b) => (
                      <label class="inline"><input type="checkbox" checked={!hidden.has(b.name)} onChange={() => {
                        const next = new Set(hidden);
                        if (next.has(b.name)) next.delete(b.name);
                        else next.add(b.name);
                        setHidden(next);
                      }} /><span class="person" style={{ background: b.color }}>{b.name}</span></label>
                    ))}
                  </div>
                </>
              )} />
          )}
        </section>
      </div>
    </Page>
  );
}
