"""The server's one door to Ray: deploy model versions, stream predictions, embed, train.

Ray starts lazily on first use: a private local instance, or the cluster `RAY_ADDRESS` names.
Ray's Python API blocks, so every control call runs in a worker thread and the event loop
stays free; request traffic goes through Serve's deployment handles, which are asyncio-native.
Any failure to reach Ray, Serve or a model's deployment raises `ModelServiceDown`, so the
caller can carry on without prelabels; `status()` keeps the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from inference.apps import ServeOptions, app_name, parse_app_name

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

    from inference.predict import Prediction
    from inference.train import Sample, TrainConfig, TrainResult

__all__ = ["ModelService", "ModelServiceDown", "ModelServiceError"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_NAMESPACE = "colabel"
# Seconds for one control call (status, handle lookup) before Ray counts as unreachable.
_CONTROL_TIMEOUT_S = 30.0
# How long a TCP probe of RAY_ADDRESS may take: ray.init itself retries a dead address for minutes.
_PROBE_TIMEOUT_S = 3.0
# Ray ends a driver process that loses its cluster's GCS for 60 s; a server must outlive Ray.
_GCS_RECONNECT_ENV = ("RAY_gcs_rpc_server_reconnect_timeout_s", str(365 * 24 * 3600))
# "package.module.SomeError: message" lines of a replica's traceback.
_RAISED = re.compile(r"^[\w.]*(?:Error|Exception)\b[^\n]*", re.MULTILINE)


class ModelServiceError(Exception):
    """The model service was reached but could not do what was asked."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class ModelServiceDown(ModelServiceError):
    """Ray, Serve or the model's deployment cannot be reached; go on without model output."""

    def __str__(self) -> str:
        return f"model service down: {self.reason}"


def _train_task(config: TrainConfig, samples: list[Sample]) -> TrainResult:
    """`inference.train.train` in a Ray worker."""
    import torch

    from inference.train import train

    if not torch.cuda.is_available():
        # Ray pins a 1-CPU task to one thread; a training run is worth the whole node's cores.
        torch.set_num_threads(os.cpu_count() or 1)
    return train(config, samples)


