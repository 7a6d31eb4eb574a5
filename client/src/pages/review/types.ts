// What the review endpoints send for one item (server/work/service.py `_in_review`), and the
// labelers whose documents a reviewer has open.
import type { Item } from "../../api";
import type { LiveDoc } from "../../doc/live";

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** A place where labelers drew boxes (a bbox consensus cluster) and what became of it. */
export interface Place extends Box {
  drawn_by: number;
  verdict: "object" | "dropped" | "tied" | "no_label";
  votes: { label: number; count: number }[];
  boxes: (Box & { labeler: number; label: number })[];
}

/** Why the submitted annotations do or do not agree (server/work/consensus.py, "Reason"),
 * with labelers named by user id. */
export type Reason = { agreed: boolean; detail: string } & (
  | { kind: "votes"; labelers: number; needed: number; votes: { label: number | null; count: number; labelers: number[] }[] }
  | { kind: "labels"; labelers: number; needed: number;
    labels: { label: number; count: number; labelers: number[]; verdict: "present" | "absent" | "tied" }[] }
  | { kind: "places"; labelers: number; needed: number; places: Place[] }
  | { kind: "pixels"; undecided: number; total: number; share: number; limit: number; tile_size: number;
    tiles: Record<string, number> }
  | { kind: "single"; labelers: number }
);

export interface ReviewItem extends Item {
  agreement: number | null;
  annotations: { user: { id: number; name: string }; annotation: any; submitted_at: string }[];
  /** Only when one item is asked for (`GET …/review/{iid}`). */
  reason?: Reason | null;
  final_document: string;
  /** Labelers at work as well as done (only when one item is asked for). */
  labelers?: { user: { id: number; name: string }; state: string }[];
}

/** A labeler's live document open in review, in that labeler's colour. */
export interface Labeler {
  id: number;
  name: string;
  color: string;
  doc: LiveDoc;
}

/** The places a reviewer must settle: where no label won, or where as many drew as did not. */
export function disputed(reason: Reason | null | undefined): Place[] {
  return reason?.kind === "places" ? reason.places.filter((p) => p.verdict === "tied" || p.verdict === "no_label") : [];
}

/** The data manager's page of an item (every mention of an item links there). */
export function itemHref(pid: number, iid: number): string {
  return `#/p/${pid}/data/${iid}`;
}
