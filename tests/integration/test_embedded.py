"""The zero-configuration path: embedded PostgreSQL and Redis under a data directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from server.demo import DEMO_EMAIL, DEMO_PASSWORD, DEMO_PROJECT
from server.embedded import EmbeddedRedis
from tests.infra import ROOT, Api, engine_pids, run_server, wait_gone


@pytest.mark.reliability(
    area='Faults',
    attack='Ran the embedded default (embedded Postgres and Redis), signed in with a wrong password, '
           'and killed the embedded Redis with SIGKILL.',
    promise='A wrong password says so (401); /readyz reports the dead Redis (503) instead of '
            'pretending.')
@pytest.mark.timeout(240)
def test_createuser_then_serve_demo_on_embedded_engines(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLABEL_")}
    env["COLABEL_DATA_DIR"] = str(data_dir)
    env["COLABEL_ML_POLL_S"] = "1"
    cli = [sys.executable, "-m", "server"]
    # createuser before the first serve just works, and stops what it started.
    out = subprocess.run([*cli, "createuser", "--email", "first@colabel.test",
                          "--password", "first-password", "--admin"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "created user" in out.stdout
    assert wait_gone(data_dir) == []
    dup = subprocess.run([*cli, "createuser", "--email", "FIRST@colabel.test",
                          "--password", "first-password"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    migrated = subprocess.run([*cli, "migrate"], env=env, cwd=ROOT, capture_output=True, check=False,
                              text=True, timeout=120)
    assert migrated.returncode == 0 and "nothing to apply" in migrated.stdout

    with run_server(env, ["--demo"], tmp_path / "serve.log", timeout_s=60) as (base, proc, took):
        assert took < 60
        log = (tmp_path / "serve.log").read_text()
        assert f"listening on {base}" in log and DEMO_EMAIL in log
        demo = Api(base).login(DEMO_EMAIL, DEMO_PASSWORD)
        # A wrong password or an unknown email says so (the login throttle's counters live
        # in the embedded Redis, which must understand every command they use).
        anon = Api(base)
        for email, password in ((DEMO_EMAIL, "not-the-password"), ("nobody@colabel.test", "x" * 10)):
            r = anon.client.post("/api/v1/auth/login", json={"email": email, "password": password})
            assert r.status_code == 401, r.text
            assert r.json()["error"] == {"code": "invalid_credentials", "message": "wrong email or password",
                                         "details": None}
        names = [p["name"] for p in demo.get("/api/v1/projects").json()["projects"]]
        assert DEMO_PROJECT in names
        project = next(p for p in demo.get("/api/v1/projects").json()["projects"]
                       if p["name"] == DEMO_PROJECT)
        assert project["status"] == "running" and project["label_count"] == 4
        images = list(Path(project["dataset"]["datastore"]["path"]).glob("*.png"))
        assert len(images) == 12
        # With ML assistance on but nothing to train yet, and after the ML worker has looked
        # at the project a few times, the server has loaded neither torch nor Ray.
        r = demo.patch(f"/api/v1/projects/{project['id']}", {"ml_assist": {"enabled": True}})
        assert r.status_code == 200, r.text
        time.sleep(2.5)
        assert demo.get(f"/api/v1/projects/{project['id']}/ml").json()["ml"]["phase"] == "waiting_for_labels"
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "/torch/lib/" not in maps and "/ray/_raylet" not in maps
        assert "/pyarrow/" not in maps  # loaded at the first Parquet import
        Api(base).login("first@colabel.test", "first-password")
        assert len(engine_pids(data_dir)) >= 2
        # Readiness reports a dead Redis instead of pretending.
        redis_pid = next(p for p in engine_pids(data_dir)
                         if b"redis-server" in Path(f"/proc/{p}/cmdline").read_bytes())
        os.kill(redis_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        r = httpx.get(base + "/readyz")
        while r.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            r = httpx.get(base + "/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["redis"]["ok"] is False
        assert r.json()["checks"]["postgres"]["ok"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert wait_gone(data_dir) == []


@pytest.mark.timeout(240)
def test_demo_is_idempotent_across_restarts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLABEL_")}
    env["COLABEL_DATA_DIR"] = str(tmp_path / "data")
    for round_ in range(2):
        with run_server(env, ["--demo"], tmp_path / f"serve{round_}.log") as (base, _p, _t):
            demo = Api(base).login(DEMO_EMAIL, DEMO_PASSWORD)
            projects = demo.get("/api/v1/projects").json()["projects"]
            assert [p["name"] for p in projects] == [DEMO_PROJECT]
    assert wait_gone(tmp_path / "data") == []


def test_a_second_user_of_the_data_dir_shares_the_embedded_redis(tmp_path: Path) -> None:
    owner, guest = EmbeddedRedis(tmp_path / "redis"), EmbeddedRedis(tmp_path / "redis")
    url = owner.start()
    try:
        assert guest.start() == url  # no second redis-server on the same socket
        assert len(engine_pids(tmp_path)) == 1
        guest.stop()  # leaves it to its owner
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.close()
    finally:
        owner.stop()
    assert wait_gone(tmp_path) == []


def _children(parent: int, marker: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and marker in cmd:
            found.append(int(entry.name))
    return found


def _workers(parent: int) -> list[int]:
    """The server processes `colabel serve --workers N` spawned."""
    return _children(parent, b"spawn_main")


def _job_workers(parent: int) -> list[int]:
    """The `colabel worker` processes `colabel serve --job-workers N` started."""
    return _children(parent, b"server\x00worker")


def _lock_holders(pids: list[int], lock: Path) -> list[int]:
    holders = []
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if str(lock) in links:
            holders.append(pid)
    return holders


def _wait_for(check: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.2)
    assert check(), "not reached in time"  # type: ignore[operator]


@pytest.mark.reliability(
    area='Faults',
    attack='Served with two server and two job worker processes on the embedded engines '
           '(`colabel serve --workers 2 --job-workers 2`), worked through both servers, and '
           'killed the job worker that runs the model service with SIGKILL.',
    promise='Every server accepts the same sessions and reports the same model service status; '
            'exactly one job worker runs the model service; the killed worker is replaced, and '
            'its replacement takes the model service over.')
@pytest.mark.timeout(240)
def test_serve_with_two_workers_on_the_embedded_engines(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLABEL_")}
    env.update(COLABEL_DATA_DIR=str(data_dir), COLABEL_ML_POLL_S="1")
    lock = data_dir / "ml-service.lock"
    with run_server(env, ["--demo", "--workers", "2", "--job-workers", "2"], tmp_path / "serve.log",
                    timeout_s=90) as (base, proc, _took):
        _wait_for(lambda: len(_workers(proc.pid)) == 2 and len(_job_workers(proc.pid)) == 2)
        demo = Api(base).login(DEMO_EMAIL, DEMO_PASSWORD)
        project = demo.get("/api/v1/projects").json()["projects"][0]
        pid = project["id"]
        assert demo.patch(f"/api/v1/projects/{pid}", {"ml_assist": {"enabled": True}}).status_code == 200
        # Each request on a connection of its own: the two servers share the listening
        # socket, so both answer some of them, with the same session and the same status.
        cookies = demo.client.cookies
        _wait_for(lambda: len(_lock_holders(_job_workers(proc.pid), lock)) == 1)
        time.sleep(2.5)
        statuses = []
        for _ in range(12):
            with httpx.Client(base_url=base, cookies=cookies) as fresh:
                r = fresh.get(f"/api/v1/projects/{pid}/ml")
                assert r.status_code == 200, r.text
                statuses.append(r.json()["ml"]["service"])
        assert all("has not reported" not in str(s.get("reason")) for s in statuses), statuses
        assert len({(s["up"], s["reason"]) for s in statuses}) == 1, statuses
        # The model service lives in a job worker, never in a server process.
        assert _lock_holders(_workers(proc.pid), lock) == []
        leases = demo.post(f"/api/v1/projects/{pid}/tasks/next", {"count": 4}).json()["leases"]
        label = demo.get(f"/api/v1/projects/{pid}/labels").json()["labels"][0]["id"]
        r = demo.post("/api/v1/leases/submit", {"submissions": [
            {"lease_id": x["lease_id"], "annotation": {"classes": [label]}} for x in leases]})
        assert r.status_code == 200 and r.json()["submitted"] == 4, r.text
        # The worker running the model service dies: serve starts another, which takes it over.
        owner = _lock_holders(_job_workers(proc.pid), lock)[0]
        os.kill(owner, signal.SIGKILL)
        _wait_for(lambda: len(_job_workers(proc.pid)) == 2 and owner not in _job_workers(proc.pid))
        _wait_for(lambda: len(_lock_holders(_job_workers(proc.pid), lock)) == 1)
        _wait_for(lambda: httpx.get(base + "/readyz").status_code == 200)
        for _ in range(6):
            with httpx.Client(base_url=base, cookies=cookies) as fresh:
                assert fresh.get(f"/api/v1/projects/{pid}/items?limit=1").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert wait_gone(data_dir) == []
