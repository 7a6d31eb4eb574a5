// A live annotation document: a Y.Doc synced with the server over the y-websocket protocol,
// its sync state for the autosave indicator, and presence (who else is here, their cursors).
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import { wsUrl } from "../api";
import { bytesToBase64 } from "./annotation";
import { CLOSE_SIGNED_OUT, NO_LONGER_AVAILABLE, sessionEnded } from "../ui";

export type SyncState = "synced" | "syncing" | "offline";

export interface Presence {
  clientId: number;
  user: { id: number; name: string; color: string };
  cursor: { x: number; y: number } | null;
}

/** The documents open in this tab, by room: what is on screen when the tab goes away. */
const openDocs = new Map<string, LiveDoc>();

export function openDoc(room: string): LiveDoc | undefined {
  return openDocs.get(room);
}

/** A stable, readable colour per user id. */
export function userColor(id: number): string {
  return `hsl(${(id * 137.508) % 360}deg 70% 45%)`;
}

export class LiveDoc {
  readonly doc = new Y.Doc();
  readonly provider: WebsocketProvider;
  private pending = false;
  private lastLocal = 0;
  private timer: number;
  private listeners = new Set<() => void>();
  private cursor: { x: number; y: number } | null = null;
  private cursorFrame = 0;
  private destroyed = false;
  state: SyncState = "offline";
  closedReason: string | null = null;

  constructor(readonly room: string, user: { id: number; name: string }) {
    this.provider = new WebsocketProvider(wsUrl("/collab"), room, this.doc, { maxBackoffTime: 5000 });
    this.provider.awareness.setLocalStateField("user", { ...user, color: userColor(user.id) });
    openDocs.set(room, this);
    this.doc.on("update", (_update: Uint8Array, origin: unknown) => {
      if (origin !== this.provider) {
        this.pending = true;
        this.lastLocal = Date.now();
      }
      this.emit();
    });
    this.provider.on("status", () => this.refresh());
    this.provider.on("sync", () => this.refresh());
    this.provider.on("connection-close", (event: CloseEvent | null) => {
      // 4xxx close codes are the server refusing this document, at the handshake or later
      // when access changes: reconnecting would be refused again, so stop.
      if (event && event.code >= 4000) {
        this.provider.shouldConnect = false;
        this.closedReason = event.code === 4403 || event.code === 4404
          ? NO_LONGER_AVAILABLE : event.reason || `closed (${event.code})`;
        if (event.code === CLOSE_SIGNED_OUT) sessionEnded();
      }
      this.refresh();
    });
    this.provider.awareness.on("change", () => this.emit());
    // y-websocket sends each update as soon as it happens; an update counts as saved once
    // the socket's send buffer has drained while connected and synced.
    this.timer = window.setInterval(() => this.refresh(), 200);
  }

  private refresh(): void {
    const ws = this.provider.ws;
    let next: SyncState;
    if (!this.provider.wsconnected) next = "offline";
    else if (!this.provider.synced) next = "syncing";
    else if (this.pending && (ws?.bufferedAmount ?? 0) === 0 && Date.now() - this.lastLocal > 150) {
      this.pending = false;
      next = "synced";
    } else next = this.pending ? "syncing" : "synced";
    if (next !== this.state) {
      this.state = next;
      this.emit();
    }
  }

  private emit(): void {
    for (const fn of this.listeners) fn();
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Share where the pointer is, at most once a frame: pointer moves can come faster, and
   * each share is a message to everyone and a render here. */
  setCursor(cursor: { x: number; y: number } | null): void {
    this.cursor = cursor;
    if (this.cursorFrame) return;
    this.cursorFrame = requestAnimationFrame(() => {
      this.cursorFrame = 0;
      if (!this.destroyed) this.provider.awareness.setLocalStateField("cursor", this.cursor);
    });
  }

  /** How far this copy of the document goes (base64 of its Yjs state vector): a submit sends
   * it, and the server submits its own copy once that holds everything this one had. */
  stateVector(): string {
    return bytesToBase64(Y.encodeStateVector(this.doc));
  }

  /** Everyone else on this document right now. */
  others(): Presence[] {
    const out: Presence[] = [];
    this.provider.awareness.getStates().forEach((state, clientId) => {
      if (clientId !== this.doc.clientID && state.user) {
        out.push({ clientId, user: state.user, cursor: state.cursor ?? null });
      }
    });
    return out;
  }

  destroy(): void {
    this.destroyed = true;
    if (openDocs.get(this.room) === this) openDocs.delete(this.room);
    cancelAnimationFrame(this.cursorFrame);
    window.clearInterval(this.timer);
    this.listeners.clear();
    this.provider.awareness.setLocalState(null);
    this.provider.destroy();
    this.doc.destroy();
  }
}
