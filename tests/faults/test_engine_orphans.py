"""`kill -9` of `colabel serve` leaves its embedded engines running; the next start must
take them over rather than start a second of either."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.infra import ROOT, Api, engine_processes, run_server, wait_gone
from tests.reliability import Measured

EMAIL = "orphans@colabel.test"


def engines(data_dir: Path) -> tuple[list[int], list[int]]:
    """(redis-server pids, postmaster pids) running for `data_dir`."""
    procs = engine_processes(data_dir)
    redis = [pid for pid, cmd in procs.items() if "redis-server" in cmd]
    return redis, [pid for pid in procs if pid not in redis]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.reliability(
    area="Faults",
    attack="`colabel serve` on its embedded PostgreSQL and Redis is killed with SIGKILL, which "
           "leaves both engines running, and started again on the same data directory",
    promise="the restart takes over each orphaned engine (one PostgreSQL, one Redis, never a "
            "second), serves, and a clean stop afterwards leaves no engine running")
def test_restart_after_kill_9_takes_over_the_orphaned_engines(tmp_path: Path,
                                                              measured: Measured) -> None:
    # A short path keeps Redis's socket, and so its process title, under the data directory.
    data_dir = tmp_path / "d"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLABEL_")}
    env["COLABEL_DATA_DIR"] = str(data_dir)
    subprocess.run([sys.executable, "-m", "server", "createuser", "--email", EMAIL,
                    "--password", PASSWORD, "--admin"], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    try:
        with run_server(env, [], tmp_path / "first.log") as (base, proc, _took):
            Api(base).login(EMAIL, PASSWORD)
            first_redis, first_pg = engines(data_dir)
            assert len(first_redis) == 1 and len(first_pg) == 1
            assert (data_dir / "redis" / "redis.sock").exists()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        orphans = engines(data_dir)
        assert orphans == (first_redis, first_pg)  # the attack: both engines outlive it

        started = time.monotonic()
        with run_server(env, [], tmp_path / "second.log") as (base, proc, took):
            redis, pg = engines(data_dir)
            assert len(redis) == 1, engine_processes(data_dir)
            assert len(pg) == 1, engine_processes(data_dir)
            api = Api(base).login(EMAIL, PASSWORD)  # the login throttle lives in Redis
            r = api.post("/api/v1/projects", {"name": "after the crash", "task_type": "bbox"})
            assert r.status_code == 201, r.text
            assert [p["name"] for p in api.get("/api/v1/projects").json()["projects"]] == ["after the crash"]
            ready_s = time.monotonic() - started
            # Still one of each once it has been serving for a while.
            assert engines(data_dir) == (redis, pg)
        left = wait_gone(data_dir)
        measured(f"after SIGKILL: {len(orphans[0])} Redis and {len(orphans[1])} PostgreSQL left "
                 f"running; the restart was ready in {took:.1f} s and served in {ready_s:.1f} s "
                 f"with 1 Redis ({'the same' if redis == first_redis else 'a new'} process) and "
                 f"1 PostgreSQL ({'the same' if pg == first_pg else 'a new'} postmaster); "
                 f"{len(left)} engine processes after SIGTERM")
        assert left == []
    finally:
        for pid in engine_processes(data_dir):
            os.kill(pid, signal.SIGKILL)
