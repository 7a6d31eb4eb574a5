// The labeler's work queue: the page on screen and at most one page leased ahead (its
// images preloaded, so moving on is instant). Asking for work resumes the labeler's own live
// leases first, in the order they were handed out, so a reload comes back to the same items
// in the same places, drawings included. Leases the labeler walks away from are given back:
// leaving the label page, changing the grid size, signing out, and closing the tab.
//
// A closing tab cannot be told from a reload, so when the tab goes away its leases are given
// back after a grace period: a reload within it resumes them all, a closed tab frees them
// half a minute later instead of when their lease time runs out.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, mediaUrl, type Lease } from "../../api";
import { extend, nextLeases, release, releasesSettled } from "./leases";

export type WorkState = "loading" | "ready" | "empty" | "stopped" | "error";

const EXTEND_EVERY_MS = 120_000;
const TAB_GONE_GRACE_S = 30;

function preload(pid: number, leases: Lease[]): void {
  for (const l of leases) {
    const img = new Image();
    img.src = mediaUrl(pid, l.item.id);
  }
}

/** `leaveGrace`: when the hook goes away, how long (seconds) its leases are kept before they
 * go back: 0 (the default) gives them back at once; going back to a submitted item keeps them
 * a while, so the labeler returns to the same page. */
export function useWork(pid: number, count: number, leaveGrace?: { current: number }) {
  const [current, setCurrent] = useState<Lease[]>([]);
  const [state, setState] = useState<WorkState>("loading");
  const [error, setError] = useState<unknown>(null);
  // Why no page could be leased ahead (the project was paused, say) while work is on screen.
  const [aheadError, setAheadError] = useState<unknown>(null);
  const shown = useRef<Lease[]>([]);
  const ahead = useRef<Lease[]>([]);
  const aheadJob = useRef<Promise<void> | null>(null);
  // Bumped when the page goes or the grid size changes: answers to older requests are not
  // shown, and what they leased goes back.
  const run = useRef(0);

  const held = () => [...shown.current, ...ahead.current];

  const fail = (e: unknown, token: number) => {
    if (token !== run.current) return;
    shown.current = [];
    setCurrent([]);
    setError(e);
    setState(e instanceof ApiError && e.code === "project_not_running" ? "stopped" : "error");
  };

  const show = (page: Lease[]) => {
    shown.current = page;
    setCurrent(page);
    setError(null);
    setState(page.length ? "ready" : "empty");
    if (page.length) leaseAhead();
  };

  const leaseAhead = () => {
    const token = run.current;
    const job = nextLeases(pid, count, shown.current).then((page) => {
      if (token !== run.current) return void release(page, true);
      ahead.current = page;
      preload(pid, page);
      setAheadError(null);
    }, (e) => {
      if (token !== run.current) return;
      ahead.current = [];
      setAheadError(e);
    });
    aheadJob.current = job;
    return job;
  };

  /** The page to show when arriving, or looking again: own live leases first. */
  const start = async () => {
    const token = run.current;
    setState("loading");
    try {
      await aheadJob.current;
      // What an earlier grid size held goes back first: asked at the same time, the server
      // would hand those leases out again as this labeler's own, just before they go.
      await releasesSettled();
      const page = await nextLeases(pid, count, []);
      if (token !== run.current) return void release(page, true);
      ahead.current = [];
      show(page);
    } catch (e) {
      fail(e, token);
    }
  };

  /** The page on screen is done (submitted or skipped): the page ahead comes next. */
  const advance = async () => {
    const token = run.current;
    setState("loading");
    shown.current = [];
    try {
      await aheadJob.current;
      let page = ahead.current;
      ahead.current = [];
      if (!page.length) page = await nextLeases(pid, count, []); // others may have freed work
      if (token !== run.current) return void release(page, true);
      show(page);
    } catch (e) {
      fail(e, token);
    }
  };

  useEffect(() => {
    run.current++;
    void start();
    const hide = () => void release(held(), true, TAB_GONE_GRACE_S);
    // Back from the back/forward cache: asking again resumes the leases before the grace ends.
    const back = (e: PageTransitionEvent) => e.persisted && void start();
    const keep = window.setInterval(() => !document.hidden && void extend(held()), EXTEND_EVERY_MS);
    addEventListener("pagehide", hide);
    addEventListener("pageshow", back);
    return () => {
      run.current++;
      removeEventListener("pagehide", hide);
      removeEventListener("pageshow", back);
      window.clearInterval(keep);
      // Leaving the label page or changing the grid size: everything goes back (going back
      // to a submitted item: unless the labeler returns within the grace).
      void release(held(), true, leaveGrace?.current ?? 0);
      shown.current = [];
      ahead.current = [];
    };
  }, [pid, count]);

  return {
    current, state, error, aheadError, advance, retry: start,
    retryAhead: () => void leaseAhead(),
  };
}