class ModelService:
    """Model versions served by Ray Serve, one application per (project, version)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        options: ServeOptions | None = None,
        num_cpus: int | None = None,
        object_store_mb: int = 256,
        connect_timeout_s: float = 60.0,
        train_cpus: float = 1.0,
        train_gpus: float = 0.5,
    ) -> None:
        # None: RAY_ADDRESS. Unset, empty or "local": a private local Ray.
        address = address if address is not None else os.environ.get("RAY_ADDRESS")
        self.address = None if not address or address == "local" else address
        self.options = options or ServeOptions()
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        self.connect_timeout_s = connect_timeout_s
        self.train_cpus = train_cpus
        self.train_gpus = train_gpus
        self.started_in_s: float | None = None
        self._started = False
        self._owns_ray = False
        self._connected = False
        self._reason = "not started"
        self._start_lock = asyncio.Lock()
        self._app_locks: dict[str, asyncio.Lock] = {}
        self._handles: dict[str, DeploymentHandle[Any]] = {}
        self._stopped: dict[str, str] = {}
        self._release: threading.Event | None = None
        # Set once a control call got no answer: later calls fail fast instead of piling up threads.
        self._lost: str | None = None

    async def start(self) -> None:
        """Connect to (or start) Ray and Serve; idempotent. Raises `ModelServiceDown`."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            began = time.perf_counter()
            try:
                await self._connect()
            except ModelServiceDown as exc:
                self._reason = exc.reason
                raise
            self.started_in_s = time.perf_counter() - began
            self._started = True
            log.info("Ray and Serve ready in %.1f s (%s)", self.started_in_s, self.address or "local")

    async def deploy(self, project_id: int, version: int, state: bytes) -> None:
        """Serve a model version (its `TrainResult.state`); a no-op when it is already served."""
        from ray.serve.exceptions import RayServeException

        from inference.serve import application  # torch: only once a model is deployed

        await self.start()
        name = app_name(project_id, version)
        async with self._app_locks.setdefault(name, asyncio.Lock()):
            # Several server processes share one cluster: whoever deploys first wins.
            if await self._control(self._is_serving, name):
                self._stopped.pop(name, None)
                return
            gpus = await self._control(self._gpus)
            app = application(state, self.options, gpus > 0)
            try:
                await self._control(self._run, app, name, timeout=None)
            except (RayServeException, RuntimeError) as exc:
                why = await self._control(self._deploy_error, name) or str(exc)
                # A model that cannot load would be retried for ever; take it down.
                await self._control(self._delete, name, timeout=None)
                raise ModelServiceError(f"{_what(name)} failed to deploy: {why}") from exc
            self._stopped.pop(name, None)
            self._handles.pop(name, None)
            log.info("serving %s", _what(name))

    async def predict(
        self, project_id: int, version: int, items: Sequence[tuple[int, bytes]]
    ) -> AsyncIterator[tuple[int, Prediction]]:
        """(item id, prediction) for each (item id, encoded image), in the order they finish.

        An image the model cannot decode comes back as `{"error": message}`.
        """
        if not items:
            return
        name = app_name(project_id, version)
        handle = await self._handle(name)
        response = handle.options(stream=True).stream.remote(list(items))
        stream = cast("DeploymentResponseGenerator[Any]", response)
        finished = False
        try:
            async for chunk in stream:
                for item_id, prediction in chunk:
                    yield item_id, prediction
            finished = True
        except Exception as exc:  # noqa: BLE001 - mapped to the service's own errors
            raise self._failure(name, exc) from exc
        finally:
            if not finished:
                # The caller stopped reading (or the stream broke): free the replica's queue.
                stream.cancel()  # type: ignore[no-untyped-call]

    async def embed(
        self, project_id: int, version: int, items: Sequence[tuple[int, bytes]]
    ) -> dict[int, np.ndarray]:
        """Embeddings (d,) float32 by item id; images that cannot be decoded are left out."""
        if not items:
            return {}
        name = app_name(project_id, version)
        handle = await self._handle(name)
        try:
            result: dict[int, np.ndarray] = await handle.embed.remote(list(items))
        except Exception as exc:  # noqa: BLE001 - mapped to the service's own errors
            raise self._failure(name, exc) from exc
        return result

    async def train(self, config: TrainConfig, samples: Sequence[Sample]) -> TrainResult:
        """Run `inference.train.train` as a Ray task (on a GPU when the cluster has one).

        Errors from training itself (e.g. `TrainingError`) are raised as they are.
        """
        import ray
        from ray.exceptions import RayTaskError

        await self.start()
        gpus = await self._control(self._gpus)
        task = ray.remote(_train_task).options(
            num_cpus=self.train_cpus, num_gpus=self.train_gpus if gpus > 0 else 0, max_retries=0
        )
        # Submitting copies the samples into the object store: not on the event loop.
        ref = await self._control(task.remote, config, list(samples), timeout=None)
        future: Future[TrainResult] = ref.future()
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            ray.cancel(ref, force=True)
            raise
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
                raise cause from None
            raise ModelServiceError(f"training failed: {exc}") from exc
        except ray.exceptions.RayError as exc:
            raise ModelServiceError(f"training failed: {type(exc).__name__}: {exc}") from exc

    async def stop(self, project_id: int, version: int | None = None) -> None:
        """Stop serving one version of a project's model, or all of them."""
        if not self._started and self.address is None:
            return  # a private Ray that never started serves nothing
        await self.start()
        if version is not None:
            names = [app_name(project_id, version)]
        else:
            names = [n for n in await self._control(self._app_names) if _project(n) == project_id]
        for name in names:
            async with self._app_locks.setdefault(name, asyncio.Lock()):
                await self._control(self._delete, name, timeout=None)
                self._handles.pop(name, None)
                self._stopped[name] = f"stopped at {time.strftime('%Y-%m-%d %H:%M:%S')}"
                log.info("stopped serving %s", _what(name))

    async def status(self) -> dict[str, Any]:
        """Whether the service is up and why not; the deployed model versions and their replicas."""
        out: dict[str, Any] = {
            "up": False,
            "reason": self._reason,
            "address": self.address or "local",
            "started_in_s": self.started_in_s,
            "deployments": {},
            "stopped": dict(self._stopped),
        }
        if not self._started:
            return out
        try:
            out["deployments"], out["gpus"] = await self._control(self._deployments)
        except ModelServiceDown as exc:
            out["reason"] = exc.reason
            return out
        out["up"], out["reason"] = True, None
        return out

    async def shutdown(self) -> None:
        """Disconnect from Ray; a local Ray this service started stops with its deployments."""
        async with self._start_lock:
            self._handles.clear()
            try:
                if self._lost is None and self._owns_ray:
                    await self._control(self._stop_local, timeout=self.connect_timeout_s)
                elif self._lost is None and self._connected:
                    import ray

                    # Deployments on a shared cluster stay: other server processes use them too.
                    await self._control(ray.shutdown, timeout=self.connect_timeout_s)
            finally:
                if self._release is not None:
                    self._release.set()
                    self._release = None
                self._started = self._owns_ray = self._connected = False
                self._reason = "shut down"

    # Connecting.

    async def _connect(self) -> None:
        import ray

        if self.address not in (None, "auto"):
            await _probe(self.address)
        # Ray is one connection per process: when other code already made it, use that one.
        if not ray.is_initialized():
            await self._init_ray()
        try:
            await self._control(_start_serve, timeout=self.connect_timeout_s)
        except ModelServiceDown as exc:
            raise ModelServiceDown(f"Serve did not start: {exc.reason}") from exc
        self._reason = "up"

    async def _init_ray(self) -> None:
        import ray

        if self.address is None:
            kwargs: dict[str, Any] = {
                "address": "local",
                "num_cpus": self.num_cpus or os.cpu_count() or 1,
                "include_dashboard": False,
                "object_store_memory": self.object_store_mb * 1024 * 1024,
            }
        else:
            kwargs = {"address": self.address}
        kwargs.update(namespace=_NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
        os.environ.setdefault(*_GCS_RECONNECT_ENV)
        # Linux ends a child process when the *thread* that started it ends (Ray sets
        # PR_SET_PDEATHSIG), so a local Ray is started by a thread that lives until shutdown.
        # A daemon one: should Ray hang on a dead address, it must not keep the process alive.
        future: Future[None] = Future()
        release = self._release = threading.Event()

        def own() -> None:
            try:
                ray.init(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
                future.set_exception(exc)
                return
            future.set_result(None)
            release.wait()

        threading.Thread(target=own, name="colabel-ray", daemon=True).start()
        where = self.address or "a local Ray"
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), self.connect_timeout_s)
        except TimeoutError as exc:
            raise ModelServiceDown(
                f"Ray unreachable: no answer from {where} in {self.connect_timeout_s:.0f} s"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - any failure to start or reach Ray
            # Ray wraps the telling error (a refused token, a version mismatch) in a generic one.
            cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
            raise ModelServiceDown(f"Ray unreachable: {where}: {type(exc).__name__}: {exc}{cause}") from exc
        self._owns_ray = self.address is None
        self._connected = True

    async def _control(
        self, func: Callable[..., T], *args: Any, timeout: float | None = _CONTROL_TIMEOUT_S
    ) -> T:
        """A blocking Ray call in a thread; unreachable Ray becomes `ModelServiceDown`."""
        from ray.exceptions import RayError
        from ray.serve.exceptions import RayServeException

        if self._lost is not None:
            raise ModelServiceDown(self._lost)
        call = _in_thread(func, *args)
        try:
            return await (asyncio.wait_for(call, timeout) if timeout is not None else call)
        except TimeoutError as exc:
            self._lost = (
                f"Ray unreachable: no answer in {timeout:.0f} s; the connection is lost, "
                "restart this process once Ray is back"
            )
            raise ModelServiceDown(self._lost) from exc
        except (RayError, ConnectionError) as exc:
            raise ModelServiceDown(f"Ray unreachable: {type(exc).__name__}: {exc}") from exc
        except RayServeException as exc:
            if "controller" in str(exc).lower():
                raise ModelServiceDown(f"Serve unreachable: {exc}") from exc
            raise

    async def _handle(self, name: str) -> DeploymentHandle[Any]:
        from ray import serve
        from ray.serve.exceptions import RayServeException

        await self.start()
        handle = self._handles.get(name)
        if handle is None:
            try:
                handle = await self._control(serve.get_app_handle, name)
            except RayServeException as exc:
                raise self._not_deployed(name) from exc
            self._handles[name] = handle
        return handle

    def _not_deployed(self, name: str) -> ModelServiceDown:
        stopped = self._stopped.get(name)
        return ModelServiceDown(f"{_what(name)} is not deployed" + (f" ({stopped})" if stopped else ""))

    def _failure(self, name: str, exc: Exception) -> ModelServiceError:
        from ray.exceptions import RayActorError, RayError, RayTaskError
        from ray.serve.exceptions import DeploymentUnavailableError, RayServeException

        if isinstance(exc, DeploymentUnavailableError):
            self._handles.pop(name, None)
            return self._not_deployed(name)
        if isinstance(exc, RayActorError):
            return ModelServiceDown(f"the replica serving {_what(name)} died: {exc}")
        if isinstance(exc, RayTaskError):
            return ModelServiceError(f"{_what(name)} failed: {exc}")
        if isinstance(exc, RayError | RayServeException | ConnectionError):
            return ModelServiceDown(f"{_what(name)} unreachable: {type(exc).__name__}: {exc}")
        if isinstance(exc, ModelServiceError):
            return exc
        return ModelServiceError(f"{_what(name)} failed: {type(exc).__name__}: {exc}")

    # Blocking calls, run in threads.

    @staticmethod
    def _gpus() -> float:
        import ray

        return float(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]

    @staticmethod
    def _run(app: Any, name: str) -> None:
        from ray import serve

        serve.run(app, name=name, route_prefix=None)

    @staticmethod
    def _delete(name: str) -> None:
        from ray import serve

        serve.delete(name)

    @staticmethod
    def _app_names() -> list[str]:
        from ray import serve

        return list(serve.status().applications)

    @staticmethod
    def _is_serving(name: str) -> bool:
        from ray import serve
        from ray.serve.schema import ApplicationStatus

        app = serve.status().applications.get(name)
        return app is not None and app.status in (ApplicationStatus.RUNNING, ApplicationStatus.DEPLOYING)

    @staticmethod
    def _deploy_error(name: str) -> str | None:
        """The last line of a failed replica's traceback (the exception itself), if Serve kept it."""
        from ray import serve

        app = serve.status().applications.get(name)
        for deployment in app.deployments.values() if app else ():
            raised = _RAISED.findall(deployment.message)
            if raised:
                return str(raised[-1])[:500]
        return None

    @staticmethod
    def _deployments() -> tuple[dict[str, Any], float]:
        import ray
        from ray import serve

        out: dict[str, Any] = {}
        for name, app in serve.status().applications.items():
            ids = parse_app_name(name)
            if ids is None:
                continue
            states: dict[str, int] = {}
            for deployment in app.deployments.values():
                for state, n in deployment.replica_states.items():
                    states[str(state)] = states.get(str(state), 0) + n
            out[name] = {
                "project_id": ids[0],
                "version": ids[1],
                "status": getattr(app.status, "value", str(app.status)),
                "message": app.message,
                "replicas": states.get("RUNNING", 0),
                "replica_states": states,
            }
        return out, float(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]

    @staticmethod
    def _stop_local() -> None:
        import ray
        from ray import serve

        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def _in_thread(func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """`func(*args)` on a daemon thread of its own.

    Not the loop's default executor: a call stuck on a dead cluster would hold one of its few
    threads for good, and its non-daemon threads would keep the process from exiting.
    """
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(func(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
            future.set_exception(exc)

    threading.Thread(target=run, name="colabel-ray-call", daemon=True).start()
    return asyncio.wrap_future(future)


def _start_serve() -> None:
    from ray import serve

    # Handles only: the server talks to deployments in-process, so no HTTP proxy is needed.
    serve.start(proxy_location="Disabled")


async def _probe(address: str) -> None:
    """Fail fast when nothing listens at a Ray address ("host:port" or "ray://host:port")."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ModelServiceDown(f"Ray unreachable: {address!r} is not host:port")
    try:
        connecting = asyncio.open_connection(host.strip("[]"), int(port))
        _, writer = await asyncio.wait_for(connecting, _PROBE_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        why = str(exc) or "timed out"
        raise ModelServiceDown(f"Ray unreachable: nothing answers at {address} ({why})") from exc
    writer.close()
    await writer.wait_closed()


def _project(name: str) -> int | None:
    ids = parse_app_name(name)
    return ids[0] if ids else None


def _what(name: str) -> str:
    ids = parse_app_name(name)
    return f"model v{ids[1]} of project {ids[0]}" if ids else name
