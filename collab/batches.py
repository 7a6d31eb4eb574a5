"""Work queued from synchronous code and sent in batches by one task: whatever is queued
while a batch is on its way goes out in the next one, in order. Under load many callers
share one round trip; when idle a single item goes out within the loop turn."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

from .tasks import stop_task

T = TypeVar("T")
log = logging.getLogger(__name__)


class Batches(Generic[T]):
    def __init__(self, send: Callable[[list[T]], Awaitable[None]], what: str) -> None:
        """`send` gets each batch; if it fails, the batch is dropped and logged (`what` names
        its items): only what may be lost belongs in it (events, fan-out messages that the
        other nodes make up for)."""
        self._send = send
        self._what = what
        self._queued: list[T] = []
        self._sender: asyncio.Task[None] | None = None

    def put(self, items: Iterable[T]) -> None:
        self._queued.extend(items)
        if self._queued and (self._sender is None or self._sender.done()):
            self._sender = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                await self._send(batch)
            except Exception as exc:  # noqa: BLE001 - see __init__: what is queued may be lost
                log.warning("could not send %d %s: %s", len(batch), self._what, exc)

    async def drain(self) -> None:
        """Wait until everything queued so far has been sent (or given up on)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def stop(self) -> None:
        """Stop sending; what is still queued is dropped."""
        await stop_task(self._sender)
