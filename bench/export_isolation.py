"""Export isolation benchmark: a long COCO export must not slow the labelers' leases.

    .venv/bin/python bench/export_isolation.py [--items 300000] [--boxes 4] [--unlabeled 50000]
                                               [--labelers 40] [--think 0.5,1.5] [--warmup 5]
                                               [--baseline 15] [--no-peer]

It creates its own database (migrated, dropped at the end) and Redis key prefix (deleted at
the end) holding a running bbox project without consensus: --items labeled items with about
--boxes boxes each and their annotations (bench/export.py's `build`, COPY), plus --unlabeled
open items for the labelers, all 640x480 (nothing to probe). Then, for each set-up:

  isolated   `colabel serve` (`python -m server serve`) with its default one job worker:
             the export runs in the `colabel worker` child process;
  peer       the same app served by uvicorn in one process built with background_jobs=True
             (this file's `--peer-app` mode; no job worker): the export runs inside the
             process that serves the labelers, as before the worker processes existed;

--labelers simulated labelers talk HTTP to the server, open loop: each leases one item
(POST /api/v1/projects/{pid}/tasks/next, count 1 as a bbox project allows), thinks a
--think time (uniform, seconds) measured from its previous due time, whatever the server's
answers took, submits one box (POST /api/v1/leases/{id}/submit), leases the next, and so on;
at the end each gives back what it holds. After --warmup seconds a baseline window of
--baseline seconds, then the owner queues a COCO export of the project
(POST /api/v1/projects/{pid}/exports) and the export window lasts until GET /api/v1/exports/{id}
says done. The peer runs second, on the same database and Redis state (the first server
stopped), so its export also carries the items labeled during the first run.

Printed as one JSON line (progress on stderr); latencies are HTTP round trips seen by the
labelers, nearest-rank percentiles in ms:
  items, boxes, unlabeled, labelers                   the project and the load
  baseline_lease_p50_ms/_p99_ms, baseline_submit_p99_ms, baseline_leases
  during_export_lease_p50_ms/_p99_ms/_max_ms, during_export_submit_p99_ms, during_export_leases
  export_s                 request to the export seen done (export_job_s: claimed to done,
                           from the export's started_at/finished_at); export_items, export_mb
  server_cpu_s_during_export, worker_cpu_s_during_export   CPU (user + system) of the serve
                           process and of its `colabel worker` child over the export window
  peer_in_process_*        the same figures for the peer (its server_cpu_s includes the export)
  *_machine_busy_cores     the whole machine's busy cores in each window, of machine_cores:
                           other work on a shared machine shows up here
  errors, empty_leases     failed requests by cause; leases that found no open item

Needs PostgreSQL (COLABEL_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres)
and Redis (COLABEL_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import export as export_bench  # noqa: E402
from bench.dispatch import REDIS_URL, clean_up, machine_busy_s, new_database, percentile_ms  # noqa: E402
from bench.dispatch_open import (  # noqa: E402
    Samples,
    _annotation,
    _post,
    add_tokens,
    bench_users,
    free_port,
    temp_dir,
)
from migrations.runner import migrate  # noqa: E402
from server.work.keys import DispatchKeys  # noqa: E402
from tests.infra import server_env, stop_process, wait_ready  # noqa: E402

READY_TIMEOUT_S = 120.0
REBUILD_TIMEOUT_S = 300.0
POLL_S = 0.25
COPY_BATCH = 100_000
WIDTH, HEIGHT = export_bench.WIDTH, export_bench.HEIGHT


def log(msg: str) -> None:
    print(f"[export_isolation] {msg}", file=sys.stderr, flush=True)


# -- the project ---------------------------------------------------------------------------------

@dataclass
class Setup:
    pid: int
    owner_token: str
    tokens: list[str]  # one per labeler
    label_ids: list[int]  # the leaves of the label tree
    boxes: int


async def build(url: str, args: argparse.Namespace) -> Setup:
    conn = await asyncpg.connect(url)
    try:
        owner, users = await bench_users(conn, max(args.labelers, export_bench.LABELERS))
        t = time.perf_counter()
        pid, boxes = await export_bench.build(conn, users, "bbox", args.items, args.boxes)
        log(f"{args.items} labeled items, {boxes} boxes in {time.perf_counter() - t:.1f} s")
        for start in range(0, args.unlabeled, COPY_BATCH):
            await conn.copy_records_to_table(
                "items", columns=["project_id", "key", "media_kind", "width", "height"],
                records=[(pid, f"open{i % 100:02d}/img{i:07d}.jpg", "image", WIDTH, HEIGHT)
                         for i in range(start, min(args.unlabeled, start + COPY_BATCH))])
        await conn.execute("UPDATE projects SET started_at = now() WHERE id = $1", pid)
        labelers = users[:args.labelers]
        await conn.copy_records_to_table(
            "memberships", columns=["project_id", "user_id", "role"],
            records=[(pid, owner, "owner"), *((pid, u, "labeler") for u in labelers)])
        leaves = [r["id"] for r in await conn.fetch(
            "SELECT id FROM labels WHERE project_id = $1 AND depth = 2 ORDER BY id", pid)]
        await conn.execute("VACUUM ANALYZE")
        tokens = await add_tokens(conn, [owner, *labelers])
        return Setup(pid, tokens[0], tokens[1:], leaves, boxes)
    finally:
        await conn.close()


async def wait_rebuilt(prefix: str, pid: int) -> float:
    """Wait until the server has built the project's queue in Redis (at its start)."""
    client = aioredis.Redis.from_url(REDIS_URL)
    t = time.perf_counter()
    try:
        while not await client.exists(DispatchKeys(prefix, pid).epoch):
            if time.perf_counter() - t > REBUILD_TIMEOUT_S:
                raise RuntimeError("the project's queue was not rebuilt in time")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    return time.perf_counter() - t


