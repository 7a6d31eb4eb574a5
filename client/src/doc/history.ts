// Undo and redo of this person's own edits on one screen, across all its documents (a grid
// page has one per image, so "label these four" is one step to undo). Each document gets a
// Y.UndoManager that tracks only transactions with the LOCAL_EDIT origin: a collaborator's
// edits and the server's (prelabels, consensus) arrive with the provider as origin and are
// never undone, and undoing one's own change leaves theirs in place.
import * as Y from "yjs";
import { LOCAL_EDIT, roots, touch } from "./annotation";

/** One undoable step: how many stack items it left on which documents' managers. */
type Step = Map<Y.UndoManager, number>;

export class History {
  private managers = new Map<Y.Doc, Y.UndoManager>();
  private undoSteps: Step[] = [];
  private redoSteps: Step[] = [];
  private open: Step | null = null; // the step edits made in this task join
  private listeners = new Set<() => void>();
  private stroking = false;

  constructor(private readonly author: string) {}

  /** Start tracking a document; returns the function that stops it. */
  track(doc: Y.Doc): () => void {
    const { classes, shapes, mask } = roots(doc);
    // `meta` (who edited last) stays out of the scope: it is not part of what was drawn.
    const manager = new Y.UndoManager([classes, shapes, mask], {
      trackedOrigins: new Set([LOCAL_EDIT]), captureTimeout: this.stroking ? Infinity : 0,
    });
    manager.on("stack-item-added", (event: { origin: unknown; type: "undo" | "redo" }) => {
      if (event.type === "undo" && event.origin === LOCAL_EDIT) this.added(manager);
    });
    this.managers.set(doc, manager);
    return () => {
      manager.destroy();
      this.managers.delete(doc);
      for (const steps of [this.undoSteps, this.redoSteps]) {
        for (const step of steps) step.delete(manager);
      }
      this.undoSteps = this.undoSteps.filter((s) => s.size > 0);
      this.redoSteps = this.redoSteps.filter((s) => s.size > 0);
      this.emit();
    };
  }

  /** A fresh edit: it joins the step of its task (edits of one key press or click are
   * made synchronously), and nothing is left to redo. */
  private added(manager: Y.UndoManager): void {
    if (!this.open) {
      const step: Step = new Map();
      this.open = step;
      this.undoSteps.push(step);
      queueMicrotask(() => {
        if (this.open === step) this.open = null;
      });
    }
    this.open.set(manager, (this.open.get(manager) ?? 0) + 1);
    if (this.redoSteps.length) {
      this.redoSteps = [];
      for (const m of this.managers.values()) m.clear(false, true);
    }
    this.emit();
  }

  /** A brush stroke spans many pointer moves; between begin and end its edits are one step
   * (each move still goes out at once, so collaborators watch it being painted). */
  beginStroke(): void {
    this.stroking = true;
    this.open = null;
    for (const m of this.managers.values()) {
      m.stopCapturing();
      m.captureTimeout = Infinity;
    }
  }

  endStroke(): void {
    this.stroking = false;
    this.open = null;
    for (const m of this.managers.values()) {
      m.captureTimeout = 0;
      m.stopCapturing();
    }
  }

  get canUndo(): boolean {
    return this.undoSteps.length > 0;
  }

  get canRedo(): boolean {
    return this.redoSteps.length > 0;
  }

  undo(): void {
    this.replay(this.undoSteps, this.redoSteps, (m) => m.undo());
  }

  redo(): void {
    this.replay(this.redoSteps, this.undoSteps, (m) => m.redo());
  }

  private replay(from: Step[], to: Step[], apply: (m: Y.UndoManager) => unknown): void {
    const step = from.pop();
    if (!step) return;
    this.open = null;
    for (const [manager, n] of step) {
      for (let i = 0; i < n; i++) apply(manager);
      manager.doc.transact(() => touch(manager.doc, this.author), LOCAL_EDIT);
    }
    to.push(step);
    this.emit();
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => void this.listeners.delete(fn);
  }

  private emit(): void {
    this.listeners.forEach((fn) => fn());
  }
}
