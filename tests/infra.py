"""Test infrastructure: Postgres and Redis for a run, a real server process, API clients.

Each run gets its own database and Redis key prefix. External servers are used when
reachable (CI's 127.0.0.1:5432 and :6379, or COLABEL_TEST_DATABASE_URL /
COLABEL_TEST_REDIS_URL); otherwise the embedded engines start in a temp folder, so the
suite runs on a machine with neither installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def server_env(database_url: str, redis_url: str, prefix: str, data_dir: Path,
               **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLABEL_")}
    env.update(
        COLABEL_DATABASE_URL=database_url,
        COLABEL_REDIS_URL=redis_url,
        COLABEL_REDIS_PREFIX=prefix,
        COLABEL_DATA_DIR=str(data_dir),
        COLABEL_SECRET_KEY="test-secret-" + prefix,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def wait_ready(base_url: str, proc: subprocess.Popen[bytes], timeout_s: float,
               log: Path) -> float:
    """Poll /readyz until it is 200; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(base_url + "/readyz", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout_s}s:\n{log.read_text()[-4000:]}")


@contextmanager
def run_server(env: dict[str, str], args: list[str], log: Path, timeout_s: float = 60, *,
               command: list[str] | None = None,
               cwd: Path = ROOT) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    """Start `colabel serve` (from the checkout unless `command` names another `colabel`) as a
    child process; stop it with SIGTERM afterwards."""
    port = free_port()
    cmd = [*(command or [sys.executable, "-m", "server"]), "serve", "--host", "127.0.0.1",
           "--port", str(port), *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        took = wait_ready(base, proc, timeout_s, log)
        yield base, proc, took
    finally:
        stop_process(proc, 20)


def engine_processes(data_dir: Path) -> dict[int, str]:
    """Embedded engines of `data_dir` by pid, with their command lines: a postmaster
    (`postgres -D DATA_DIR/postgres`) or a redis-server (titled with its socket, which
    lies under DATA_DIR when the path is short enough). Their children are not listed:
    Postgres's rename themselves, but one just forked still shows its parent's line."""
    found, parents = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if str(data_dir) in cmd and ("postgres" in cmd or "redis-server" in cmd):
            found[int(entry.name)] = cmd
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return {pid: cmd for pid, cmd in found.items() if parents[pid] not in found}


def engine_pids(data_dir: Path) -> list[int]:
    """Processes (postgres, redis-server) whose command line names `data_dir`."""
    return list(engine_processes(data_dir))


def wait_gone(data_dir: Path, timeout_s: float = 20) -> list[int]:
    """Wait until no engine of `data_dir` runs; return those still running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and engine_pids(data_dir):
        time.sleep(0.2)
    return engine_pids(data_dir)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it does not exit within `timeout_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Api:
    """An httpx client for one caller; browsers' Origin header is set like a browser's."""

    base_url: str
    client: httpx.Client = field(init=False)
    user: dict[str, Any] | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=30,
                                   headers={"Origin": self.base_url})

    def __del__(self) -> None:
        # Tests drop clients freely; closing here keeps sockets from leaking warnings.
        self.client.close()

    def login(self, email: str, password: str) -> Api:
        r = self.client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        self.user = r.json()["user"]
        return self

    def use_token(self, token: str) -> Api:
        self.client.cookies.clear()
        self.client.headers.pop("Origin", None)
        self.client.headers["Authorization"] = f"Bearer {token}"
        self.token = token
        return self

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.client.request(method, path, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.client.post(path, json=json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.client.put(path, json=json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.client.patch(path, json=json, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.delete(path, **kw)

    @property
    def id(self) -> int:
        assert self.user is not None
        uid: int = self.user["id"]
        return uid

    @property
    def email(self) -> str:
        assert self.user is not None
        email: str = self.user["email"]
        return email


FINISHED = ("done", "failed", "cancelled")


def wait_job(api: Api, job: dict[str, Any] | httpx.Response, timeout_s: float = 60) -> dict[str, Any]:
    """Follow a job (its JSON, or the 202 reply that carries it) until it finishes; its
    final JSON."""
    if isinstance(job, httpx.Response):
        assert job.status_code in (200, 201, 202), job.text
        job = job.json()["job"]
    assert isinstance(job, dict), job
    deadline = time.monotonic() + timeout_s
    while True:
        r = api.get(f"/api/v1/jobs/{job['id']}")
        assert r.status_code == 200, r.text
        job = r.json()["job"]
        if job["status"] in FINISHED:
            return job
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout_s}s: {job}"
        time.sleep(0.05)


@dataclass
class JobReply:
    """A request answered with a job, seen as the request that waited for it would have been
    answered: the job's result (200), or its error with the status it carries."""

    status_code: int
    body: Any
    job: dict[str, Any] | None

    def json(self) -> Any:
        return self.body

    @property
    def text(self) -> str:
        return json.dumps(self.body)


def finished(api: Api, response: httpx.Response, timeout_s: float = 60) -> JobReply:
    """Follow the job a 202 answer carries to its end; any other answer is passed on."""
    if response.status_code != 202:
        return JobReply(response.status_code, response.json(), None)
    job = wait_job(api, response, timeout_s)
    if job["status"] == "done":
        return JobReply(200, job["result"], job)
    error = dict(job["error"] or {"code": job["status"], "message": job["status"], "details": None})
    status = error.pop("http_status", 409)
    return JobReply(status, {"error": error}, job)


@dataclass
class Bound:
    """A dataset binding's reply and, when it queued one, its registration job, finished."""

    response: httpx.Response
    job: dict[str, Any] | None

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def ok(self) -> bool:
        """Bound, and its files registered (or nothing to register)."""
        accepted = self.response.status_code in (200, 201, 202)
        return accepted and (self.job is None or self.job["status"] == "done")

    @property
    def ingest(self) -> dict[str, Any]:
        assert self.job is not None and self.job["status"] == "done", self.job
        result: dict[str, Any] = self.job["result"]
        return result

    def json(self) -> Any:
        return self.response.json()

    @property
    def text(self) -> str:
        return f"{self.response.text} job: {self.job}"


def bound(api: Api, response: httpx.Response, timeout_s: float = 60) -> Bound:
    """Wait for the registration job a binding (or a project created with one) queued."""
    job = response.json().get("job") if response.status_code in (200, 201, 202) else None
    return Bound(response, wait_job(api, job, timeout_s) if job else None)


def delete_keys(redis_url: str, prefix: str) -> None:
    """Delete every Redis key under `prefix` (a run's, a server's of its own)."""
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    client.close()


def unique(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run_client_check(script: Path) -> dict[str, Any]:
    """Run a Node script that loads client TypeScript modules (compiled by the client's own
    TypeScript) and prints its findings as JSON; skip where Node or the packages are absent."""
    node = shutil.which("node")
    if node is None or not (ROOT / "client" / "node_modules" / "typescript").exists():
        pytest.skip("node and the client's npm packages are needed")
    out = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result
