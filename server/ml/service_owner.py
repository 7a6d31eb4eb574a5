"""Which worker process runs the model service when several run on one machine
(`colabel serve --job-workers N`), and what the server processes say about it.

A private local Ray per process would start N Ray instances and load the model N times, so
only the first worker to take a lock file in the data directory runs the service (and the
ML worker that trains and predicts); the lock goes with the process, and the worker started
in its place takes it. With `RAY_ADDRESS` naming a cluster every worker connects to it, as
every node of a multi-node deployment does. The owner writes its service status to Redis on
every ML poll, so whichever server process answers `GET /projects/{id}/ml` reports the same
service.
"""

from __future__ import annotations

import fcntl
import os
from typing import IO, TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from server.services import Services
    from server.settings import Settings

LOCK_FILE = "ml-service.lock"
STATUS_KEY = "ml:service"
# The status is kept this many ML polls: past that the owner is taken to be gone.
POLLS_KEPT = 3
# The lock file while this process holds it (it is let go with the process).
_held: list[IO[str]] = []


def _private_ray() -> bool:
    return os.environ.get("RAY_ADDRESS", "") in ("", "local")


def claim(settings: Settings) -> bool:
    """Whether this process runs the model service: with a private Ray, the one worker
    process of this machine holding the lock; with a Ray cluster, every one."""
    if not _private_ray() or _held:
        return True
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = open(settings.data_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return False
    _held.append(lock)
    return True


async def publish(services: Services) -> int:
    """The owner's job: write its service status for the other processes. Returns 0 (no
    work done) so the background loop waits an ML poll before the next write."""
    status = await services.models.status()
    await services.redis.set(services.settings.redis_prefix + STATUS_KEY, orjson.dumps(status),
                             px=int(services.settings.ml_poll_s * POLLS_KEPT * 1000))
    return 0


async def shared(services: Services) -> dict[str, Any]:
    """The service status as the owning process last wrote it."""
    raw = await services.redis.get(services.settings.redis_prefix + STATUS_KEY)
    if raw is None:
        return {"up": False, "reason": "the worker process that runs the model service has not "
                                       "reported its status yet (colabel worker)"}
    status: dict[str, Any] = orjson.loads(raw)
    return status