# -- the labelers --------------------------------------------------------------------------------

async def _pause(until: float, stopping: asyncio.Event) -> bool:
    """Sleep until `until` (wall clock); False if told to stop meanwhile."""
    try:
        await asyncio.wait_for(stopping.wait(), max(0.0, until - time.time()))
    except TimeoutError:
        return True
    return False


async def labeler(base: str, token: str, pid: int, labels: list[int], think: tuple[float, float],
                  seed: int, stopping: asyncio.Event, http: aiohttp.ClientSession, s: Samples) -> None:
    rng = random.Random(seed)
    lo, hi = think
    due = time.time() + rng.uniform(0, hi)  # spread over the first think period
    held: list[dict[str, Any]] = []
    if not await _pause(due - rng.uniform(lo, hi), stopping):
        return
    try:
        while not stopping.is_set():
            got = await _post(http, f"{base}/api/v1/projects/{pid}/tasks/next", token, {"count": 1},
                              s.lease, s.errors, "lease")
            held = got["leases"] if got else []
            if not held:
                s.empty_leases += got is not None
            thought = rng.uniform(lo, hi)
            due += thought
            if not await _pause(due, stopping):
                break
            if not held:
                continue
            lease = held[0]
            began = time.time()
            body = {"annotation": _annotation("box", lease["item"]["id"], labels, 0.0, rng),
                    "duration_ms": int(thought * 1000)}
            answer = await _post(http, f"{base}/api/v1/leases/{lease['lease_id']}/submit", token, body,
                                 s.submit, s.errors, "submit")
            s.accepted.append((began, 1 if answer else 0))
            held = []
    finally:
        if held:  # what is on screen goes back, as a closing tab gives it
            await _post(http, f"{base}/api/v1/leases/release", token,
                        {"lease_ids": [x["lease_id"] for x in held]}, [], s.errors, "release")


async def labelers(base: str, setup: Setup, think: tuple[float, float], seed: int,
                   stopping: asyncio.Event) -> Samples:
    s = Samples()
    # Below the server's keep-alive (5 s): a connection it is closing is never reused.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        await asyncio.gather(*(
            labeler(base, token, setup.pid, setup.label_ids, think, seed * 1_000_003 + n, stopping, http, s)
            for n, token in enumerate(setup.tokens)))
    return s


# -- the servers ---------------------------------------------------------------------------------

