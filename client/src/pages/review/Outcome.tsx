// The item under review: its file name (a link to its page in the data manager) and where it
// stands.
import { itemHref, type ReviewItem } from "./types";

export function Outcome({ pid, item }: { pid: number; item: ReviewItem }) {
  return (
    <div class="card" data-testid="outcome">
      <h3 style="margin-top:0">
        <a href={itemHref(pid, item.id)} data-testid="item-link" title="Open in the data manager">{item.key}</a>
      </h3>
      {item.status === "needs_review" ? (
        <p>No agreement among {item.annotations.length} labelers: take one labeler's work in one click or make your
          own, then decide.</p>
      ) : (
        <p>{item.status.replace("_", " ")}{item.decided_by ? `, decided by ${item.decided_by}` : ""}
          {" "}· {item.annotations.length} labeler(s) done; their documents update here live.</p>
      )}
    </div>
  );
}
