"""Cluster benchmark: the work queue, prelabel delivery and live documents through nginx
against 1, 2 and 3 Colabel nodes, with what each operation costs.

    .venv/bin/python bench/cluster.py [--nodes 1,2,3] [--seconds 15] [--warmup 3]
                                      [--labelers 16] [--items 40000]
                                      [--rooms 10] [--clients 4] [--rate 20]

For each node count: a fresh database (migrated, dropped at the end), a Redis key prefix of
its own (deleted at the end), N `colabel serve` nodes (bench/dispatch_server.py, which counts
the statements each sends) and Debian's nginx in front of them, configured from the template
docker/nginx.conf is rendered from. Everything below goes through nginx only.

dispatch   --labelers labelers in a closed loop: lease a page of 4 classification items,
           submit the page at once (POST /api/v1/leases/submit), again; no consensus, so an
           item is one lease and one annotation.
prelabel   the same on a second project whose items all have a prediction of a ready model:
           every lease also writes the suggestion into the labeler's live document (the
           server side of ML assistance; computing predictions is Ray's, see
           bench/prelabel.py).
collab     bench/collab_fanout/driver.mjs: --rooms rooms of --clients stock y-websocket
           clients each, every client writing at --rate Hz, latency measured by the other
           clients of its room.

Per workload and node count: throughput and latency p50/p99, and the cost of one operation
(an item for dispatch and prelabel, a written update for collab): CPU of the nodes, of
Postgres and of Redis in µs, statements the nodes sent, Postgres commits and WAL bytes, and
Redis commands. Counters are read at the start and the end of the measured window (after
--warmup seconds). One JSON line on stdout; progress on stderr. docs/SCALING.md builds its
capacity model on these figures.

Needs PostgreSQL (COLABEL_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1/postgres),
Redis (COLABEL_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0), nginx and Node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.dispatch import delete_prefix  # noqa: E402
from bench.dispatch_open import (  # noqa: E402
    add_tokens,
    bench_users,
    free_port,
    start_server,
    statements,
    temp_dir,
    wait_ready,
)
from bench.pgstats import database_counters  # noqa: E402
from migrations.runner import migrate  # noqa: E402
from tests.cluster.stack import Balancer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("COLABEL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COLABEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
DRIVER = ROOT / "bench" / "collab_fanout" / "driver.mjs"
PAGE = 4
TICKS = os.sysconf("SC_CLK_TCK")

_ITEMS = """
INSERT INTO items (project_id, key, media_kind, width, height)
SELECT $1, 'img' || lpad(n::text, 7, '0') || '.png', 'image', 64, 64
FROM generate_series(1, $2::int) AS n
"""
_PROJECT = """
INSERT INTO projects (name, task_type, consensus, ml_assist, created_by, status)
VALUES ($1, $2, '{"enabled": false}', $3::jsonb, $4, 'running') RETURNING id
"""
# A ready model of version 1 and a prediction of it for every item of the project.
_MODEL = """
INSERT INTO ml_models (project_id, version, status, reason, trained_on, threshold)
VALUES ($1, 1, 'ready', 'owner', 100, 0.5)
"""
_PREDICTIONS = """
INSERT INTO ml_predictions (item_id, project_id, model_version, prelabel)
SELECT id, project_id, 1, jsonb_build_object('classes', jsonb_build_array($2::bigint),
                                             'confidence', jsonb_build_object($2::text, 0.93))
FROM items WHERE project_id = $1
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


# -- what the machine's processes spent ---------------------------------------------------------

def cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def postgres_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


@dataclass
class Snapshot:
    nodes_cpu_s: float
    postgres_cpu_s: float
    redis_cpu_s: float
    redis_commands: float
    statements: int
    by_text: Counter[str]
    pg: dict[str, float]
    at: float


class Counters:
    def __init__(self, nodes: list[subprocess.Popen[bytes]], counts: list[Path],
                 client: aioredis.Redis, url: str) -> None:
        self.nodes, self.counts, self.client, self.url = nodes, counts, client, url

    async def read(self) -> Snapshot:
        info = await self.client.info()
        sent, by_text = 0, Counter[str]()
        for proc, counts in zip(self.nodes, self.counts, strict=True):
            n, texts = statements(proc, counts)
            sent += n
            by_text.update(texts)
        conn = await asyncpg.connect(self.url)
        try:
            pg = await database_counters(conn)
        finally:
            await conn.close()
        return Snapshot(cpu_s([p.pid for p in self.nodes]), cpu_s(postgres_pids()),
                        float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
                        float(info["total_commands_processed"]), sent, by_text, pg, time.time())

    @staticmethod
    def costs(a: Snapshot, b: Snapshot, ops: int, what: str = "") -> dict[str, float | None]:
        """What one operation cost between two snapshots (and, on stderr, the statements
        that one operation sent most)."""
        if ops <= 0:
            return {}
        top = (b.by_text - a.by_text).most_common(8)
        log(f"  statements per {what or 'operation'}: "
            + "; ".join(f"{n / ops:.2f} x {text[:70]}" for text, n in top))

        def per(x: float, scale: float = 1.0) -> float:
            return round(x * scale / ops, 2)

        return {"nodes_cpu_us": per(b.nodes_cpu_s - a.nodes_cpu_s, 1e6),
                "postgres_cpu_us": per(b.postgres_cpu_s - a.postgres_cpu_s, 1e6),
                "redis_cpu_us": per(b.redis_cpu_s - a.redis_cpu_s, 1e6),
                "statements": per(b.statements - a.statements),
                "pg_commits": per(b.pg["commits"] - a.pg["commits"]),
                "pg_wal_bytes": per(b.pg["wal_bytes"] - a.pg["wal_bytes"]),
                "redis_commands": per(b.redis_commands - a.redis_commands)}


