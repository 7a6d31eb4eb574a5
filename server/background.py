"""Background loops each worker process runs (`colabel worker`, server/worker.py): probing
items' headers, scheduled refreshes, jobs (bindings, refreshes, imports), exports, and the
ML worker when this process runs ML assistance.

Every worker runs every loop; Postgres decides who does what. The prober claims items
with an advisory lock each (their rows stay free for leases and submits while their files
are read, see data/probing.py); a project's refresh runs under its ingest advisory lock and
re-checks that it is still due, so exactly one process refreshes a project; an export is
claimed by one process with `SKIP LOCKED` and taken over if it stops beating; a model
version is claimed the same way (see ml/training.py); a job is run by the worker holding
its advisory lock (jobs/runner.py). A commit that queues a job or an export notifies the
workers, so they start it at once instead of at their next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import asyncpg

from collab.tasks import stop_task
from server.data.probing import probe_batch
from server.data.refresh import refresh_due
from server.exports import runner as exports
from server.jobs import store as job_store
from server.jobs.kinds import HANDLERS
from server.jobs.runner import JobRunner

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger(__name__)

# An extra loop: (name, one step returning how much it did, seconds to wait when idle).
Job = tuple[str, Callable[[], Awaitable[int]], float]
# Jobs one worker process runs at once (a long import does not hold up a refresh).
JOB_SLOTS = 2
# Told on commit when an export is queued (exports/jobs.py).
EXPORTS_CHANNEL = "colabel_exports"


class BackgroundJobs:
    """Owns the background loops of one process; `stop` cancels and awaits them."""

    def __init__(self, services: Services,
                 extra: list[Job] | None = None) -> None:
        self.services = services
        self.extra = extra or []
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = {job_store.CHANNEL: asyncio.Event(), EXPORTS_CHANNEL: asyncio.Event()}
        self._listener: asyncpg.Connection | None = None

    async def start(self) -> None:
        s = self.services.settings
        jobs = JobRunner(self.services, HANDLERS)
        await self._listen()
        self._tasks = [
            asyncio.create_task(self._loop("probe", probe_batch, s.probe_poll_s)),
            asyncio.create_task(self._loop("refresh", refresh_due, s.refresh_poll_s)),
            asyncio.create_task(self._loop("export", exports.run_next, s.export_poll_s,
                                           self._wake[EXPORTS_CHANNEL])),
            *(asyncio.create_task(self._loop("job", jobs.run_next, s.job_poll_s,
                                             self._wake[job_store.CHANNEL]))
              for _ in range(JOB_SLOTS)),
            *(asyncio.create_task(self._loop(name, _ignoring_services(step), idle))
              for name, step, idle in self.extra),
        ]

    async def _listen(self) -> None:
        """Wake the job and export loops when a commit says there is work (polling stays the
        fallback: a notification sent while this connection was down is not replayed)."""
        try:
            conn = await asyncpg.connect(self.services.settings.database_url)
            for channel, event in self._wake.items():
                await conn.add_listener(channel, lambda *_args, e=event: e.set())
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("not listening for new jobs (polling instead): %s", exc)
            return
        self._listener = conn

    async def _loop(self, name: str, step: Callable[[Services], Awaitable[int]],
                    idle_s: float, wake: asyncio.Event | None = None) -> None:
        while True:
            try:
                done = await step(self.services)
            except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
                # Postgres restarting or a network blip: try again on the next tick.
                log.warning("background %s failed: %s", name, exc)
                done = 0
            except Exception:  # noqa: BLE001 - a bug must not kill the loop for good
                log.exception("background %s crashed", name)
                done = 0
            if not done or name == "refresh":
                await _idle(idle_s, wake)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()  # all at once, then wait for each
        for task in self._tasks:
            await stop_task(task)
        self._tasks = []
        if self._listener is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await self._listener.close(timeout=2)
            self._listener = None


async def _idle(seconds: float, wake: asyncio.Event | None) -> None:
    """Sleep `seconds`, or less when `wake` is set meanwhile."""
    if wake is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), seconds)
    wake.clear()


def _ignoring_services(step: Callable[[], Awaitable[int]]) -> Callable[[Services], Awaitable[int]]:
    """Adapt a step that carries its own state to the loop's (services) signature."""
    async def run(_: Services) -> int:
        return await step()

    return run
