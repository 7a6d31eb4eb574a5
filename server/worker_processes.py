"""The worker processes `colabel serve` starts beside its server processes: `colabel
worker` on the same engines and settings, restarted when one dies, stopped with the
server. Each worker also stops by itself if the server is killed outright (worker.py)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from server.settings import Settings
from server.worker import PARENT_ENV

log = logging.getLogger("colabel")

_RESTART_MIN_S = 1.0
_RESTART_MAX_S = 30.0
_HEALTHY_S = 60.0
_STOP_S = 20.0


class WorkerProcesses:
    """Starts `count` workers and keeps that many running until `stop`."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.env = {**os.environ, **settings.environment(), PARENT_ENV: str(os.getpid())}
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started: list[float] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="job-workers", daemon=True)

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.count)]
        self.started = [time.monotonic()] * self.count
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Output goes where the server's goes: one log for the whole instance.
        return subprocess.Popen([sys.executable, "-m", "server", "worker"], env=self.env)

    def _supervise(self) -> None:
        """Restart a worker that died (a bug or the kernel's OOM killer), backing off when
        one keeps dying; the job it held is taken up again by a live one."""
        wait = [_RESTART_MIN_S] * self.count
        while not self._stopping.wait(0.5):
            for i, proc in enumerate(self.procs):
                if proc.poll() is None:
                    continue
                if time.monotonic() - self.started[i] > _HEALTHY_S:
                    wait[i] = _RESTART_MIN_S  # it had been running fine: not a crash loop
                log.warning("worker %s exited with %s; restarting it in %.0f s",
                            proc.pid, proc.returncode, wait[i])
                if self._stopping.wait(wait[i]):
                    return
                wait[i] = min(wait[i] * 2, _RESTART_MAX_S)
                self.procs[i] = self._spawn()
                self.started[i] = time.monotonic()

    def stop(self) -> None:
        """SIGTERM every worker (a running job is left for the next start), then wait."""
        self._stopping.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_S
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
