// One item in the data manager: its image with the final label or any labeler's annotation
// drawn over it, every annotation side by side as thumbnails, what is known about it, the
// actions on it, and the previous / next item of the filtered list (buttons, or ← / →).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { get, type LabelNode, type Project } from "../../api";
import { ErrorBox, Spinner, navigate, useLoad } from "../../ui";
import { labelColors, labelNames } from "../labeling/parts";
import { Actions } from "./Actions";
import { Overlay } from "./Overlay";
import { STATUS_NAMES, dataHash, neighbours, queryString, type Detail, type Query, type Status } from "./query";

interface Shown { id: string; title: string; annotation: any }

export function ItemView({ project, tree, iid, query }: { project: Project; tree: LabelNode[]; iid: number; query: Query }) {
  const pid = project.id;
  const [item, error, reload] = useLoad(() => get<{ item: Detail }>(`/api/v1/projects/${pid}/items/${iid}`).then((r) => r.item), [iid]);
  const [near] = useLoad(() => neighbours(pid, iid, query), [iid, queryString(query)]);
  const color = useMemo(() => labelColors(tree), [tree]);
  const name = useMemo(() => labelNames(tree), [tree]);
  const shown: Shown[] = useMemo(() => {
    if (!item) return [];
    const out: Shown[] = [];
    if (item.final) out.push({ id: "final", title: "Final", annotation: item.final });
    for (const a of item.annotations) out.push({ id: `u${a.user.id}`, title: a.user.name, annotation: a.annotation });
    if (item.prelabel) out.push({ id: "prelabel", title: "Prelabel", annotation: item.prelabel });
    return out;
  }, [item]);
  const [chosen, setChosen] = useState<string | null>(null);
  const current = shown.find((s) => s.id === chosen) ?? shown[0] ?? null;
  const go = (to: { id: number } | null | undefined) => to && navigate(dataHash(pid, query, to.id));

  // The keys read the neighbours as last rendered: a listener re-registered by an effect
  // would still hold the previous item's for a moment after the buttons show the new ones.
  const latest = useRef(near);
  latest.current = near;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
      if (e.key === "ArrowLeft") go(latest.current?.previous);
      else if (e.key === "ArrowRight") go(latest.current?.next);
      else if (e.key === "Escape") navigate(dataHash(pid, query));
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, [pid, queryString(query)]);

  return (
    <div class="dm-item" data-testid="item-view">
      <div class="row dm-item-nav">
        <a href={dataHash(pid, query)} data-testid="back-to-list">← All items</a>
        <button type="button" disabled={!near?.previous} onClick={() => go(near?.previous)} data-testid="prev-item"
          title={near?.previous?.key ?? "no previous item"}>← Previous</button>
        <button type="button" disabled={!near?.next} onClick={() => go(near?.next)} data-testid="next-item"
          title={near?.next?.key ?? "no next item"}>Next →</button>
        <h2 class="dm-item-key" data-testid="item-title">{item?.key ?? "…"}</h2>
      </div>
      <ErrorBox error={error} />
      {!item && !error && <Spinner />}
      {item && (
        <div class="dm-item-body">
          <div class="dm-item-main">
            {current ? (
              <>
                <h3 data-testid="shown-annotation">{current.title}</h3>
                <Overlay pid={pid} iid={iid} aspect={item.width && item.height ? item.width / item.height : null} annotation={current.annotation} color={color} name={name} size="full" alt={item.key} />
              </>
            ) : (
              <>
                <h3>No annotation yet</h3>
                <Overlay pid={pid} iid={iid} aspect={item.width && item.height ? item.width / item.height : null} annotation={null} color={color} name={name} size="full" alt={item.key} />
              </>
            )}
            {shown.length > 0 && (
              <div class="dm-versions" data-testid="annotations">
                {shown.map((s) => (
                  <button type="button" key={s.id} class={`dm-version ${current?.id === s.id ? "on" : ""}`}
                    onClick={() => setChosen(s.id)} data-testid="annotation-thumb">
                    <Overlay pid={pid} iid={iid} aspect={item.width && item.height ? item.width / item.height : null} annotation={s.annotation} color={color} name={name} alt={`${s.title}: ${item.key}`} />
                    <span>{s.title}</span>
                  </button>
                ))}
              </div>
            )}
          </div>
          <aside class="card dm-facts">
            <dl>
              <dt>Status</dt><dd><span class={`dm-status-badge ${item.status}`} data-testid="item-status">
                {STATUS_NAMES[item.status as Status] ?? item.status}</span></dd>
              {item.decided_by && <><dt>Decided</dt><dd>{item.decided_by === "owner" ? "in review" : item.decided_by}
                {item.decided_by_user && ` by ${item.decided_by_user.name}`}</dd></>}
              {item.agreement !== null && <><dt>Agreement</dt><dd>{Math.round(item.agreement * 100)}%</dd></>}
              {item.target !== null && <><dt>Labelers needed</dt><dd>{item.target}</dd></>}
              <dt>Annotations</dt><dd>{item.annotations.length}</dd>
              {item.working.length > 0 && <><dt>Labeling now</dt><dd>{item.working.map((w) => w.user.name).join(", ")}</dd></>}
              <dt>Size</dt><dd>{item.width && item.height ? `${item.width} × ${item.height}` : "not read yet"}</dd>
              <dt>Changed</dt><dd>{new Date(item.updated_at).toLocaleString()}</dd>
            </dl>
            {item.status === "needs_review" && <p><a href={`#/p/${pid}/review`}>Decide it on the Review page</a></p>}
            <Actions project={project} selection={{ ids: [iid] }} count="1" compact
              onDone={(action) => (action === "delete" ? navigate(near?.next ? dataHash(pid, query, near.next.id) : dataHash(pid, query)) : reload())} />
          </aside>
        </div>
      )}
    </div>
  );
}
