// The labeler's work queue: the page of leases being labeled now, and the next page leased
// in the background with its images preloaded, so moving on is instant.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, mediaUrl, post, type Lease } from "../../api";

export type WorkState = "loading" | "ready" | "empty" | "stopped" | "error";

async function lease(pid: number, count: number): Promise<Lease[]> {
  const r = await post<{ leases: Lease[] }>(`/api/v1/projects/${pid}/tasks/next`, { count });
  return r.leases;
}

function preload(pid: number, leases: Lease[]): void {
  for (const l of leases) {
    const img = new Image();
    img.src = mediaUrl(pid, l.item.id);
  }
}

export function useWork(pid: number, count: number) {
  const [current, setCurrent] = useState<Lease[]>([]);
  const [state, setState] = useState<WorkState>("loading");
  const [error, setError] = useState<unknown>(null);
  const upcoming = useRef<Promise<Lease[]> | null>(null);
  const alive = useRef(true);

  const prefetch = () => {
    const next = lease(pid, count).then((ls) => {
      preload(pid, ls);
      return ls;
    });
    next.catch(() => undefined); // surfaced when it is used
    upcoming.current = next;
  };

  const advance = async () => {
    setState("loading");
    try {
      const ready = upcoming.current;
      upcoming.current = null;
      let page = ready ? await ready.catch(() => lease(pid, count)) : await lease(pid, count);
      if (page.length === 0 && ready) page = await lease(pid, count); // others may have freed work
      if (!alive.current) return;
      setCurrent(page);
      setError(null);
      setState(page.length ? "ready" : "empty");
      if (page.length) prefetch();
    } catch (e) {
      if (!alive.current) return;
      setCurrent([]);
      setError(e);
      setState(e instanceof ApiError && e.code === "project_not_running" ? "stopped" : "error");
    }
  };

  useEffect(() => {
    alive.current = true;
    upcoming.current = null;
    advance();
    return () => {
      alive.current = false;
    };
  }, [pid, count]);

  return { current, state, error, advance };
}