# -- the data --------------------------------------------------------------------------------

@dataclass
class Setup:
    work_pid: int
    prelabel_pid: int
    labels: dict[int, int]  # project -> its one label
    labelers: list[str]
    owner_token: str
    rooms: list[str]


async def build(url: str, labelers: int, items: int, rooms: int) -> Setup:
    conn = await asyncpg.connect(url)
    try:
        owner, users = await bench_users(conn, labelers)
        pids = {}
        projects = (("work", "multiclass", False, items), ("prelabel", "multiclass", True, items),
                    ("docs", "bbox", False, rooms))
        for name, task, ml, n in projects:
            pid = await conn.fetchval(_PROJECT, f"bench-{name}-{uuid.uuid4().hex[:6]}", task,
                                      json.dumps({"enabled": ml}), owner)
            await conn.execute("INSERT INTO memberships (project_id, user_id, role) VALUES ($1, $2, 'owner')",
                               pid, owner)
            await conn.executemany("INSERT INTO memberships (project_id, user_id, role) "
                                   "VALUES ($1, $2, 'labeler')", [(pid, u) for u in users])
            label = await conn.fetchval(
                "INSERT INTO labels (project_id, parent_key, name, name_key, position, depth) "
                "VALUES ($1, 0, 'cat', 'cat', 0, 1) RETURNING id", pid)
            await conn.execute(_ITEMS, pid, n)
            if ml:
                await conn.execute(_MODEL, pid)
                await conn.execute(_PREDICTIONS, pid, label)
            pids[name] = (pid, label)
        docs = await conn.fetch("SELECT id FROM items WHERE project_id = $1 ORDER BY id", pids["docs"][0])
        await conn.execute("VACUUM ANALYZE")
        tokens = await add_tokens(conn, [owner, *users])
        return Setup(pids["work"][0], pids["prelabel"][0], dict(pids.values()), tokens[1:], tokens[0],
                     [f"{pids['docs'][0]}/{r['id']}/{owner}" for r in docs])
    finally:
        await conn.close()


# -- the workloads ------------------------------------------------------------------------------

