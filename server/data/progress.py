"""Progress of a long import, and the reading thread that feeds one.

An import reads its file on a thread of its own and hands the event loop batches through a
bounded queue, so a large file never sits in memory whole and the loop stays free while
the thread parses.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

# (records done, records in all or None while unknown)
Progress = Callable[[int, int | None], Awaitable[None]]

T = TypeVar("T")
_END = object()


class Reporter:
    """Calls a Progress at most a few times a second, however often it is told."""

    def __init__(self, progress: Progress | None, every_s: float = 0.25) -> None:
        self._progress = progress
        self._every_s = every_s
        self._last = 0.0

    async def __call__(self, done: int, total: int | None, *, force: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self._every_s:
            self._last = now
            await self._progress(done, total)


async def batches_in_thread(produce: Callable[[], Iterator[T]], size: int,
                            depth: int = 4) -> AsyncIterator[list[T]]:
    """Run `produce` on a thread and yield what it yields in lists of `size`; at most `depth`
    lists wait at a time, so a slow consumer holds the reader back rather than memory
    growing. What `produce` raises is raised here; leaving early stops the thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    slots = threading.Semaphore(depth)
    stop = threading.Event()

    def hand_over(item: Any) -> bool:
        while not slots.acquire(timeout=0.1):
            if stop.is_set():
                return False
        loop.call_soon_threadsafe(queue.put_nowait, item)
        return True

    def run() -> None:
        try:
            batch: list[T] = []
            for item in produce():
                batch.append(item)
                if len(batch) >= size:
                    if not hand_over(batch):
                        return
                    batch = []
            if batch and not hand_over(batch):
                return
            loop.call_soon_threadsafe(queue.put_nowait, _END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    worker = loop.run_in_executor(None, run)
    try:
        while True:
            got = await queue.get()
            if got is _END:
                break
            if isinstance(got, BaseException):
                raise got
            slots.release()
            yield got
    finally:
        stop.set()
        await asyncio.shield(worker)

