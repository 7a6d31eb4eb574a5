"""`colabel worker`: a process that runs the background work (jobs, exports, probing,
scheduled refreshes, ML training and predictions) off the processes that serve labelers,
so a long export or import never slows a lease or a live document.

`colabel serve` starts `--job-workers` of them beside its server processes on the same
engines (server/worker_processes.py); a multi-node deployment runs them as a service of
their own, against the same Postgres and Redis. Any number may run: Postgres decides who
does what (server/background.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from functools import partial

from migrations.runner import migrate
from server.background import BackgroundJobs, Job
from server.ml import assist, service_owner
from server.ml.training import MLWorker
from server.services import Services
from server.settings import Settings

log = logging.getLogger("colabel.worker")

# Set by `colabel serve` for the workers it starts: they stop when it is gone.
PARENT_ENV = "COLABEL_WORKER_PARENT"
# Background work yields the CPU to the server processes on a shared machine: a lease
# waits on nobody's export (the Postgres backends an export reads through keep theirs).
NICENESS = 10
_PARENT_CHECK_S = 1.0


async def start_models(services: Services) -> list[Job]:
    """The model service client and the ML worker, when this process runs ML assistance (one
    process per machine with a private Ray: the lock in service_owner.py)."""
    if assist.service_unavailable(services.settings) is not None:
        return []
    # Importing the client loads neither torch nor Ray: Ray starts, and torch is imported,
    # only when a project with ML assistance first needs the model service.
    if not service_owner.claim(services.settings):
        services.models_elsewhere = True  # another worker process of this machine runs it
        return []
    from inference.client import ModelService

    services.models = ModelService()
    poll = services.settings.ml_poll_s
    # The server processes answer `GET …/ml` from the status this process writes.
    return [("ml", MLWorker(services, services.models).step, poll),
            ("ml-status", partial(service_owner.publish, services), poll)]


async def run(settings: Settings) -> None:
    """Run the background work until SIGTERM or SIGINT (or until the parent is gone)."""
    assert settings.database_url and settings.redis_url
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    await migrate(settings.database_url)
    services = await Services.open(settings)
    await services.start()
    jobs = BackgroundJobs(services, await start_models(services))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch = asyncio.create_task(_watch_parent(stop))
    await jobs.start()
    log.info("worker %s ready", os.getpid())
    try:
        await stop.wait()
    finally:
        watch.cancel()
        await jobs.stop()
        if services.models is not None:
            with contextlib.suppress(Exception):
                await services.models.shutdown()
        await services.close()
        log.info("worker %s stopped", os.getpid())


async def _watch_parent(stop: asyncio.Event) -> None:
    """Stop when the `colabel serve` that started this worker is gone (killed outright, it
    could not stop us), so no worker outlives its server and the engines it used."""
    raw = os.environ.get(PARENT_ENV)
    if not raw:
        return
    while os.getppid() == int(raw):
        await asyncio.sleep(_PARENT_CHECK_S)
    log.warning("the server that started this worker is gone; stopping")
    stop.set()
