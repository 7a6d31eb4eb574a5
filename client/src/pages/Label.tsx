// The labeling view: asks the dispatcher for work and shows the classification grid or the
// drawing tools; moves on as soon as a page is submitted or skipped, and says so when the
// project stops handing out work (paused by its owner, or complete).
import { useRef, useState } from "preact/hooks";
import { ApiError, post, type Lease } from "../api";
import { ErrorBox, Page, Spinner, errorText, useProject } from "../ui";
import { ClassifyView } from "./labeling/Classify";
import { DrawView } from "./labeling/Draw";
import { useWork } from "./labeling/work";
import { RevisitView, SubmittedList, loadSubmitted, type Submitted } from "./labeling/GoBack";

const GRID_SIZES = [1, 4, 6, 9];
// How long the page on screen stays this labeler's while they look at a submitted item: back
// within it, they find the same page.
const GOING_BACK_GRACE_S = 600;

export function Label({ pid }: { pid: number }) {
  const [project, tree, error] = useProject(pid);
  const classify = project?.task_type === "multiclass" || project?.task_type === "multilabel";
  const [grid, setGrid] = useState(() => Number(localStorage.getItem("colabel.grid") ?? 4));
  const count = classify ? grid : 1;
  // Going back: the list of submitted items, and the one open again.
  const [listing, setListing] = useState(false);
  const [back, setBack] = useState<{ entries: Submitted[]; at: number } | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [backError, setBackError] = useState<unknown>(null);
  const grace = useRef(0);
  const open = (entries: Submitted[], at: number) => {
    grace.current = GOING_BACK_GRACE_S;
    setListing(false);
    setSaved(null);
    setBack({ entries, at });
  };
  const previous = () => loadSubmitted(pid).then((entries) => {
    setBackError(entries.length ? null : new Error("you have not submitted anything since you signed in"));
    if (entries.length) open(entries, 0);
  }, setBackError);
  if (!project || !tree) return <Page title="Label"><ErrorBox error={error} />{!error && <Spinner />}</Page>;
  return (
    <Page title={`Label · ${project.name}`} project={project} wide>
      <div class="row" style="margin-bottom:8px">
        {classify && !back && (
          <>
            <span class="muted">Images per page</span>
            {GRID_SIZES.map((n) => (
              <button class={n === grid ? "active" : ""} data-testid={`grid-${n}`} onClick={() => {
                localStorage.setItem("colabel.grid", String(n));
                setGrid(n);
              }}>{n}</button>
            ))}
          </>
        )}
        <span class="spacer" />
        {!back && <button onClick={previous} data-testid="previous" title="Open the item you submitted last">◀ Previous</button>}
        <button class={listing ? "active" : ""} onClick={() => setListing(!listing)} data-testid="history">
          Submitted…</button>
      </div>
      {listing && <SubmittedList pid={pid} onOpen={open} onClose={() => setListing(false)} />}
      <ErrorBox error={backError} />
      {saved && <div class="notice" role="status" data-testid="correction-saved">Your correction of {saved} is saved.</div>}
      {back ? (
        <RevisitView project={project} tree={tree} entries={back.entries} at={back.at}
          setAt={(at) => setBack({ ...back, at })} onBack={() => setBack(null)}
          onCorrected={(entry) => {
            setSaved(entry.item.key);
            setBack(null);
          }} />
      ) : <Work pid={pid} count={count} leaveGrace={grace} render={(leases, done) => classify
        ? <ClassifyView key={leases.map((l) => l.lease_id).join()} project={project} tree={tree} leases={leases}
          onDone={done} />
        : <DrawView project={project} tree={tree} room={leases[0].document} item={leases[0].item} actions={[
          { text: "Submit", testid: "submit", primary: true, checks: true,
            run: (doc, duration_ms) => post(`/api/v1/leases/${leases[0].lease_id}/submit`,
              { state_vector: doc.stateVector(), duration_ms }).then(done) },
          { text: "Skip", testid: "skip", run: () => post(`/api/v1/leases/${leases[0].lease_id}/skip`).then(done) },
        ]} />} />}
    </Page>
  );
}

function Work({ pid, count, leaveGrace, render }: {
  pid: number; count: number; leaveGrace: { current: number };
  render: (leases: Lease[], done: () => void) => preact.ComponentChildren;
}) {
  const work = useWork(pid, count, leaveGrace);
  // Back on the page: the next departure (another grid size, leaving) gives leases back at once.
  leaveGrace.current = 0;
  if (work.state === "loading") return <Spinner />;
  if (work.state === "empty") {
    return (
      <div class="notice" data-testid="no-work">
        Nothing is waiting for you right now: the items left are being labeled by others, or you have labeled
        them already.
        <p><button onClick={work.retry}>Look again</button></p>
      </div>
    );
  }
  if (work.state === "stopped") return <Stopped error={work.error} retry={work.retry} />;
  if (work.state === "error") {
    return <div><ErrorBox error={work.error} /><button onClick={work.retry}>Try again</button></div>;
  }
  return (
    <>
      {isPaused(work.aheadError) && (
        // Paused while work is on screen: that work can still be finished and submitted.
        <div class="notice warn" data-testid="project-paused" role="alert">
          This project is paused by its owner; your work is saved. You can finish what is on screen; new items
          come when it runs again.{" "}
          <button onClick={work.retryAhead} data-testid="try-again">Try again</button>
        </div>
      )}
      {render(work.current, work.advance)}
    </>
  );
}

function isPaused(error: unknown): boolean {
  return error instanceof ApiError && error.code === "project_not_running"
    && (error.details as { status?: string } | null)?.status === "paused";
}

/** The project hands out no work: paused by its owner (work done so far is kept, and labeling
 * goes on when it runs again), complete, or not started. */
export function Stopped({ error, retry }: { error: unknown; retry: () => void }) {
  const status = error instanceof ApiError ? (error.details as { status?: string } | null)?.status : undefined;
  if (status === "completed") {
    return (
      <div class="notice" data-testid="project-complete" role="status">
        Every item of this project is labeled: the project is complete. Thank you!
      </div>
    );
  }
  return (
    <div class="notice warn" data-testid="project-paused" role="alert">
      {status === "paused"
        ? "This project is paused by its owner; your work is saved. Labeling can go on as soon as it runs again."
        : `This project is not running (${status ?? errorText(error)}); your work is saved.`}
      <p><button onClick={retry} data-testid="try-again">Try again</button></p>
    </div>
  );
}
