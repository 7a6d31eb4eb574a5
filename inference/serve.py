"""One project's model version served by Ray Serve: batched predictions streamed back, and embeddings.

`Predictor` is a plain class. Inside a Serve replica its per-image entry points are batched by
`serve.batch`; outside one (the in-process benchmark, or a machine without Ray) by `LocalBatcher`,
which follows the same size, wait and concurrency rules. `application` wraps it in a deployment.

Batches are cut per image, not per request: a stream of 500 images and three streams of 10 all
feed the same queue, so concurrent callers share forward passes. Decoding runs on a small thread
pool, the network on one dedicated thread, so the next batch decodes while the current one runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import torch

from inference import images as imaging
from inference.apps import ServeOptions
from inference.predict import Model, Prediction

if TYPE_CHECKING:
    from ray.serve import Application

__all__ = ["LocalBatcher", "Predictor", "application"]

T = TypeVar("T")
R = TypeVar("R")


class LocalBatcher(Generic[T, R]):
    """Dynamic batching on the running event loop, with `serve.batch`'s rules, for use without Ray.

    Calls queue one item each; a batch starts when `max_batch_size` items wait or
    `batch_wait_timeout_s` has passed since the first of them, with at most
    `max_concurrent_batches` running at once.
    """

    def __init__(
        self,
        func: Callable[[list[T]], Awaitable[list[R]]],
        max_batch_size: int,
        batch_wait_timeout_s: float,
        max_concurrent_batches: int,
    ) -> None:
        self._func = func
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s
        self._max_concurrent = max_concurrent_batches
        self._items: collections.deque[tuple[T, asyncio.Future[R]]] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._worker: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R:
        if self._worker is None:
            self._arrived = asyncio.Event()
            self._slots = asyncio.Semaphore(self._max_concurrent)
            self._worker = asyncio.create_task(self._collect())
        assert self._arrived is not None
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append((item, future))
        self._arrived.set()
        return await future

    async def close(self) -> None:
        """Stop the collecting task and any running batch; waiting callers are cancelled."""
        tasks = [t for t in (self._worker, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, future in self._items:
            future.cancel()
        self._items.clear()
        self._worker = None

    async def _collect(self) -> None:
        assert self._arrived is not None and self._slots is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._items:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = loop.time() + self.batch_wait_timeout_s
            while len(self._items) < self.max_batch_size and (left := deadline - loop.time()) > 0:
                self._arrived.clear()
                # Waiting on an event (not on a queue) cannot lose an item when the timeout fires.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), left)
            batch = [self._items.popleft() for _ in range(min(len(self._items), self.max_batch_size))]
            await self._slots.acquire()
            task = asyncio.create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        assert self._slots is not None
        try:
            results = await self._func([item for item, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except Exception as exc:  # noqa: BLE001 - the batch's callers get the error, as under serve.batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._slots.release()


class Predictor:
    """One model version on one device: predictions and embeddings in dynamic batches."""

    def __init__(
        self,
        state: bytes,
        options: ServeOptions | None = None,
        device: str | None = None,
        local_batching: bool = False,
    ) -> None:
        options = options or ServeOptions()
        self.model = Model.load(state, device)
        cores = os.cpu_count() or 1
        if self.model.device.type == "cpu":
            torch.set_num_threads(options.cpu_threads or cores)
        self.max_batch_size = options.max_batch_size
        self._decoder = ThreadPoolExecutor(options.decode_threads or min(8, cores), "colabel-decode")
        # One thread owns the device: forward passes never overlap, decoding does.
        self._device = ThreadPoolExecutor(1, "colabel-device")
        self.forward_calls = 0
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._predict_one: Callable[[bytes], Awaitable[Prediction]]
        self._embed_one: Callable[[bytes], Awaitable[np.ndarray | None]]
        self._local: list[LocalBatcher[Any, Any]] = []
        if local_batching:
            predict_batcher = LocalBatcher(
                self._predict_batch, options.max_batch_size, options.batch_wait_timeout_s,
                options.max_concurrent_batches,
            )
            embed_batcher = LocalBatcher(
                self._embed_batch, options.max_batch_size, options.batch_wait_timeout_s,
                options.max_concurrent_batches,
            )
            self._local = [predict_batcher, embed_batcher]
            self._predict_one, self._embed_one = predict_batcher, embed_batcher
        else:
            from ray import serve

            batch = serve.batch(
                max_batch_size=options.max_batch_size,
                batch_wait_timeout_s=options.batch_wait_timeout_s,
                max_concurrent_batches=options.max_concurrent_batches,
            )
            self._predict_one = batch(self._predict_batch)
            self._embed_one = batch(self._embed_batch)

    async def stream(self, items: Sequence[tuple[int, bytes]]) -> AsyncIterator[list[tuple[int, Prediction]]]:
        """(item id, prediction) pairs in the order they finish, one list per finished batch.

        An image that cannot be decoded gets `{"error": message}` instead of a prediction.
        At most two batches' worth of one stream wait at a time, so concurrent streams interleave.
        """
        window = 2 * self.max_batch_size
        todo = iter(items)
        pending: dict[asyncio.Future[Prediction], int] = {}
        try:
            while True:
                for item_id, data in itertools.islice(todo, window - len(pending)):
                    pending[asyncio.ensure_future(self._predict_one(data))] = item_id
                if not pending:
                    return
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                yield [(pending.pop(future), future.result()) for future in done]
        finally:
            # A caller that stops listening must not leave its images in the batch queue.
            for future in pending:
                future.cancel()

    async def embed(self, items: Sequence[tuple[int, bytes]]) -> dict[int, np.ndarray]:
        """Embeddings (d,) float32 by item id; images that cannot be decoded are left out."""
        vectors = await asyncio.gather(*(self._embed_one(data) for _, data in items))
        return {item_id: v for (item_id, _), v in zip(items, vectors, strict=True) if v is not None}

    def stats(self) -> dict[str, Any]:
        """Forward passes run so far and how many images each held."""
        return {
            "forward_calls": self.forward_calls,
            "images": sum(size * n for size, n in self.batch_sizes.items()),
            "batch_sizes": dict(self.batch_sizes),
            "device": str(self.model.device),
            "task": self.model.task,
        }

    async def close(self) -> None:
        """Stop local batching and the worker threads."""
        for batcher in self._local:
            await batcher.close()
        self._decoder.shutdown(wait=False, cancel_futures=True)
        self._device.shutdown(wait=False, cancel_futures=True)

    def __del__(self) -> None:
        # Serve calls __del__ when it stops a replica; the threads must not hold the process.
        with contextlib.suppress(AttributeError):
            self._decoder.shutdown(wait=False, cancel_futures=True)
            self._device.shutdown(wait=False, cancel_futures=True)

    async def _decode(
        self, images: list[bytes]
    ) -> tuple[torch.Tensor, list[tuple[int, int]], dict[int, str]]:
        """A uint8 batch of the decodable images, their sizes, and an error per undecodable index."""
        loop = asyncio.get_running_loop()
        size = self.model.input_size
        results = await asyncio.gather(
            *(loop.run_in_executor(self._decoder, imaging.pixels, data, size) for data in images),
            return_exceptions=True,
        )
        tensors: list[torch.Tensor] = []
        sizes: list[tuple[int, int]] = []
        errors: dict[int, str] = {}
        for index, result in enumerate(results):
            if isinstance(result, imaging.ImageError):
                errors[index] = str(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                tensors.append(result[0])
                sizes.append(result[1])
        batch = torch.stack(tensors) if tensors else torch.empty((0, 3, size, size), dtype=torch.uint8)
        return batch, sizes, errors

    def _count(self, n: int) -> None:
        self.forward_calls += 1
        self.batch_sizes[n] += 1

    async def _predict_batch(self, images: list[bytes]) -> list[Prediction]:
        batch, sizes, errors = await self._decode(images)
        predictions: list[Prediction] = []
        if len(batch):
            self._count(len(batch))
            loop = asyncio.get_running_loop()
            predictions = await loop.run_in_executor(self._device, self._predict_tensor, batch, sizes)
        found = iter(predictions)
        return [{"error": errors[i]} if i in errors else next(found) for i in range(len(images))]

    def _predict_tensor(self, batch: torch.Tensor, sizes: list[tuple[int, int]]) -> list[Prediction]:
        return self.model.postprocess(self.model.forward(batch), sizes)

    async def _embed_batch(self, images: list[bytes]) -> list[np.ndarray | None]:
        batch, _, errors = await self._decode(images)
        vectors: np.ndarray = np.zeros((0, 0), np.float32)
        if len(batch):
            self._count(len(batch))
            loop = asyncio.get_running_loop()
            vectors = await loop.run_in_executor(self._device, self.model.embed, batch)
        found = iter(vectors)
        return [None if i in errors else next(found) for i in range(len(images))]


def application(state: bytes, options: ServeOptions, gpus: bool) -> Application:
    """The Serve application of one model version; `gpus` when the cluster has any."""
    from ray import serve

    scaling: dict[str, Any] = {"num_replicas": 1}
    if options.idle_to_zero_s is not None:
        scaling = {"autoscaling_config": {
            "min_replicas": 0,
            "initial_replicas": 1,
            "max_replicas": options.max_replicas,
            "downscale_to_zero_delay_s": options.idle_to_zero_s,
            # Waking from zero (or adding a replica) at once: the request is already waiting.
            "upscale_delay_s": 0.0,
        }}
    elif options.max_replicas > 1:
        scaling = {"autoscaling_config": {"min_replicas": 1, "max_replicas": options.max_replicas}}
    deployment = serve.deployment(
        name="Predictor",
        **scaling,
        # Streams are long requests; enough of them, and all of two batches, may be in flight.
        max_ongoing_requests=max(32, options.max_batch_size * options.max_concurrent_batches),
        ray_actor_options={
            "num_cpus": options.replica_cpus,
            "num_gpus": options.replica_gpus if gpus else 0,
        },
    )(Predictor)
    return deployment.bind(state, options)
