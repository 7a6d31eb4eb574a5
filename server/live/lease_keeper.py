"""Leases kept alive by open documents: one loop per process for every open document.

A labeler whose document is open is working on its item, so their lease on it must not
expire under them. Each open document of a labeler's own is held here while its socket
is open; the lease is extended when the first socket on it opens, then every period
(a third of the lease TTL) while any is open. One loop for all of them, rather than a
task per socket, keeps an open document cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator

from server.database import Database, DatabaseUnavailable
from server.work.leases import keep_alive_once
from server.work.queue import Dispatcher

log = logging.getLogger(__name__)

# (project, item, user)
Key = tuple[int, int, int]


class LeaseKeeper:
    def __init__(self, dispatcher: Dispatcher, db: Database, period_s: float) -> None:
        self.dispatcher = dispatcher
        self.db = db
        self.period_s = period_s
        self._open: Counter[Key] = Counter()
        self._loop: asyncio.Task[None] | None = None
        # Extensions started by an opening socket, kept until done.
        self._first: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def holding(self, project_id: int, item_id: int, user_id: int) -> Iterator[None]:
        """Keep the user's lease on the item alive while this context is open."""
        key = (project_id, item_id, user_id)
        self._open[key] += 1
        if self._open[key] == 1:
            task = asyncio.create_task(self._extend(key))
            self._first.add(task)
            task.add_done_callback(self._first.discard)
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._run())
        try:
            yield
        finally:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]

    async def _run(self) -> None:
        while self._open:
            await asyncio.sleep(self.period_s)
            for key in list(self._open):
                await self._extend(key)

    async def _extend(self, key: Key) -> None:
        project_id, item_id, user_id = key
        try:
            await keep_alive_once(self.dispatcher, self.db, project_id, item_id, user_id)
        except DatabaseUnavailable as exc:  # the lease outlasts a few missed periods
            log.warning("lease of user %s on item %s not extended: %s", user_id, item_id, exc)

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self._first) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
