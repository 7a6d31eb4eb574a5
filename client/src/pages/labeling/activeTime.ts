// How long the labeler has spent on what is on screen, for the monitor's time per item:
// counted from when it appeared, leaving out the time the tab was hidden (another tab, a
// minimised window), which is not time spent labeling.
import { useEffect, useRef } from "preact/hooks";

export class Stopwatch {
  private start = performance.now();
  private hiddenSince: number | null = document.hidden ? this.start : null;
  private hidden = 0;

  visibility(hidden: boolean, now = performance.now()): void {
    if (hidden && this.hiddenSince == null) this.hiddenSince = now;
    if (!hidden && this.hiddenSince != null) {
      this.hidden += now - this.hiddenSince;
      this.hiddenSince = null;
    }
  }

  /** Visible milliseconds so far. */
  elapsed(now = performance.now()): number {
    const hiddenNow = this.hiddenSince != null ? now - this.hiddenSince : 0;
    return Math.max(0, Math.round(now - this.start - this.hidden - hiddenNow));
  }
}

/** A stopwatch restarted whenever `key` changes (a new item or page on screen). */
export function useActiveTime(key: unknown): () => number {
  const watch = useRef<Stopwatch | null>(null);
  const current = useRef<unknown>(undefined);
  if (watch.current == null || current.current !== key) {
    watch.current = new Stopwatch();
    current.current = key;
  }
  useEffect(() => {
    const on = () => watch.current?.visibility(document.hidden);
    document.addEventListener("visibilitychange", on);
    return () => document.removeEventListener("visibilitychange", on);
  }, []);
  return () => watch.current!.elapsed();
}
