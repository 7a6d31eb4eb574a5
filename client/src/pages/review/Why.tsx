// Why an item is in review, from the same consensus rules that sent it there (the server's
// `reason`): for classification the votes per label, for boxes the places where no label won
// or as many drew as did not (numbered as on the image), for masks the undecided share.
import { inkOn } from "./overlay";
import type { Reason, ReviewItem } from "./types";
import { disputed } from "./types";

/** The reason in one sentence, with label names (the server's `detail` names label ids). */
function headline(reason: Reason, name: (label: number) => string): string {
  const names = (ids: (number | null)[]) => ids.map((l) => (l == null ? "no class" : name(l))).join(", ");
  switch (reason.kind) {
    case "votes": {
      const top = reason.votes[0];
      if (reason.agreed) return `${top.count} of ${reason.labelers} agree on ${names([top.label])}.`;
      const tied = reason.votes.filter((v) => v.count === top.count);
      return tied.length > 1
        ? `Tie between ${names(tied.map((v) => v.label))}: ${top.count} of ${reason.labelers} each, ${reason.needed} needed.`
        : `No class has a majority: ${names([top.label])} has ${top.count} of ${reason.labelers}, ${reason.needed} needed.`;
    }
    case "labels": {
      const tied = reason.labels.filter((l) => l.verdict === "tied").map((l) => l.label);
      return tied.length ? `Tied on ${names(tied)}: as many labelers chose ${tied.length > 1 ? "each" : "it"} as did not.`
        : `Every label was decided by ${reason.labelers} labeler(s).`;
    }
    case "places": {
      const open = disputed(reason).length;
      return open ? `${open} place(s) to settle, outlined and numbered on the image.`
        : `Every place was settled by ${reason.labelers} labeler(s).`;
    }
    default:
      return `${reason.detail}.`;
  }
}

const VERDICT: Record<string, string> = {
  present: "kept", absent: "left out", tied: "tied", object: "agreed", dropped: "dropped (minority)",
  no_label: "no majority label",
};

export function Why({ item, name, people }: {
  item: ReviewItem; name: (label: number) => string; people: Map<number, { name: string; color: string }>;
}) {
  const reason = item.reason;
  const inReview = item.status === "needs_review";
  const person = (id: number) => {
    const p = people.get(id);
    return <span class="person" style={{ background: p?.color ?? "#6b7280", color: inkOn(p?.color ?? "") }}>{p?.name ?? `user ${id}`}</span>;
  };
  return (
    <div class="card why" data-testid="why">
      <h3 style="margin-top:0">{inReview ? "Why it is in review" : "Agreement"}</h3>
      {!reason && <p class="muted">No submitted annotations to compare yet.</p>}
      {reason && reason.kind !== "pixels" && <p data-testid="why-detail">{headline(reason, name)}</p>}
      {reason?.kind === "votes" && (
        <table class="list" data-testid="why-votes">
          <tbody>{reason.votes.map((v) => (
            <tr><td>{v.label == null ? <span class="muted">no class</span> : name(v.label)}</td>
              <td>{v.count} of {reason.labelers}</td><td>{v.labelers.map(person)}</td></tr>
          ))}</tbody>
        </table>
      )}
      {reason?.kind === "labels" && (
        <table class="list" data-testid="why-labels">
          <tbody>{reason.labels.map((l) => (
            <tr class={l.verdict === "tied" ? "disputed" : ""}><td>{name(l.label)}</td><td>{l.count} of {reason.labelers}</td>
              <td>{VERDICT[l.verdict]}</td><td>{l.labelers.map(person)}</td></tr>
          ))}</tbody>
        </table>
      )}
      {reason?.kind === "places" && (
        <ol class="places" data-testid="why-places">
          {disputed(reason).map((p) => (
            <li data-verdict={p.verdict}>
              <strong>{VERDICT[p.verdict]}</strong>: drawn by {p.drawn_by} of {reason.labelers}
              {p.verdict === "tied" ? `, ${reason.needed} needed` : ""} —{" "}
              {p.boxes.map((b) => <span class="vote">{person(b.labeler)} {name(b.label)}</span>)}
            </li>
          ))}
          {disputed(reason).length === 0 && <li class="muted">every place was settled</li>}
        </ol>
      )}
      {reason?.kind === "pixels" && (
        <p data-testid="why-pixels">{(reason.share * 100).toFixed(1)}% of the painted area is undecided (at most{" "}
          {(reason.limit * 100).toFixed(1)}% may be), in {Object.keys(reason.tiles).length} tile(s) outlined on the
          image.</p>
      )}
      {item.agreement != null && <p class="muted">Agreement score {Math.round(item.agreement * 100)}%.</p>}
    </div>
  );
}
