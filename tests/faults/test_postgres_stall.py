"""A stalled Postgres: requests fail fast with 503 and service resumes by itself.

SIGSTOP freezes the postmaster and every backend, as a hung host or a storage stall
would: connections stay open and nothing answers, so only deadlines can end a wait.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from server.embedded import EmbeddedPostgres
from tests.conftest import PASSWORD
from tests.infra import ROOT, Api, run_server, server_env
from tests.reliability import Measured

DB_TIMEOUT_S = 2
STALL_S = 10
EMAIL = "stall@colabel.test"


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (its children, theirs, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def freeze(postmaster: int, frozen: list[int]) -> None:
    """SIGSTOP the postmaster, then everything below it (backends serve open connections)."""
    os.kill(postmaster, signal.SIGSTOP)  # first, so that it forks nothing new meanwhile
    frozen.append(postmaster)
    for pid in descendants(postmaster):
        os.kill(pid, signal.SIGSTOP)
        frozen.append(pid)


def thaw(frozen: list[int]) -> None:
    while frozen:
        os.kill(frozen.pop(), signal.SIGCONT)


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response | None, float]:
    """The response (None if the client gave up) and the seconds it took."""
    started = time.monotonic()
    try:
        response: httpx.Response | None = call()
    except httpx.TimeoutException:
        response = None
    return response, time.monotonic() - started


def unavailable(r: httpx.Response | None) -> bool:
    """A 503 in the usual error shape that says when to try again."""
    return (r is not None and r.status_code == 503 and int(r.headers.get("retry-after", "0")) > 0
            and r.json()["error"]["code"] == "database_unavailable")


def refused_handshake(url: str) -> tuple[int, float]:
    """The HTTP status refusing a WebSocket handshake, and the seconds it took."""
    started = time.monotonic()
    with pytest.raises(InvalidStatus) as refused, connect(url, open_timeout=DB_TIMEOUT_S + 8):
        pass
    return refused.value.response.status_code, time.monotonic() - started


def progress_after(ws: ClientConnection, since: float, timeout_s: float) -> float | None:
    """Seconds from `since` (a monotonic time) until the events socket brings a progress
    snapshot, or None if none comes within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            return None
        if message["type"] == "progress":
            return time.monotonic() - since
    return None


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.reliability(
    area="Faults",
    attack="Postgres (postmaster and every backend) is frozen with SIGSTOP for 10 s under a "
           "running server, then resumed with SIGCONT",
    promise="/healthz answers at once whatever the headers, /readyz says 503 within its 2 s "
            "budget, logins, API calls and WebSocket handshakes get 503 (with Retry-After) within "
            "the database deadline plus 1 s, and the same server serves again, open event "
            "streams included, within seconds of Postgres returning")
def test_stalled_postgres_fails_fast_and_service_resumes(tmp_path: Path, redis_url: str,
                                                          measured: Measured) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    env = server_env(pg.start(), redis_url, f"colabel-stall-{uuid.uuid4().hex[:8]}:",
                     tmp_path / "data", COLABEL_DB_TIMEOUT_S=str(DB_TIMEOUT_S))
    subprocess.run([sys.executable, "-m", "server", "createuser", "--email", EMAIL,
                    "--password", PASSWORD, "--admin"], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    frozen: list[int] = []
    try:
        with (run_server(env, [], tmp_path / "server.log") as (base, proc, _took),
              httpx.Client(base_url=base, timeout=DB_TIMEOUT_S + 8) as client,
              contextlib.ExitStack() as stack):
            token = Api(base).login(EMAIL, PASSWORD).post("/api/v1/tokens", {"name": "t"}).json()["token"]
            bearer = {"Authorization": f"Bearer {token}"}
            r = client.post("/api/v1/projects", json={"name": "stall", "task_type": "bbox"}, headers=bearer)
            assert r.status_code == 201, r.text
            events_url = f"{base.replace('http://', 'ws://')}/events/{r.json()['project']['id']}?token={token}"
            events = stack.enter_context(connect(events_url, open_timeout=10))
            assert json.loads(events.recv(timeout=10))["type"] == "progress"

            def login() -> httpx.Response:
                return client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})

            def projects() -> httpx.Response:
                return client.get("/api/v1/projects", headers=bearer)

            freeze(int((tmp_path / "pg" / "postmaster.pid").read_text().split()[0]), frozen)
            stalled_at = time.monotonic()
            try:
                health, health_s = timed(lambda: client.get("/healthz", headers=bearer))
                ready, ready_s = timed(lambda: client.get("/readyz", headers=bearer))
                signin, signin_s = timed(login)
                # The first call finds pooled connections, the second must open new ones.
                calls = [timed(projects) for _ in range(2)]
                handshake, handshake_s = refused_handshake(events_url)
                time.sleep(max(0.0, STALL_S - (time.monotonic() - stalled_at)))
            finally:
                thaw(frozen)
            resumed_at = time.monotonic()
            back: dict[str, float] = {}
            while len(back) < 2 and time.monotonic() - resumed_at < 30:
                for name, call in (("login", login), ("api", projects)):
                    if name not in back and call().status_code == 200:
                        back[name] = time.monotonic() - resumed_at
                time.sleep(0.1)
            # The events socket opened before the stall still brings fresh snapshots.
            snapshot_s = progress_after(events, resumed_at, timeout_s=15)
            measured(f"healthz with a token {health_s:.2f} s; readyz 503 in {ready_s:.2f} s; "
                     f"login 503 in {signin_s:.2f} s; API calls 503 in "
                     + ", ".join(f"{s:.2f}" for _r, s in calls)
                     + f" s; WebSocket handshake {handshake} in {handshake_s:.2f} s (deadline "
                     f"{DB_TIMEOUT_S} s); back after SIGCONT: "
                     + ", ".join(f"{k} {v:.2f} s" for k, v in back.items())
                     + (f", an open event stream's next snapshot {snapshot_s:.1f} s"
                        if snapshot_s is not None else ", no snapshot on the open event stream"))

            assert health is not None and health.status_code == 200 and health_s < 1
            assert ready is not None and ready.status_code == 503 and ready_s < 2.5
            assert ready.json()["checks"]["postgres"]["ok"] is False
            assert ready.json()["checks"]["redis"] == {"ok": True}
            assert unavailable(signin), signin and signin.text
            assert signin_s < DB_TIMEOUT_S + 1
            for response, took in calls:
                assert unavailable(response), response and response.text
                assert took < DB_TIMEOUT_S + 1
            assert handshake == 503 and handshake_s < DB_TIMEOUT_S + 1
            assert set(back) == {"login", "api"} and max(back.values()) < 5
            assert snapshot_s is not None
            assert proc.poll() is None  # served again without a restart
    finally:
        thaw(frozen)
        pg.stop()
