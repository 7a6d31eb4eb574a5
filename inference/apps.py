"""Names and serving options of the Ray Serve applications, one per (project, model version).

Kept apart from `serve` so that the server's client can name and configure applications
without importing torch or Ray; those load only when a model is actually deployed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["APP_PREFIX", "ServeOptions", "app_name", "parse_app_name"]

APP_PREFIX = "colabel-p"


@dataclass(frozen=True)
class ServeOptions:
    """How a model version is served; one value for every project of a server."""

    # Images per forward pass at most, and how long a partial batch waits for more.
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.01
    # Two batches in flight: one decoding while the other runs on the device.
    max_concurrent_batches: int = 2
    max_replicas: int = 1
    # An idle deployment scales to zero replicas after this long (None: always keep one).
    # The next request then waits for a cold start (about 10 s plus the model's load).
    idle_to_zero_s: float | None = 300.0
    # Ray resources reserved per replica. Fractions so one machine serves several projects
    # and a training run side by side; the GPU share is used only when the cluster has a GPU.
    replica_cpus: float = 0.5
    replica_gpus: float = 0.25
    # Torch threads on a CPU replica (None: every core of its node; Ray's default would be 1).
    cpu_threads: int | None = None
    # Threads decoding images in a replica (None: up to 8, bounded by the node's cores).
    decode_threads: int | None = None


def app_name(project_id: int, version: int) -> str:
    """The Serve application of one project's model version."""
    return f"{APP_PREFIX}{project_id}-v{version}"


def parse_app_name(name: str) -> tuple[int, int] | None:
    """(project id, version) of an application `app_name` made, else None."""
    if not name.startswith(APP_PREFIX):
        return None
    project, sep, version = name[len(APP_PREFIX) :].partition("-v")
    if not sep or not project.isdigit() or not version.isdigit():
        return None
    return int(project), int(version)
