// The end of a project's life, for its owners: archive (undoable) and delete (not), each
// confirmed with what it does, including that a project's name stays taken for ever.
import { useState } from "preact/hooks";
import { del, post, type Project } from "../api";
import { ErrorBox, navigate } from "../ui";
import "./manage.css";

type Asking = null | "archive" | "delete";

export function ProjectLifecycle({ project, onChanged }: { project: Project; onChanged: () => void }) {
  const archived = !!(project as any).archived;
  const [asking, setAsking] = useState<Asking>(null);
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const base = `/api/v1/projects/${project.id}`;
  const run = async (fn: () => Promise<unknown>, then: () => void) => {
    setBusy(true);
    try {
      await fn();
      setError(null);
      setAsking(null);
      then();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const close = () => { setAsking(null); setTyped(""); setError(null); };
  return (
    <section class="card danger-zone" data-testid="lifecycle">
      <h3 style="margin-top:0">Archive or delete</h3>
      {archived ? (
        <>
          <p>This project is archived: labeling is paused, labelers no longer see it, and nothing in it can
            change. Unarchive it to work on it again (it stays paused until you resume it).</p>
          <button disabled={busy} onClick={() => run(() => post(`${base}/unarchive`), onChanged)}>Unarchive</button>
        </>
      ) : (
        <>
          <p>Archive a project you are done with: it leaves everyday lists and becomes read-only, and you can
            bring it back at any time.</p>
          <button disabled={busy} onClick={() => setAsking("archive")}>Archive project…</button>
        </>
      )}
      <p>Deleting removes the project for everyone and cannot be undone.</p>
      <button class="danger" disabled={busy} onClick={() => setAsking("delete")}>Delete project…</button>
      {!asking && <ErrorBox error={error} />}
      {asking && (
        <div class="modal" onClick={close}>
          <div class="card" role="dialog" aria-modal="true" aria-labelledby="lifecycle-title"
            onClick={(e) => e.stopPropagation()} data-testid={`confirm-${asking}`}>
            {asking === "archive" ? (
              <>
                <h2 id="lifecycle-title" style="margin-top:0">Archive “{project.name}”?</h2>
                <ul>
                  <li>Labeling pauses and labelers no longer see the project in their list.</li>
                  <li>Its items, labels and results stay; reviewers and owners can still open and export them.</li>
                  <li>Nothing can change while it is archived. Owners find it under “Archived” on the projects
                    page and can unarchive it there or here.</li>
                </ul>
                <ErrorBox error={error} />
                <div class="row">
                  <button class="primary" disabled={busy}
                    onClick={() => run(() => post(`${base}/archive`), onChanged)}>Archive</button>
                  <button onClick={close}>Cancel</button>
                </div>
              </>
            ) : (
              <form onSubmit={(e) => {
                e.preventDefault();
                run(() => del(`${base}`), () => navigate("#/"));
              }}>
                <h2 id="lifecycle-title" style="margin-top:0">Delete “{project.name}” for good?</h2>
                <ul>
                  <li>The project, its items and everyone's labels disappear for all its members. This cannot be
                    undone; export what you want to keep first.</li>
                  <li data-testid="name-rule"><strong>Its name stays taken for ever.</strong> No project can be
                    called “{project.name}” again, not even a new one after this deletion. If you may want the
                    name back, archive the project instead.</li>
                </ul>
                <label>Type the project's name to confirm
                  <input name="confirm-name" value={typed} autocomplete="off"
                    onInput={(e) => setTyped(e.currentTarget.value)} /></label>
                <ErrorBox error={error} />
                <div class="row">
                  <button type="submit" class="danger" disabled={busy || typed.trim() !== project.name}>
                    Delete for good</button>
                  <button type="button" onClick={close}>Cancel</button>
                </div>
              </form>
            )}
          </div>
        </div>
      )}
    </section>
  );
}
