"""Running jobs in worker processes: claim one, run its kind's handler, report progress on
the row and on the project's live events, and record how it ended.

Who runs a job is decided by a session advisory lock on the job, held by the worker's
connection for as long as the job runs: Postgres lets it go the moment that worker dies
(its connections close), so a `running` job whose lock is free is one whose worker is
gone, and the next worker takes it up again. A job's changes commit in one transaction
with a `job_commits` row, so a job whose worker died between that commit and recording
the outcome is finished, never applied twice; one taken up too often fails for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from server.errors import ApiError
from server.jobs import store
from server.settings import Settings

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger(__name__)

# Advisory-lock namespace for "a worker is running this job".
JOB_LOCK_NS = 0x10B5
MAX_ATTEMPTS = 5        # a job whose worker died this many times fails for good
BEAT_S = 1.0            # how often a running job's row is touched and its cancel looked for
PROGRESS_S = 0.5        # progress is saved and announced at most this often
# A project's jobs run one at a time, oldest first (they all change its items), so a slot
# never waits on another job's lock while other projects' jobs wait for a slot.
_CANDIDATES = """
SELECT id FROM jobs j
WHERE status IN ('queued', 'running')
  AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.project_id = j.project_id
                  AND o.status IN ('queued', 'running') AND o.id < j.id)
ORDER BY id LIMIT 32
"""
_CLAIM = f"""
UPDATE jobs SET status = 'running', attempts = attempts + 1, heartbeat_at = now(),
                started_at = coalesce(started_at, now())
WHERE id = $1 AND status IN ('queued', 'running')
RETURNING {store.COLUMNS}, EXISTS (SELECT 1 FROM job_commits c WHERE c.job_id = jobs.id) AS committed
"""
_BEAT = "UPDATE jobs SET heartbeat_at = now() WHERE id = $1 RETURNING cancel_requested"
_PROGRESS = "UPDATE jobs SET done = $2, total = $3 WHERE id = $1 AND status = 'running'"
_FINISH = f"""
UPDATE jobs SET status = $2, result = $3, error = $4, finished_at = now(),
                done = CASE WHEN $2 = 'done' THEN greatest(done, coalesce(total, done)) ELSE done END
WHERE id = $1 AND status = 'running'
RETURNING {store.COLUMNS}
"""
_MARK = "INSERT INTO job_commits (job_id) VALUES ($1)"

class JobCancelled(Exception):
    """The job was cancelled while it ran."""


@dataclass
class JobRun:
    """One run of a job, as its handler sees it."""

    services: Services
    row: asyncpg.Record
    last_report: float = field(default=0.0, repr=False)

    @property
    def id(self) -> int:
        return int(self.row["id"])

    @property
    def project_id(self) -> int:
        return int(self.row["project_id"])

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.row["params"]
        return params

    async def mark(self, conn: asyncpg.Connection) -> None:
        """Record, inside the transaction that makes the job's changes, that they are made."""
        await conn.execute(_MARK, self.id)

    async def progress(self, done: int, total: int | None, *, force: bool = False) -> None:
        """Save and announce progress, at most every PROGRESS_S."""
        now = time.monotonic()
        if not force and now - self.last_report < PROGRESS_S:
            return
        self.last_report = now
        await self.services.db.execute(_PROGRESS, self.id, done, total)
        self.announce("running", done=done, total=total)

    def announce(self, status: str, **data: Any) -> None:
        self.services.work.events.emit(self.project_id, "job", job_id=self.id,
                                       job_kind=self.row["kind"], status=status, **data)


Handler = Callable[[JobRun], Coroutine[Any, Any, dict[str, Any]]]


def files_dir(settings: Settings, job_id: int) -> Path:
    """Where a job keeps the file it works from (an uploaded import) until it ends."""
    return settings.data_dir / "jobs" / str(job_id)


class JobRunner:
    """Claims and runs jobs with the handlers of their kinds."""

    def __init__(self, services: Services, handlers: dict[str, Handler]) -> None:
        self.services = services
        self.handlers = handlers

    async def run_next(self, services: Services | None = None) -> int:
        """Claim and run one job; 1 if there was one, 0 otherwise."""
        db = self.services.db
        async with db.bulk() as conn:
            for candidate in await conn.fetch(_CANDIDATES):
                job_id = candidate["id"]
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", JOB_LOCK_NS, job_id):
                    continue  # its worker is alive and at it
                try:
                    row = await conn.fetchrow(_CLAIM, job_id)
                    if row is not None:
                        await self._run(row)
                        return 1
                finally:
                    with contextlib.suppress(asyncpg.PostgresError, OSError):
                        await conn.execute("SELECT pg_advisory_unlock($1, $2)", JOB_LOCK_NS, job_id)
        return 0

    async def _run(self, row: asyncpg.Record) -> None:
        run = JobRun(self.services, row)
        if row["committed"]:
            # Its changes committed, but the worker died before it said so.
            await self._finish(run, "done", {"recovered": True}, None)
            return
        if row["attempts"] > MAX_ATTEMPTS:
            await self._finish(run, "failed", None, {
                "code": "job_abandoned",
                "message": f"the job's worker stopped {MAX_ATTEMPTS} times while running it"})
            return
        handler = self.handlers.get(row["kind"])
        if handler is None:  # a newer version queued it; leave it for a worker that knows it
            log.warning("job %s: no handler for %r here", run.id, row["kind"])
            return
        run.announce("running", done=row["done"], total=row["total"], attempt=row["attempts"])
        task = asyncio.create_task(handler(run))
        try:
            await self._watch(run, task)
            result = task.result()
        except JobCancelled:
            await self._finish(run, "cancelled", None, None)
        except ApiError as exc:
            # What the request would have answered, had it waited: its body and status.
            await self._finish(run, "failed", None, {**exc.body()["error"], "http_status": exc.status})
        except (asyncpg.PostgresConnectionError, ConnectionError, TimeoutError) as exc:
            # The database went away mid-run: nothing committed; the job stays running and
            # is taken up again once its lock is free.
            log.warning("job %s interrupted: %s", run.id, exc)
        except Exception as exc:  # noqa: BLE001 - a bug fails the job, not the worker
            log.exception("job %s (%s) failed", run.id, row["kind"])
            await self._finish(run, "failed", None, {
                "code": "job_failed", "message": f"{type(exc).__name__}: {exc}"[:1000]})
        else:
            await self._finish(run, "done", result, None)
        finally:
            if not task.done():  # this worker is stopping: the job is left for another
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _watch(self, run: JobRun, task: asyncio.Task[dict[str, Any]]) -> None:
        """Wait for the handler, touching the row every BEAT_S and stopping it when asked."""
        while True:
            await asyncio.wait({task}, timeout=BEAT_S)
            if task.done():
                if task.cancelled():
                    raise JobCancelled
                return
            with contextlib.suppress(asyncpg.PostgresError, OSError, TimeoutError):
                if await self.services.db.fetchval(_BEAT, run.id):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                    raise JobCancelled

    async def _finish(self, run: JobRun, status: str, result: dict[str, Any] | None,
                      error: dict[str, Any] | None) -> None:
        row = await self.services.db.fetchrow(_FINISH, run.id, status, result, error)
        shutil.rmtree(files_dir(self.services.settings, run.id), ignore_errors=True)
        if row is None:
            return
        log.info("job %s (%s, project %s): %s", run.id, row["kind"], run.project_id, status)
        run.announce(status, done=row["done"], total=row["total"], result=result, error=error)
