"""Jobs: long work asked for over the API runs in worker processes, answers at once with a
job, reports progress on the project's live events, and survives the death of its worker
without registering anything twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
import websockets
from PIL import Image

from server.data.ingest import INGEST_LOCK_NS
from tests.conftest import OWN_ADMIN, PASSWORD, bind_folder, project_body
from tests.infra import ROOT, Api, run_server, stop_process, unique, wait_job
from tests.infra import bound as registered
from tests.reliability import Measured

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]


def folder_of(data_dir: Path, count: int) -> Path:
    root = data_dir / "datasets" / unique("jobs")
    root.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (4, 4)).save(root / f"{i:03}.png")
    return root


def bound_project(make_project: MakeProject, data_dir: Path, count: int) -> tuple[Api, int, Path]:
    owner, p = make_project()
    root = folder_of(data_dir, count)
    assert bind_folder(owner, p["id"], root).ok
    return owner, p["id"], root


@contextmanager
def ingest_held(database_url: str, pid: int) -> Iterator[None]:
    """Hold the project's ingest lock, as a registration that takes its time would: a job of
    the project waits for it, running, until the block ends."""

    async def take() -> asyncpg.Connection:
        conn = await asyncpg.connect(database_url)
        await conn.execute("SELECT pg_advisory_lock($1, $2)", INGEST_LOCK_NS, pid)
        return conn

    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(take())
    try:
        yield
    finally:
        loop.run_until_complete(conn.close())
        loop.close()


def wait_status(api: Api, job_id: int, status: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = api.get(f"/api/v1/jobs/{job_id}").json()["job"]
        if job["status"] == status:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def workers_of(server_pid: int) -> list[psutil.Process]:
    """The `colabel worker` processes a `colabel serve` started."""
    return [p for p in psutil.Process(server_pid).children()
            if "worker" in p.cmdline()]


def items_total(api: Api, pid: int) -> int:
    total: int = api.get(f"/api/v1/projects/{pid}").json()["project"]["items"]["total"]
    return total


def test_a_refresh_answers_at_once_with_a_job_that_lists_the_data(
    make_project: MakeProject, data_dir: Path,
) -> None:
    owner, pid, root = bound_project(make_project, data_dir, 3)
    (root / "000.png").unlink()
    Image.new("RGB", (4, 4)).save(root / "new.png")
    r = owner.post(f"/api/v1/projects/{pid}/refresh")
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["kind"] == "refresh" and job["status"] in ("queued", "running")
    assert job["url"] == f"/api/v1/jobs/{job['id']}"
    done = wait_job(owner, job)
    assert done["status"] == "done" and done["error"] is None and done["attempts"] == 1
    assert (done["result"]["added"], done["result"]["missing"]) == (1, 1)
    assert done["done"] == done["total"] == done["result"]["listed"] == 3
    listed = owner.get(f"/api/v1/projects/{pid}/jobs").json()["jobs"]
    assert [j["kind"] for j in listed] == ["refresh", "bind"]
    assert owner.get(f"/api/v1/projects/{pid}/jobs", params={"status": "done"}).json()["jobs"] == listed
    bad = owner.get(f"/api/v1/projects/{pid}/jobs", params={"status": "lost"})
    assert bad.status_code == 422
    assert owner.get("/api/v1/jobs/999999999").status_code == 404


def test_a_refresh_asked_twice_while_one_waits_queues_one_job(
    make_project: MakeProject, data_dir: Path, database_url: str,
) -> None:
    owner, pid, root = bound_project(make_project, data_dir, 2)
    with ingest_held(database_url, pid):
        first = owner.post(f"/api/v1/projects/{pid}/refresh").json()["job"]
        wait_status(owner, first["id"], "running")
        second = owner.post(f"/api/v1/projects/{pid}/refresh").json()["job"]
        third = owner.post(f"/api/v1/projects/{pid}/refresh").json()["job"]
        # One runs (waiting for the lock); one more waits behind it, and asking again
        # answers with that one.
        assert second["id"] != first["id"] and third["id"] == second["id"]
    assert wait_job(owner, first)["status"] == "done"
    assert wait_job(owner, second)["status"] == "done"


@pytest.mark.reliability(
    area="Jobs",
    attack="Killed (SIGKILL) the worker process running a refresh job halfway through it",
    promise="The server restarts the worker, which takes the job up again and finishes it; "
            "every file is registered once")
def test_a_job_whose_worker_is_killed_is_taken_up_again_and_registers_once(
    own_engines: Callable[..., dict[str, str]], tmp_path: Path, measured: Measured,
) -> None:
    env = own_engines()
    with run_server(env, [], tmp_path / "server.log") as (base, proc, _took):
        owner = Api(base).login(OWN_ADMIN, PASSWORD)
        pid = owner.post("/api/v1/projects", project_body()).json()["project"]["id"]
        root = folder_of(tmp_path, 3)
        assert registered(owner, owner.put(f"/api/v1/projects/{pid}/dataset", {
            "datastore": {"kind": "local", "path": str(root)}})).ok
        for i in range(3, 8):
            Image.new("RGB", (4, 4)).save(root / f"{i:03}.png")
        with ingest_held(env["COLABEL_DATABASE_URL"], pid):
            job = owner.post(f"/api/v1/projects/{pid}/refresh").json()["job"]
            wait_status(owner, job["id"], "running")
            [worker] = workers_of(proc.pid)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            # The server starts another worker, which finds the job's lock free.
            deadline = time.monotonic() + 30
            while owner.get(f"/api/v1/jobs/{job['id']}").json()["job"]["attempts"] < 2:
                assert time.monotonic() < deadline, "no worker took the job up again"
                time.sleep(0.1)
            assert [w.pid for w in workers_of(proc.pid)] != [worker.pid]
        done = wait_job(owner, job)
        assert done["status"] == "done" and done["attempts"] == 2
        assert done["result"]["added"] == 5 and items_total(owner, pid) == 8
        keys = [i["key"] for i in owner.get(f"/api/v1/projects/{pid}/items").json()["items"]]
        assert len(keys) == len(set(keys)) == 8
        measured(f"job done on attempt {done['attempts']}; 8 items, none twice")


def test_cancelling_a_running_job_keeps_nothing_it_did(
    make_project: MakeProject, data_dir: Path, database_url: str,
) -> None:
    owner, pid, root = bound_project(make_project, data_dir, 2)
    Image.new("RGB", (4, 4)).save(root / "late.png")
    with ingest_held(database_url, pid):
        job = owner.post(f"/api/v1/projects/{pid}/refresh").json()["job"]
        wait_status(owner, job["id"], "running")
        r = owner.post(f"/api/v1/jobs/{job['id']}/cancel")
        assert r.status_code == 200 and r.json()["job"]["cancel_requested"] is True
        assert wait_status(owner, job["id"], "cancelled")["finished_at"] is not None
    assert items_total(owner, pid) == 2
    again = owner.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"


def test_a_queued_job_is_cancelled_at_once(
    make_project: MakeProject, data_dir: Path, database_url: str,
) -> None:
    owner, pid, root = bound_project(make_project, data_dir, 1)
    Image.new("RGB", (4, 4)).save(root / "late.png")
    with ingest_held(database_url, pid):
        running = owner.post(f"/api/v1/projects/{pid}/refresh").json()["job"]
        wait_status(owner, running["id"], "running")
        queued = owner.post(f"/api/v1/projects/{pid}/refresh").json()["job"]
        r = owner.post(f"/api/v1/jobs/{queued['id']}/cancel")
        assert r.status_code == 200 and r.json()["job"]["status"] == "cancelled"
    assert wait_job(owner, running)["result"]["added"] == 1
    assert owner.get(f"/api/v1/jobs/{queued['id']}").json()["job"]["attempts"] == 0


async def test_a_job_committed_before_its_worker_died_is_finished_not_run_again(
    make_project: MakeProject, data_dir: Path, database_url: str,
) -> None:
    owner, pid, root = bound_project(make_project, data_dir, 1)
    Image.new("RGB", (4, 4)).save(root / "late.png")
    conn = await asyncpg.connect(database_url)
    try:
        # What a worker leaves behind when it dies right after its job's commit.
        job_id = await conn.fetchval(
            "INSERT INTO jobs (project_id, kind, params, status, attempts, created_by) "
            "SELECT $1, 'refresh', jsonb_build_object('binding', dataset - 'refresh'), 'running', 1, $2 "
            "FROM projects WHERE id = $1 RETURNING id", pid, owner.id)
        await conn.execute("INSERT INTO job_commits (job_id) VALUES ($1)", job_id)
        # And one whose worker kept dying: it is given up on.
        doomed = await conn.fetchval(
            "INSERT INTO jobs (project_id, kind, status, attempts, created_by) "
            "VALUES ($1, 'refresh', 'running', 5, $2) RETURNING id", pid, owner.id)
        await conn.execute("SELECT pg_notify('colabel_jobs', '')")
    finally:
        await conn.close()
    done = await asyncio.to_thread(wait_job, owner, {"id": job_id})
    assert done["status"] == "done" and done["result"] == {"recovered": True}
    assert items_total(owner, pid) == 1  # not listed again: late.png is still unregistered
    failed = await asyncio.to_thread(wait_job, owner, {"id": doomed})
    assert failed["status"] == "failed" and failed["error"]["code"] == "job_abandoned"


async def test_job_progress_reaches_the_live_events(
    make_project: MakeProject, data_dir: Path, server: str,
) -> None:
    owner, pid, root = bound_project(make_project, data_dir, 2)
    token = owner.post("/api/v1/tokens", {"name": "ev"}).json()["token"]
    async with websockets.connect(f"{server.replace('http://', 'ws://')}/events/{pid}?token={token}") as ws:
        r = await asyncio.to_thread(owner.post, f"/api/v1/projects/{pid}/refresh")
        jid = r.json()["job"]["id"]
        seen: list[dict[str, Any]] = []
        while not any(e["type"] == "job" and e["status"] == "done" for e in seen):
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
    mine = [e for e in seen if e["type"] == "job"]
    assert {e["job_id"] for e in mine} == {jid}
    assert mine[0]["status"] == "running" and mine[0]["job_kind"] == "refresh"
    assert mine[-1]["result"]["listed"] == 2 and mine[-1]["error"] is None


@pytest.mark.reliability(
    area="Jobs",
    attack="Ran a server with no job workers of its own (--job-workers 0) on a database of "
           "its own and bound a folder; then started `colabel worker` on the same engines; "
           "then killed (SIGKILL) a server that had started its own worker",
    promise="The server runs no background work (the job waits, queued); the separate worker "
            "runs it; a worker never outlives the server that started it")
def test_servers_leave_background_work_to_workers(
    own_engines: Callable[..., dict[str, str]], tmp_path: Path, measured: Measured,
) -> None:
    env = own_engines()
    root = folder_of(tmp_path, 3)
    with run_server(env, ["--job-workers", "0"], tmp_path / "lone.log") as (base, proc, _took):
        assert workers_of(proc.pid) == []
        api = Api(base).login(OWN_ADMIN, PASSWORD)
        pid = api.post("/api/v1/projects", project_body()).json()["project"]["id"]
        r = api.put(f"/api/v1/projects/{pid}/dataset",
                    {"datastore": {"kind": "local", "path": str(root)}})
        assert r.status_code == 202, r.text
        time.sleep(2)  # longer than a worker's poll: nothing here picks the job up
        waiting = api.get(r.json()["job"]["url"]).json()["job"]
        assert waiting["status"] == "queued" and items_total(api, pid) == 0
        worker = subprocess.Popen([sys.executable, "-m", "server", "worker"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            done = wait_job(api, waiting)
            assert done["status"] == "done" and items_total(api, pid) == 3
        finally:
            stop_process(worker, 20)
        assert worker.returncode == 0  # SIGTERM stops it cleanly
    measured("job queued for 2 s under a server without workers; done once `colabel worker` ran")

    # A server killed outright takes its worker with it.
    with run_server(env, [], tmp_path / "killed.log") as (base, proc, _took):
        [child] = workers_of(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        child.wait(15)
    measured("the worker stopped by itself after its server was killed")
    # A worker with no engines to work on says what it needs.
    lone = subprocess.run([sys.executable, "-m", "server", "worker"], check=False, cwd=ROOT,
                          capture_output=True,
                          env={k: v for k, v in env.items() if k != "COLABEL_DATABASE_URL"},
                          timeout=60, text=True)
    assert lone.returncode == 2 and "COLABEL_DATABASE_URL" in lone.stderr


def test_an_import_answers_at_once_and_its_job_carries_the_outcome(
    make_project: MakeProject, data_dir: Path,
) -> None:
    owner, pid, _root = bound_project(make_project, data_dir, 2)
    label = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"][0]["name"]

    def post(name: str, text: str, **form: str) -> Any:
        return owner.post(f"/api/v1/projects/{pid}/label-imports", data=form,
                          files=[("file", (name, text.encode(), "application/octet-stream"))])

    # What can be told from the request alone is answered by it.
    r = post("labels.txt", "")
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_file"
    # A file with a bad record: the job fails with the body the request would have had.
    lines = (json.dumps({"image_url": "000.png", "label": label}) + "\n"
             + json.dumps({"image_url": "001.png", "label": "no such label"}) + "\n")
    r = post("labels.jsonl", lines)
    assert r.status_code == 202 and r.json()["job"]["kind"] == "label_import"
    failed = wait_job(owner, r)
    assert failed["status"] == "failed" and failed["error"]["code"] == "records_invalid"
    assert failed["error"]["http_status"] == 422 and failed["error"]["details"]["total"] == 2
    assert owner.get(f"/api/v1/projects/{pid}/items",
                     params={"status": "labeled"}).json()["items"] == []
    # Accepted in part: the good record is imported, the bad one reported.
    done = wait_job(owner, post("labels.jsonl", lines, accept_partial="true"))
    assert done["status"] == "done" and done["result"]["labeled"] == 1
    assert len(done["result"]["errors"]) == 1 and done["done"] >= 1
    # The uploaded file is kept only while its job runs.
    assert not (data_dir / "jobs" / str(done["id"])).exists()
    assert not (data_dir / "jobs" / str(failed["id"])).exists()
