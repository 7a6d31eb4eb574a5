// A project's home: status and its controls, items, members and roles, data and settings.
import { useState } from "preact/hooks";
import { del, get, post, put, type LabelNode, type Project } from "../api";
import { ErrorBox, Page, Spinner, useLoad, useProject } from "../ui";
import { LabelsCard } from "./LabelsCard";
import { ProjectSettings } from "./ProjectSettings";

interface Member {
  user: { id: number; name: string; email: string };
  role: string;
}

function Members({ project }: { project: Project }) {
  const owner = project.role === "owner";
  const [data, error, reload] = useLoad(
    () => get<{ members: Member[] }>(`/api/v1/projects/${project.id}/members`), [project.id]);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("labeler");
  const [actionError, setActionError] = useState<unknown>(null);
  const act = async (fn: () => Promise<unknown>) => {
    try {
      await fn();
      setActionError(null);
      reload();
    } catch (e) {
      setActionError(e);
    }
  };
  return (
    <section>
      <h2>Members</h2>
      <ErrorBox error={error || actionError} />
      {!data && !error && <Spinner />}
      {data && (
        <table class="list" data-testid="members">
          <thead><tr><th>Name</th><th>Email</th><th>Role</th><th /></tr></thead>
          <tbody>
            {data.members.map((m) => (
              <tr key={m.user.id}>
                <td>{m.user.name}</td>
                <td>{m.user.email}</td>
                <td>
                  {owner ? (
                    <select value={m.role} onChange={(e) => act(() => put(`/api/v1/projects/${project.id}/members`,
                      { user_id: m.user.id, role: e.currentTarget.value }))}>
                      <option value="owner">owner</option>
                      <option value="reviewer">reviewer</option>
                      <option value="labeler">labeler</option>
                    </select>
                  ) : m.role}
                </td>
                <td>{owner && <button class="danger" onClick={() =>
                  act(() => del(`/api/v1/projects/${project.id}/members/${m.user.id}`))}>Remove</button>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {owner && (
        <form class="row" style="margin-top:8px" onSubmit={(e) => {
          e.preventDefault();
          act(() => put(`/api/v1/projects/${project.id}/members`, { email, role })).then(() => setEmail(""));
        }}>
          <input type="email" placeholder="their@email" required value={email} name="member-email"
            onInput={(e) => setEmail(e.currentTarget.value)} />
          <select value={role} name="member-role" onChange={(e) => setRole(e.currentTarget.value)}>
            <option value="labeler">labeler</option>
            <option value="reviewer">reviewer</option>
            <option value="owner">owner</option>
          </select>
          <button type="submit">Add member</button>
        </form>
      )}
    </section>
  );
}

function Tree({ nodes }: { nodes: LabelNode[] }) {
  return (
    <ul class="tree">
      {nodes.map((n) => (
        <li key={n.id}>{n.hotkey && <span class="key">{n.hotkey}</span>} {n.name}
          {n.children.length > 0 && <Tree nodes={n.children} />}</li>
      ))}
    </ul>
  );
}

export function ProjectHome({ pid }: { pid: number }) {
  const [project, labels, error, reload] = useProject(pid);
  const [actionError, setActionError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  if (!project) return <Page title="Project"><ErrorBox error={error} />{!error && <Spinner />}</Page>;
  const owner = project.role === "owner";
  const staff = owner || project.role === "reviewer";
  const items = (project as any).items as Record<string, number>;
  const act = async (path: string) => {
    setBusy(true);
    try {
      await post(path);
      setActionError(null);
      reload();
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(false);
    }
  };
  const base = `/api/v1/projects/${pid}`;
  const locked = Object.entries(project.editable).filter(([, ok]) => !ok).map(([k]) => k);
  return (
    <Page title={project.name} project={project}>
      <div class="row">
        <span class={`badge ${project.status}`} data-testid="project-status">{project.status}</span>
        <span class="muted">{project.task_type} · {items.total ?? 0} items</span>
        <span class="spacer" />
        {owner && project.status === "initializing" &&
          <button class="primary" disabled={busy} onClick={() => act(`${base}/start`)}>Start labeling</button>}
        {owner && project.status === "running" &&
          <button disabled={busy} onClick={() => act(`${base}/pause`)}>Pause</button>}
        {owner && project.status === "paused" &&
          <button class="primary" disabled={busy} onClick={() => act(`${base}/resume`)}>Resume</button>}
        {project.status === "running" && <a class="button primary" href={`#/p/${pid}/label`}>Label</a>}
      </div>
      <ErrorBox error={actionError} />
      <div class="grid2" style="margin-top:16px">
        <section class="card">
          <h3>Items</h3>
          <table class="list" data-testid="item-counts">
            <tbody>
              {["unlabeled", "in_progress", "labeled", "needs_review", "skipped", "missing"].map((s) => (
                <tr key={s}><td>{staff ? <a href={`#/p/${pid}/data?status=${s}`}>{s.replace("_", " ")}</a>
                  : s.replace("_", " ")}</td><td>{items[s] ?? 0}</td></tr>
              ))}
            </tbody>
          </table>
          {staff && <p><a class="button" href={`#/p/${pid}/data`} data-testid="browse-items">Browse, filter and act on items</a></p>}
          <h3>Data</h3>
          {project.dataset ? (
            <p class="muted">{project.dataset.datastore?.kind} · pattern {project.dataset.pattern}
              {project.refresh.enabled && ` · refreshed every ${project.refresh.interval_s} s`}
              {project.refresh.last_refresh_at && ` · last ${new Date(project.refresh.last_refresh_at).toLocaleString()}`}
            </p>
          ) : <p class="muted">No data bound yet.</p>}
          {owner && project.dataset &&
            <button disabled={busy} onClick={() => act(`${base}/refresh`)}>Refresh data now</button>}
        </section>
        <section class="card">
          <h3>Labels</h3>
          {labels && <Tree nodes={labels} />}
          <h3>Settings</h3>
          <p class="muted">
            Consensus: {project.consensus.enabled ? `${project.consensus.min}–${project.consensus.max} labelers` : "off"} ·
            ML assistance: {project.ml_assist.enabled ? "on" : "off"}
          </p>
          {locked.length > 0 && <p class="muted">Fixed since the start: {locked.join(", ")}.</p>}
          {project.instructions.html && (
            <details><summary>Instructions</summary>
              <div class="instructions" dangerouslySetInnerHTML={{ __html: project.instructions.html }} />
            </details>
          )}
        </section>
      </div>
      {owner && labels && (
        <div class="grid2" style="margin-top:16px">
          <ProjectSettings project={project} onSaved={reload} />
          <LabelsCard project={project} tree={labels} onSaved={reload} />
        </div>
      )}
      {(owner || project.role === "reviewer") && <Members project={project} />}
    </Page>
  );
}