def environment(url: str, prefix: str, data_dir: Path, port: int) -> dict[str, str]:
    return server_env(url, REDIS_URL, prefix, data_dir, COLABEL_HOST="127.0.0.1", COLABEL_PORT=str(port),
                      COLABEL_ML_ENABLED="false", PYTHONPATH=str(ROOT))


def start(peer: bool, url: str, prefix: str, work: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`colabel serve` with one job worker, or (peer) this file's in-process app."""
    port = free_port()
    name = "peer" if peer else "serve"
    server_log = work / f"{name}.log"
    (work / "data").mkdir(exist_ok=True)
    env = environment(url, prefix, work / "data", port)
    if peer:
        env["COLABEL_JOB_WORKERS"] = "0"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--peer-app"]
    else:
        cmd = [sys.executable, "-m", "server", "serve", "--job-workers", "1", "--log-level", "warning"]
    with open(server_log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", server_log


def peer_app() -> None:
    """The peer's server: the app with its background work (exports included) in this process."""
    import uvicorn

    from server.app import create_app
    from server.cli import configure_logging
    from server.settings import Settings

    configure_logging()
    settings = replace(Settings.from_env().with_secret(), background_jobs=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


def worker_pids(server: int) -> list[int]:
    """The `colabel worker` children of `colabel serve`."""
    out = []
    for child in psutil.Process(server).children(recursive=True):
        try:
            if "worker" in child.cmdline():
                out.append(child.pid)
        except psutil.Error:
            continue
    return out


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


# -- one set-up ----------------------------------------------------------------------------------

async def follow_export(http: aiohttp.ClientSession, base: str, setup: Setup, timeout_s: float
                        ) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {setup.owner_token}"}
    async with http.post(f"{base}/api/v1/projects/{setup.pid}/exports", json={"format": "coco"},
                         headers=headers) as r:
        body = await r.json()
        if r.status != 202:
            raise RuntimeError(f"export refused: {r.status} {body}")
    eid = body["export"]["id"]
    deadline = time.monotonic() + timeout_s
    while True:
        await asyncio.sleep(POLL_S)
        async with http.get(f"{base}/api/v1/exports/{eid}", headers=headers) as r:
            if r.status == 200:
                got: dict[str, Any] = (await r.json())["export"]
                if got["status"] in ("done", "failed"):
                    return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"export {eid} not done after {timeout_s:.0f} s")


def window(s: Samples, lo: float, hi: float, prefix: str) -> dict[str, Any]:
    lease = [d for t, d in s.lease if lo <= t < hi]
    submit = [d for t, d in s.submit if lo <= t < hi]
    return {f"{prefix}lease_p50_ms": percentile_ms(lease, 0.50),
            f"{prefix}lease_p99_ms": percentile_ms(lease, 0.99),
            f"{prefix}lease_max_ms": percentile_ms(lease, 1.0),
            f"{prefix}submit_p50_ms": percentile_ms(submit, 0.50),
            f"{prefix}submit_p99_ms": percentile_ms(submit, 0.99),
            f"{prefix}leases": len(lease), f"{prefix}submits": len(submit)}


async def run_setup(peer: bool, url: str, prefix: str, work: Path, setup: Setup,
                    args: argparse.Namespace) -> dict[str, Any]:
    name = "peer_in_process_" if peer else ""
    proc, base, server_log = start(peer, url, prefix, work)
    try:
        await asyncio.to_thread(wait_ready, base, proc, READY_TIMEOUT_S, server_log)
        rebuilt = await wait_rebuilt(prefix, setup.pid)
        workers = [] if peer else worker_pids(proc.pid)
        if not peer and not workers:
            raise RuntimeError(f"no `colabel worker` child of the server: {server_log.read_text()[-3000:]}")
        log(f"{'peer (in-process)' if peer else 'colabel serve'} {proc.pid} ready at {base}"
            f"{'' if peer else f', worker {workers}'}; queue ready after {rebuilt:.1f} s; log {server_log}")

        stopping = asyncio.Event()
        driving = asyncio.create_task(labelers(base, setup, args.think, args.seed + peer, stopping))
        try:
            await asyncio.sleep(args.warmup)
            b0, m0 = time.time(), machine_busy_s()
            await asyncio.sleep(args.baseline)
            b1, m1 = time.time(), machine_busy_s()
            log(f"baseline window {b1 - b0:.1f} s; queueing the export")
            srv0, wrk0 = cpu_s([proc.pid]), cpu_s(workers)
            async with aiohttp.ClientSession() as http:
                done = await follow_export(http, base, setup, args.export_timeout)
            e1, m2 = time.time(), machine_busy_s()
            srv, wrk = cpu_s([proc.pid]) - srv0, cpu_s(workers) - wrk0
        finally:
            stopping.set()
            samples = await driving
    finally:
        stop_process(proc, 30)
    if done["status"] != "done":
        raise RuntimeError(f"export failed: {done}")
    export_s = e1 - b1
    job_s = (_at(done["finished_at"]) - _at(done["started_at"]))
    log(f"export {done['id']}: {done['done']} items in {export_s:.1f} s (job {job_s:.1f} s), "
        f"server CPU {srv:.1f} s, worker CPU {wrk:.1f} s")
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {
        **window(samples, b0, b1, f"{name}baseline_"),
        **window(samples, b1, e1, f"{name}during_export_"),
        f"{name}export_s": round(export_s, 2), f"{name}export_job_s": round(job_s, 2),
        f"{name}export_items": done["done"], f"{name}export_mb": round((done["size_bytes"] or 0) / 2**20, 1),
        f"{name}server_cpu_s_during_export": round(srv, 2),
        f"{name}baseline_machine_busy_cores": round(min(float(cores), (m1 - m0) / (b1 - b0)), 2),
        f"{name}during_export_machine_busy_cores": round(min(float(cores), (m2 - m1) / (e1 - b1)), 2),
        f"{name}errors": dict(samples.errors), f"{name}empty_leases": samples.empty_leases,
    }
    if not peer:
        out["worker_cpu_s_during_export"] = round(wrk, 2)
    return out


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    admin, dbname, url, prefix = await new_database()
    client = aioredis.Redis.from_url(REDIS_URL)
    work = temp_dir()
    log(f"database {dbname}, Redis prefix {prefix}, files in {work}")
    try:
        await migrate(url)
        t = time.perf_counter()
        setup = await build(url, args)
        log(f"project {setup.pid} built in {time.perf_counter() - t:.1f} s: {args.items} labeled items "
            f"({setup.boxes} boxes), {args.unlabeled} open, {args.labelers} labelers")
        out: dict[str, Any] = {"bench": "export_isolation", "items": args.items, "boxes": setup.boxes,
                               "unlabeled": args.unlabeled, "labelers": args.labelers,
                               "think_s": list(args.think), "machine_cores": os.cpu_count()}
        out.update(await run_setup(False, url, prefix, work, setup, args))
        if args.peer:
            out.update(await run_setup(True, url, prefix, work, setup, args))
        left = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                                    "AND pid <> pg_backend_pid()", dbname)
        if left:
            log(f"{left} connections to the database still open after the servers stopped")
        return out
    finally:
        await clean_up(admin, dbname, client, prefix)
        shutil.rmtree(work, ignore_errors=True)


def think_range(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(",")
    return float(lo), float(hi or lo)


if __name__ == "__main__":
    if sys.argv[1:] == ["--peer-app"]:
        peer_app()
        sys.exit(0)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--items", type=int, default=300_000, help="labeled items (the export)")
    parser.add_argument("--boxes", type=int, default=4, help="average boxes per labeled item")
    parser.add_argument("--unlabeled", type=int, default=50_000, help="open items for the labelers")
    parser.add_argument("--labelers", type=int, default=40)
    parser.add_argument("--think", type=think_range, default=(0.5, 1.5),
                        help="seconds a labeler spends on an item: LO,HI (uniform)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the baseline window")
    parser.add_argument("--baseline", type=float, default=15.0, help="seconds of the baseline window")
    parser.add_argument("--export-timeout", type=float, default=900.0)
    parser.add_argument("--no-peer", dest="peer", action="store_false",
                        help="skip the peer (export inside the serving process)")
    parser.add_argument("--seed", type=int, default=1)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
