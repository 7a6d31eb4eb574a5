import { get, type Project } from "../api";
import { ErrorBox, Page, Spinner, useLoad } from "../ui";

const STATUS_TEXT: Record<string, string> = {
  initializing: "Setting up", running: "Running", paused: "Paused", completed: "Completed",
};

export function Projects() {
  const [data, error] = useLoad(() => get<{ projects: Project[] }>("/api/v1/projects?limit=500"), []);
  return (
    <Page title="Projects">
      <p><a class="button primary" href="#/new" data-testid="new-project">New project</a></p>
      <ErrorBox error={error} />
      {!data && !error && <Spinner />}
      {data && data.projects.length === 0 && <p class="muted">No projects yet. Create one to start labeling.</p>}
      {data && data.projects.length > 0 && (
        <table class="list">
          <thead><tr><th>Name</th><th>Task</th><th>Status</th><th>Your role</th><th /></tr></thead>
          <tbody>
            {data.projects.map((p) => (
              <tr key={p.id}>
                <td><a href={`#/p/${p.id}`}>{p.name}</a></td>
                <td>{p.task_type}</td>
                <td><span class={`badge ${p.status}`}>{STATUS_TEXT[p.status] ?? p.status}</span></td>
                <td>{p.role}</td>
                <td>{p.status === "running" && <a href={`#/p/${p.id}/label`}>Start labeling →</a>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
