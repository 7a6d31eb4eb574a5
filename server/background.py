"""Background loops each server process runs: probing items' headers, scheduled refreshes,
exports, and the ML worker when this process runs ML assistance.

Every process runs every loop; Postgres decides who does what. The prober claims items
with an advisory lock each (their rows stay free for leases and submits while their files
are read, see data/probing.py); a project's refresh runs under its ingest advisory lock and
re-checks that it is still due, so exactly one process refreshes a project; an export is
claimed by one process with `SKIP LOCKED` and taken over if it stops beating; a model
version is claimed the same way (see ml/training.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import asyncpg

from collab.tasks import stop_task
from server.data.probing import probe_batch
from server.data.refresh import refresh_due
from server.exports import runner as exports

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger(__name__)

# An extra loop: (name, one step returning how much it did, seconds to wait when idle).
Job = tuple[str, Callable[[], Awaitable[int]], float]


class BackgroundJobs:
    """Owns the background loops of one process; `stop` cancels and awaits them."""

    def __init__(self, services: Services,
                 extra: list[Job] | None = None) -> None:
        self.services = services
        self.extra = extra or []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        s = self.services.settings
        self._tasks = [
            asyncio.create_task(self._loop("probe", probe_batch, s.probe_poll_s)),
            asyncio.create_task(self._loop("refresh", refresh_due, s.refresh_poll_s)),
            asyncio.create_task(self._loop("export", exports.run_next, s.export_poll_s)),
            *(asyncio.create_task(self._loop(name, _ignoring_services(step), idle))
              for name, step, idle in self.extra),
        ]

    async def _loop(self, name: str, step: Callable[[Services], Awaitable[int]],
                    idle_s: float) -> None:
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
                await asyncio.sleep(idle_s)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()  # all at once, then wait for each
        for task in self._tasks:
            await stop_task(task)
        self._tasks = []


def _ignoring_services(step: Callable[[], Awaitable[int]]) -> Callable[[Services], Awaitable[int]]:
    """Adapt a step that carries its own state to the loop's (services) signature."""
    async def run(_: Services) -> int:
        return await step()

    return run
