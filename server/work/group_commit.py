"""Group commit: requests of concurrent callers go to Postgres together, one transaction and
one commit for many, and each caller is answered once the commit that holds its request is
done.

While a batch is being written, the callers that come meanwhile queue up and go together in
the next one; up to `writers` batches are in flight at once, so Postgres works on one while
this process prepares the next (with a single writer the two would take turns and neither
would be busy). The callers of one batch get their own results, or the batch's error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")
log = logging.getLogger(__name__)

T = TypeVar("T")
# A batch writer: one result (or error) per request, in order.
Commit = Callable[[list[In]], Awaitable[list[Out | BaseException]]]


async def retrying(attempt: Callable[[], Awaitable[T]], errors: tuple[type[BaseException], ...],
                   times: int = 3) -> T:
    """`attempt()`, again (up to `times` in all) while it fails with one of `errors`: a
    transaction Postgres rolled back as a deadlock victim or a serialization failure
    changed nothing and may simply run again."""
    for n in range(times - 1):
        try:
            return await attempt()
        except errors as exc:
            log.info("a batch is tried again after %s (attempt %d)", type(exc).__name__, n + 1)
    return await attempt()


class GroupCommit(Generic[In, Out]):
    def __init__(self, commit: Commit[In, Out], writers: int = 2) -> None:
        self._commit = commit
        self._writers = writers
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, request: In) -> Out:
        """Commit `request` with whatever else is waiting; its result once committed."""
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if len(self._running) < self._writers:
            task = asyncio.create_task(self._write())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return await future

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await self._commit([request for request, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every caller in the batch gets the error
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue  # the caller went away (cancelled)
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
