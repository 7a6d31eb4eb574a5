import { get, type Project } from "../api";
import { ErrorBox, Page, Spinner, useLoad } from "../ui";
import { ROLE_TEXT, STATUS_TEXT, taskShort } from "./projectWords";

function ProjectTable({ projects, testid }: { projects: Project[]; testid: string }) {
  return (
    <table class="list" data-testid={testid}>
      <thead><tr><th>Name</th><th>Task</th><th>Status</th><th>Your role</th><th /></tr></thead>
      <tbody>
        {projects.map((p) => (
          <tr key={p.id}>
            <td><a href={`#/p/${p.id}`}>{p.name}</a></td>
            <td>{taskShort(p.task_type)}</td>
            <td><span class={`badge ${p.status}`}>{STATUS_TEXT[p.status] ?? p.status}</span></td>
            <td>{ROLE_TEXT[p.role] ?? p.role}</td>
            <td>{p.status === "running" && testid === "projects" &&
              <a href={`#/p/${p.id}/label`}>Start labeling →</a>}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function Projects() {
  const [data, error] = useLoad(() => get<{ projects: Project[] }>("/api/v1/projects?limit=500"), []);
  // Only owners (and admins) get any: archived projects are out of everyone else's sight.
  const [archived] = useLoad(
    () => get<{ projects: Project[] }>("/api/v1/projects?archived=true&limit=500"), []);
  return (
    <Page title="Projects">
      <p><a class="button primary" href="#/new" data-testid="new-project">New project</a></p>
      <ErrorBox error={error} />
      {!data && !error && <Spinner />}
      {data && data.projects.length === 0 && (
        <p class="muted">{archived?.projects.length ? "No projects in use; the archived ones are below."
          : "No projects yet. Create one to start labeling."}</p>
      )}
      {data && data.projects.length > 0 && <ProjectTable projects={data.projects} testid="projects" />}
      {archived && archived.projects.length > 0 && (
        <section style="margin-top:24px">
          <h2>Archived</h2>
          <p class="muted">Read-only and hidden from labelers. Open one to unarchive it.</p>
          <ProjectTable projects={archived.projects} testid="archived-projects" />
        </section>
      )}
    </Page>
  );
}
