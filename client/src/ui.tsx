// Small shared pieces: the session, hash routing helpers, layout, buttons and error boxes.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, type Project, type User } from "./api";

/** The signed-in user, loaded once at start; null when signed out. Change it through
 * `setUser` so that the app re-renders: signing in does not always change the address (from
 * the bare URL the hash is already "#/"), so the route alone cannot be relied on. */
export const session: { user: User | null } = { user: null };
const sessionListeners = new Set<() => void>();

export function setUser(user: User | null): void {
  session.user = user;
  sessionListeners.forEach((fn) => fn());
}

/** The signed-in user; the component re-renders when someone signs in or out. */
export function useUser(): User | null {
  const [, setTick] = useState(0);
  useEffect(() => {
    const on = () => setTick((t) => t + 1);
    sessionListeners.add(on);
    return () => void sessionListeners.delete(on);
  }, []);
  return session.user;
}

export function navigate(hash: string): void {
  if (location.hash !== hash) location.hash = hash;
}

/** The server ended this sign-in while a page was open (signed out in another tab, password
 * changed, account deactivated, API token revoked): back to the sign-in page. */
export function sessionEnded(): void {
  setUser(null);
  navigate("#/login");
}

/** Close codes of live sockets: the server ended the sign-in (4401), or this user may no
 * longer open what the socket shows (4403; 4404 when it is gone). */
export const CLOSE_SIGNED_OUT = 4401;
export const NO_LONGER_AVAILABLE = "This project is no longer available to you.";

export function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  return err instanceof Error ? err.message : String(err);
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const details = error instanceof ApiError && Array.isArray((error.details as any)?.errors)
    ? ((error.details as any).errors as { position?: string; message: string }[]) : null;
  return (
    <div class="error" role="alert">
      {errorText(error)}
      {details && (
        <ul>
          {details.slice(0, 20).map((d) => <li>{d.position ? `${d.position}: ` : ""}{d.message}</li>)}
        </ul>
      )}
    </div>
  );
}

/** Load something once (and again when `deps` change); returns [value, error, reload]. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): [T | null, unknown, () => void] {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    load().then((v) => live && (setValue(v), setError(null)), (e) => live && setError(e));
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return [value, error, () => setTick((t) => t + 1)];
}

export function useProject(pid: number): [Project | null, any[] | null, unknown, () => void] {
  const [data, error, reload] = useLoad(() => get(`/api/v1/projects/${pid}`), [pid]);
  return [data?.project ?? null, data?.labels ?? null, error, reload];
}

export function Page({ title, project, children, wide }: {
  title: string; project?: Project | null; children: ComponentChildren; wide?: boolean;
}) {
  useEffect(() => {
    document.title = `${title} · Colabel`;
  }, [title]);
  return (
    <div class={wide ? "page wide" : "page"}>
      <header class="topbar">
        <a class="brand" href="#/">Colabel</a>
        {project && <ProjectNav project={project} />}
        <span class="spacer" />
        {session.user?.is_admin && <a href="#/admin/users" data-testid="admin-users">Users</a>}
        {session.user && <span class="who" data-testid="who">{session.user.name || session.user.email}</span>}
        {session.user && <a href="#/logout">Sign out</a>}
      </header>
      <main>
        <h1>{title}</h1>
        {children}
      </main>
    </div>
  );
}

export function ProjectNav({ project }: { project: Project }) {
  const base = `#/p/${project.id}`;
  const staff = project.role === "owner" || project.role === "reviewer";
  return (
    <nav class="projectnav">
      <a href={base}>{project.name}</a>
      <a href={`${base}/label`}>Label</a>
      {staff && <a href={`${base}/data`}>Data</a>}
      {staff && <a href={`${base}/review`}>Review</a>}
      {staff && <a href={`${base}/monitor`}>Monitor</a>}
      {staff && <a href={`${base}/export`}>Export</a>}
    </nav>
  );
}

export function Spinner() {
  return <div class="spinner" aria-label="loading" />;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}