async def closed_loop(base: str, pid: int, tokens: list[str], label_of: dict[int, int], start: float,
                      stop: float) -> dict[str, Any]:
    """Labelers leasing and submitting pages until `stop`; samples from `start` on."""
    lease_ms: list[float] = []
    submit_ms: list[float] = []
    done = [0]
    errors: dict[str, int] = {}
    prelabeled = [0]

    async def one(http: aiohttp.ClientSession, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        while time.time() < stop:
            t = time.perf_counter()
            async with http.post(f"{base}/api/v1/projects/{pid}/tasks/next", json={"count": PAGE},
                                 headers=headers) as r:
                body = await r.json(content_type=None)
                if r.status != 200:
                    errors[f"lease {r.status}"] = errors.get(f"lease {r.status}", 0) + 1
                    await asyncio.sleep(0.1)
                    continue
            counted = time.time() >= start
            if counted:
                lease_ms.append((time.perf_counter() - t) * 1000)
            leases = body["leases"]
            if not leases:
                errors["empty"] = errors.get("empty", 0) + 1
                await asyncio.sleep(0.1)
                continue
            entries = [{"lease_id": x["lease_id"], "duration_ms": 1000,
                        "annotation": {"classes": [label_of[pid]]}} for x in leases]
            t = time.perf_counter()
            async with http.post(f"{base}/api/v1/leases/submit", json={"submissions": entries},
                                 headers=headers) as r:
                answer = await r.json(content_type=None)
            if r.status != 200:
                errors[f"submit {r.status}"] = errors.get(f"submit {r.status}", 0) + 1
                continue
            for x in answer["results"]:
                if not x["ok"]:
                    code = f"submit {x['status']} {x['error']['code']}"
                    errors[code] = errors.get(code, 0) + 1
            if time.time() >= start and counted:
                submit_ms.append((time.perf_counter() - t) * 1000)
                done[0] += sum(1 for x in answer["results"] if x["ok"])
                prelabeled[0] += sum(1 for x in leases if x.get("prelabel"))

    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        await asyncio.gather(*(one(http, tok) for tok in tokens))
    return {"items": done[0], "prelabeled": prelabeled[0], "lease_ms": lease_ms,
            "submit_ms": submit_ms, "errors": errors}


async def run_dispatch(name: str, base: str, pid: int, setup: Setup, counters: Counters,
                       args: argparse.Namespace) -> dict[str, Any]:
    start = time.time() + args.warmup
    stop = start + args.seconds
    work = asyncio.create_task(closed_loop(base, pid, setup.labelers, setup.labels, start, stop))
    await asyncio.sleep(max(0.0, start - time.time()))
    a = await counters.read()
    got = await work
    b = await counters.read()
    window = stop - start
    out: dict[str, Any] = {
        "items_per_s": round(got["items"] / window, 1),
        "lease_p50_ms": pct(got["lease_ms"], 0.5), "lease_p99_ms": pct(got["lease_ms"], 0.99),
        "submit_p50_ms": pct(got["submit_ms"], 0.5), "submit_p99_ms": pct(got["submit_ms"], 0.99),
        "errors": got["errors"], "per_item": Counters.costs(a, b, got["items"], f"{name} item")}
    if name == "prelabel":
        out["prelabeled_share"] = round(got["prelabeled"] / max(got["items"], 1), 3)
    return out


async def run_collab(front: str, setup: Setup, counters: Counters,
                     args: argparse.Namespace) -> dict[str, Any]:
    config = {"url": front.replace("http://", "ws://") + "/collab", "rooms": setup.rooms,
              "clients": args.clients, "rate": args.rate, "duration": args.seconds,
              "warmup": args.warmup, "params": {"token": setup.owner_token}}
    proc = await asyncio.create_subprocess_exec("node", str(DRIVER), json.dumps(config), cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    a = b = None
    result: dict[str, Any] = {}
    async for raw in proc.stdout:
        event = json.loads(raw)
        if event.get("event") == "measure_start":
            a = await counters.read()
        elif event.get("event") == "measure_end":
            b = await counters.read()
        elif event.get("event") == "result":
            result = event
    await proc.wait()
    if not result.get("ok") or a is None or b is None:
        raise RuntimeError(f"the collab driver failed: {result}")
    written = int(result["writes"])
    return {"delivered_per_s": result["delivered_per_s"], "written_per_s": result["offered_per_s"],
            "p50_ms": result.get("p50_ms"), "p99_ms": result.get("p99_ms"), "lost": result.get("lost"),
            "per_update_written": Counters.costs(a, b, written, "update")}


# -- one configuration ----------------------------------------------------------------------------

async def configuration(nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    dbname = f"colabel_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname
    prefix = f"bench-cluster-{secrets.token_hex(3)}:"
    work = temp_dir()
    procs: list[subprocess.Popen[bytes]] = []
    balancer: Balancer | None = None
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await migrate(url)
        setup = await build(url, args.labelers, args.items, args.rooms)
        ports = [free_port() for _ in range(nodes)]
        counts = [work / f"counts{i}" for i in range(nodes)]
        for i, port in enumerate(ports):
            data = work / "data"
            data.mkdir(exist_ok=True)
            procs.append(start_server(url, REDIS_URL, prefix, port, data, counts[i], work / f"node{i}.log"))
        for port, proc, i in zip(ports, procs, range(nodes), strict=True):
            await wait_ready(f"http://127.0.0.1:{port}", proc, work / f"node{i}.log")
        balancer = Balancer(work, ports, free_port())
        front = balancer.start().base
        counters = Counters(procs, counts, client, url)
        out: dict[str, Any] = {"nodes": nodes}
        for name, pid in (("dispatch", setup.work_pid), ("prelabel", setup.prelabel_pid)):
            out[name] = await run_dispatch(name, front, pid, setup, counters, args)
            log(f"{nodes} node(s), {name}: {out[name]}")
        out["collab"] = await run_collab(front, setup, counters, args)
        log(f"{nodes} node(s), collab: {out['collab']}")
        spread: dict[str, int] = {}
        for p in balancer.passed():
            spread[p.node] = spread.get(p.node, 0) + 1
        out["requests_by_node"] = sorted(spread.values(), reverse=True)
        return out
    finally:
        if balancer is not None:
            balancer.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()
        await delete_prefix(client, prefix)
        await client.aclose()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    configs = []
    for n in (int(x) for x in args.nodes.split(",")):
        configs.append(await configuration(n, args))
    return {"bench": "cluster", "cpu_cores": os.cpu_count(), "seconds": args.seconds,
            "labelers": args.labelers, "page": PAGE, "rooms": args.rooms, "clients": args.clients,
            "rate_hz": args.rate, "configurations": configs}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="1,2,3", help="node counts to run, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window per workload")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--labelers", type=int, default=16)
    parser.add_argument("--items", type=int, default=40_000, help="items of each work project")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4, help="clients per room")
    parser.add_argument("--rate", type=float, default=20.0, help="updates per second per client")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
