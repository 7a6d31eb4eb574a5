"""Dispatcher benchmark: labelers leasing and submitting through the real work path.

    .venv/bin/python bench/dispatch.py            closed loop: saturation (items/s)
    .venv/bin/python bench/dispatch.py --open     open loop: 2,000 labelers who think
    .venv/bin/python bench/dispatch.py --redis-only [--redis-finish s|k]   the Lua path alone

  common: [--items 500000] [--labelers N] [--seconds S] [--warmup W] [--disagree 0.2] [--ttl 600]
          [--seed 1]
  closed: [--count 9] [--processes 2] [--db-pool 32]
  open:   [--box-labelers 0] [--box-items 100000] [--drivers 2]

Each run creates its own database (migrated, dropped at the end), a running multiclass
project with consensus min 2 / max 3 / threshold 0.5, one user per labeler and the items
registered with COPY, and builds the dispatcher's Redis state under a unique key prefix
(deleted at the end). An annotation is the item's true class (item id modulo the number of
labels) or, with probability --disagree, another class. Before the measured window a warm-up
runs, and the tables the run fills are analysed, as a database in use has them.

Closed loop (default; --labelers 50, --seconds 20, --warmup 5): --processes server nodes, each
a process with the server's own services (pool, rooms, work service) and its share of the
labelers as asyncio tasks with no pause: `WorkService.hand_out` (a page of --count), then
`WorkService.submit` of the whole page (plain JSON, written into the labelers' documents; one
group-committed transaction; consensus; the queue told; events), as the HTTP handlers call
them. This is the saturation rate of the full path without HTTP.

Open loop (--open; --labelers 2000, --seconds 40, --warmup 25): a `colabel serve` process
(bench/dispatch_server.py) and --drivers processes of labelers talking HTTP to it with think
times (see bench/dispatch_open.py): a classification labeler submits a page of 4, 6 or 9 every
5-20 s with POST /api/v1/leases/submit; a box labeler (--box-labelers, on a bbox project) an
item every 20-60 s. Offered load is set by the think times, not by the server's answers.

Redis-only (--redis-only): LEASE, then at once FINISH ('s' consumes the item as a submit would;
'k' gives it back to the queue head), no Postgres in the loop, in this process.

Printed as one JSON line on stdout (progress goes to stderr). Closed loop and Redis-only:
  items_per_s                  submits stored per second (each decides or advances an item)
  leases, leases_per_s, submits, submits_per_s   counts in the measured window
  lease_p50_ms, lease_p99_ms   one `hand_out` call (Lua + Postgres, pool waits included)
  submit_p50_ms, submit_p99_ms one page's `submit` (group commit waits included)
  redis_lease_p50_ms / _p99_ms the Lua LEASE round trip inside those calls
  decided, needs_review, items_by_annotations   outcomes in Postgres at the end
  serial_leases_per_s, serial_lease_p50_ms / _p99_ms   one LEASE in flight, 3 s after the checks
  rebuild_s, work_errors, empty_lease_calls
  nodes_cpu_cores, nodes_cpu_us_per_item   CPU of the node processes
  postgres_cpu_cores, postgres_cpu_us_per_item   every Postgres process of the machine
  redis_cpu_cores, machine_busy_cores (of machine_cores), redis_evalsha_us_per_call
  pg_statements_per_item       statements the nodes' pools sent (BEGIN and COMMIT included)
  pg_commits_per_item          transactions committed in the database (each autocommitted
                               statement is one), pg_wal_bytes_per_item: WAL written
Open loop:
  offered_items_per_s, achieved_items_per_s   items due in the window / items stored in it
  lease_p50_ms, lease_p99_ms, page_submit_p50_ms, page_submit_p99_ms   HTTP round trips seen by
                               the labelers (classification); box_lease_p99_ms, box_submit_*
  late_submits, max_late_s     submits that could only start > 1 s after they were due
  errors, dropped              failed requests or refused leases by cause; dropped = errors + late
  server_cpu_us_per_item, server_cpu_cores, postgres_cpu_*, redis_cpu_cores, drivers_cpu_cores,
  pg_statements_per_item (the server's pools), pg_commits_per_item, pg_wal_bytes_per_item
  active_leases_left           leases still active at the end (a give-back refused under overload)
Invariants (all modes; each true when it holds), checked in Postgres and Redis at the end:
    no_duplicate_pairs           no (item, user) twice in leases or annotations, and Redis never
                                 granted a pair Postgres already had
    annotations_within_target    per item, annotations <= coalesce(target, min) and <= max
    nothing_after_decision       decided items have exactly `target` annotations, no lease created
                                 after their last annotation and no active lease
    redis_matches_postgres       Redis's active leases equal Postgres's (none left after a closed
                                 loop's drain) and every touched open item has the same
                                 target/active/done counts and queue membership in both
    ready_holds_no_closed_item   the Redis queue (ready and fresh) holds no labeled or
                                 needs_review item
    every_complete_item_decided  no open item has as many annotations as its target
  In Redis-only mode: no_duplicate_pairs (tracked in this process), annotations_within_target
  (with 's', leases per item <= target; with 'k', submits per item <= target) and
  no_active_lease_left.
Needs PostgreSQL (COLABEL_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres)
and Redis (COLABEL_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dispatch_open  # noqa: E402
from bench.pgstats import StatementCounter, database_counters  # noqa: E402
from migrations.runner import migrate  # noqa: E402
from server.accounts.roles import Role  # noqa: E402
from server.errors import ApiError  # noqa: E402
from server.projects.projects import ProjectAccess  # noqa: E402
from server.services import Services, init_connection  # noqa: E402
from server.settings import Settings  # noqa: E402
from server.work.errors import WorkError  # noqa: E402
from server.work.queue import Dispatcher, LeaseBatch  # noqa: E402
from server.work.service import Asked, Submission, WorkService  # noqa: E402

PG_ADMIN_URL = os.environ.get("COLABEL_BENCH_DATABASE_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COLABEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CONSENSUS = {"enabled": True, "min": 2, "max": 3, "threshold": 0.5}
LABELS = ("cat", "dog", "bird", "fish", "horse")
COPY_BATCH = 100_000
CHECK_BATCH = 5_000
PROGRESS_S = 5.0
SERIAL_S = 3.0
DRAIN_TIMEOUT_S = 30.0
MEASURE_GAP_S = 1.0  # between the warm-up and the measured window
NODE_START_S = 8.0  # time for the node processes to import, connect and load scripts
SERIAL_USER_BASE = 1_000_000_000
OPEN_TARGET_LEASE_P99_MS = 10
OPEN_TARGET_SUBMIT_P99_MS = 25
TARGET_ITEMS_PER_S = 3000   # closed loop, full path
TARGET_LEASES_PER_S = 5000  # Redis-only
TARGET_P99_MS = 5
CLOSED = ("labeled", "needs_review")


def log(msg: str) -> None:
    print(f"[dispatch] {msg}", file=sys.stderr, flush=True)


class TimedDispatcher(Dispatcher):
    """The real dispatcher, recording how long each Lua lease round trip takes."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_s: float) -> None:
        super().__init__(client, prefix, ttl_s)
        self.lease_s: list[float] = []

    async def lease(self, project_id: int, user_id: int, count: int,
                    now_ms: int | None = None) -> LeaseBatch:
        started = time.perf_counter()
        try:
            return await super().lease(project_id, user_id, count, now_ms)
        finally:
            self.lease_s.append(time.perf_counter() - started)


@dataclass
class Stats:
    leases: int = 0
    lease_calls: int = 0
    empty_calls: int = 0
    refused: int = 0            # granted by Redis, refused by Postgres's (item, user) index
    submits: int = 0
    lease_s: list[float] = field(default_factory=list)
    submit_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    pairs: set[tuple[int, int]] = field(default_factory=set)   # Redis-only mode
    redis_double_grants: int = 0                               # Redis-only mode


@dataclass
class Setup:
    pid: int
    project: asyncpg.Record
    user_ids: list[int]
    label_ids: list[int]


def per(total: float, n: int) -> float | None:
    return round(total / n, 2) if n else None


def percentile_ms(samples: list[float], p: float) -> float | None:
    """Nearest-rank percentile of durations in seconds, in milliseconds."""
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)] * 1000, 3)


async def create_fixture(conn: asyncpg.Connection, items: int, labelers: int,
                         task_type: str = "multiclass") -> Setup:
    """Users, a running project with labels and members, and `items` items (COPY)."""
    tag = uuid.uuid4().hex[:8]
    await conn.copy_records_to_table(
        "users", columns=["email", "name", "password_hash"],
        records=[(f"labeler{i}-{tag}@bench", f"labeler {i}", "x") for i in range(labelers)])
    user_ids = [r["id"] for r in await conn.fetch(
        "SELECT id FROM users WHERE email LIKE $1 ORDER BY id", f"%-{tag}@bench")]
    pid: int = await conn.fetchval(
        "INSERT INTO projects (name, task_type, status, consensus, ml_assist, created_by, started_at) "
        "VALUES ($1, $2, 'running', $3, $4, $5, now()) RETURNING id",
        f"dispatch-{tag}", task_type, CONSENSUS, {"enabled": False}, user_ids[0])
    label_ids = [await conn.fetchval(
        "INSERT INTO labels (project_id, name, name_key, position, depth) VALUES ($1, $2, $2, $3, 1) "
        "RETURNING id", pid, name, pos) for pos, name in enumerate(LABELS)]
    await conn.copy_records_to_table(
        "memberships", columns=["project_id", "user_id", "role"],
        records=[(pid, uid, "labeler") for uid in user_ids])
    for start in range(0, items, COPY_BATCH):
        await conn.copy_records_to_table(
            "items", columns=["project_id", "key", "media_kind"],
            records=[(pid, f"d{i % 1000:03d}/img{i:07d}.jpg", "image")
                     for i in range(start, min(items, start + COPY_BATCH))])
    # Not leases and annotations: analysed while still empty, the planner would scan them
    # whole for a lookup by item until autovacuum analyses them again, a minute or more into
    # the run (a database in use has them analysed with their real size).
    await conn.execute("ANALYZE items, users, memberships, labels, projects")
    project = await conn.fetchrow("SELECT * FROM projects WHERE id = $1", pid)
    return Setup(pid, project, user_ids, label_ids)


def choose_label(item_id: int, label_ids: list[int], disagree: float, rng: random.Random) -> int:
    """The item's true class, or with probability `disagree` another one."""
    true = label_ids[item_id % len(label_ids)]
    if rng.random() < disagree:
        return rng.choice([x for x in label_ids if x != true])
    return true


def lease_row(lease: dict[str, Any], pid: int, uid: int) -> dict[str, Any]:
    """What the work service reads of a lease row (the HTTP handler looks it up by id)."""
    return {"id": lease["lease_id"], "project_id": pid, "item_id": lease["item"]["id"], "user_id": uid,
            "state": "active"}


async def labeler(index: int, setup: Setup, args: argparse.Namespace, work: WorkService,
                  access: ProjectAccess, stop: asyncio.Event, stats: Stats) -> None:
    """Ask for a page, submit it as a page, until told to stop; the work in hand is finished
    first. Both calls are the work service's own, as the HTTP handlers make them."""
    rng = random.Random(args.seed * 100_003 + index)
    uid, pid = setup.user_ids[index], setup.pid
    while not stop.is_set():
        started = time.perf_counter()
        try:
            handed = await work.hand_out(access, uid, args.count, [])
        except WorkError as exc:
            stats.errors[f"lease:{exc.code}"] += 1
            continue
        stats.lease_s.append(time.perf_counter() - started)
        stats.lease_calls += 1
        stats.leases += len(handed)
        if not handed:
            stats.empty_calls += 1
            await asyncio.sleep(0.05)
            continue
        asked = [Asked(Submission(x["lease_id"], {"classes": [choose_label(
            x["item"]["id"], setup.label_ids, args.disagree, rng)]}, None, rng.randint(1000, 5000)),
            lease_row(x, pid, uid), access) for x in handed]
        started = time.perf_counter()
        answers = await work.submit(uid, asked)
        stats.submit_s.append(time.perf_counter() - started)
        for answer in answers:
            if isinstance(answer, ApiError):
                stats.errors[f"submit:{answer.code}"] += 1
            else:
                stats.submits += 1


async def redis_labeler(index: int, setup: Setup, args: argparse.Namespace, dispatcher: TimedDispatcher,
                        stop: asyncio.Event, stats: Stats) -> None:
    """Lua only: LEASE, then FINISH at once (no Postgres)."""
    uid, pid = setup.user_ids[index], setup.pid
    while not stop.is_set():
        batch = await dispatcher.lease(pid, uid, args.count)
        stats.lease_calls += 1
        stats.leases += len(batch.leases)
        if not batch.leases:
            stats.empty_calls += 1
            await asyncio.sleep(0.05)
            continue
        for lease in batch.leases:
            pair = (lease.item_id, uid)
            if pair in stats.pairs:
                stats.redis_double_grants += 1
            stats.pairs.add(pair)
            await dispatcher.finish(pid, lease.lease_id, args.redis_finish)
            stats.submits += 1


async def serial_phase(dispatcher: Dispatcher, pid: int, seconds: float) -> dict[str, Any]:
    """One call in flight: LEASE (timed) then FINISH 's', each call as a new labeler id."""
    samples: list[float] = []
    granted = 0
    user = SERIAL_USER_BASE
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        t = time.perf_counter()
        batch = await Dispatcher.lease(dispatcher, pid, user, 1)
        samples.append(time.perf_counter() - t)
        granted += len(batch.leases)
        for lease in batch.leases:
            await dispatcher.finish(pid, lease.lease_id, "s")
        user += 1
    wall = time.perf_counter() - started
    return {"serial_leases_per_s": round(granted / wall),
            "serial_lease_p50_ms": percentile_ms(samples, 0.50),
            "serial_lease_p99_ms": percentile_ms(samples, 0.99)}


async def drive(n: int, make: Callable[[int], Coroutine[Any, Any, None]], seconds: float,
                stats: Stats, stop: asyncio.Event) -> float:
    """Run n labelers for `seconds`, then let them drain; return the wall time."""
    started = time.perf_counter()
    tasks = [asyncio.create_task(make(i)) for i in range(n)]
    try:
        deadline = started + seconds
        while (left := deadline - time.perf_counter()) > PROGRESS_S:
            await asyncio.sleep(PROGRESS_S)
            log(f"{time.perf_counter() - started:5.1f} s: {stats.leases} leases, {stats.submits} finished")
        await asyncio.sleep(max(0.0, left))
        stop.set()
        await asyncio.gather(*tasks)
        return time.perf_counter() - started
    finally:
        # On an error or Ctrl-C no labeler may outlive the run (and write after the cleanup).
        # redis-py can swallow a task's cancellation mid-command, so `stop` ends the loops too.
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)


def postgres_busy() -> dict[int, float]:
    """CPU seconds used so far by each Postgres process of the machine (backends, WAL
    writer, checkpointer): the database's whole cost, whichever node a backend serves."""
    out: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    out[int(entry.name)] = processes_busy_s([int(entry.name)])
            except OSError:
                continue
    return out


def postgres_used(start: dict[int, float], *ends: dict[int, float]) -> float:
    """CPU seconds Postgres used between `start` and the latest of `ends` (snapshots taken
    while backends that have exited since were still there)."""
    last: dict[int, float] = {}
    for end in ends:
        for pid, busy in end.items():
            last[pid] = max(busy, last.get(pid, 0.0))
    return sum(busy - start.get(pid, 0.0) for pid, busy in last.items())


async def node(url: str, prefix: str, args: argparse.Namespace, pid: int, user_ids: list[int],
               label_ids: list[int], first: int, count: int, start_at: float) -> dict[str, Any]:
    """One server node: its own services (pool, rooms, work service, statements counted)
    and labelers first .. first+count-1, from `start_at` (wall clock) for `args.seconds`."""
    counter = StatementCounter()
    counter.install()
    services = await Services.open(Settings(
        database_url=url, redis_url=REDIS_URL, redis_prefix=prefix, secret_key="bench",
        db_pool_min=args.db_pool, db_pool_max=args.db_pool, lease_ttl_s=int(args.ttl),
        background_jobs=False))
    try:
        await services.start()
        dispatcher = TimedDispatcher(services.redis, prefix, args.ttl)
        services.work.dispatcher = dispatcher
        project = await services.db.fetchrow("SELECT * FROM projects WHERE id = $1", pid)
        setup = Setup(pid, project, user_ids, label_ids)
        access = ProjectAccess(project, Role.LABELER, True)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        # Warm-up: the tables fill and the planner gets statistics (see run()); not measured.
        warm, warm_stop = Stats(), asyncio.Event()
        await drive(count, lambda i: labeler(first + i, setup, args, services.work, access,
                                             warm_stop, warm), args.warmup, warm, warm_stop)
        await asyncio.sleep(max(0.0, start_at + args.warmup + MEASURE_GAP_S - time.time()))
        stats, stop = Stats(), asyncio.Event()
        cpu0, statements0 = time.process_time(), counter.statements
        wall = await drive(count, lambda i: labeler(first + i, setup, args, services.work, access,
                                                     stop, stats), args.seconds, stats, stop)
        return {"wall": wall, "cpu": time.process_time() - cpu0, "postgres": postgres_busy(),
                "statements": counter.statements - statements0, "leases": stats.leases,
                "lease_calls": stats.lease_calls, "empty_calls": stats.empty_calls,
                "submits": stats.submits, "lease_s": stats.lease_s, "submit_s": stats.submit_s,
                "errors": dict(stats.errors), "redis_lease_s": dispatcher.lease_s}
    finally:
        await services.close()


def run_node(*a: Any) -> dict[str, Any]:
    """`node` in a process of its own (the entry point of each worker process)."""
    import uvloop

    return uvloop.run(node(*a))


async def run_nodes(args: argparse.Namespace, url: str, prefix: str, setup: Setup,
                    start_at: float) -> list[dict[str, Any]]:
    """The closed loop on `args.processes` nodes, each a process with its share of labelers."""
    n = args.processes
    shares = [args.labelers // n + (1 if i < args.labelers % n else 0) for i in range(n)]
    starts = [sum(shares[:i]) for i in range(n)]
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(await asyncio.gather(*(
            loop.run_in_executor(pool, run_node, url, prefix, args, setup.pid, setup.user_ids,
                                 setup.label_ids, starts[i], shares[i], start_at)
            for i in range(n) if shares[i])))


async def check_invariants(conn: asyncpg.Connection, dispatcher: Dispatcher, pid: int,
                           stats: Stats, drained: bool = True) -> dict[str, bool]:
    """The end-of-run checks described in the module docstring (all must be true). With
    `drained` no lease may be left active; otherwise (labelers whose give-back failed) those
    left must be the same in both stores."""
    low, high = int(CONSENSUS["min"]), int(CONSENSUS["max"])
    dup_leases = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM leases WHERE project_id = $1 "
        "GROUP BY item_id, user_id HAVING count(*) > 1) d", pid)
    dup_annotations = await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM annotations WHERE project_id = $1 "
        "GROUP BY item_id, user_id HAVING count(*) > 1) d", pid)
    over_target = await conn.fetchval(
        "SELECT count(*) FROM (SELECT a.item_id, count(*) AS n, min(coalesce(i.target, $2)) AS t "
        "FROM annotations a JOIN items i ON i.id = a.item_id WHERE a.project_id = $1 "
        "GROUP BY a.item_id) x WHERE n > t OR n > $3", pid, low, high)
    closed_wrong_count = await conn.fetchval(
        "SELECT count(*) FROM items i WHERE i.project_id = $1 AND i.status IN ('labeled', 'needs_review') "
        "AND (SELECT count(*) FROM annotations a WHERE a.item_id = i.id) <> coalesce(i.target, $2)",
        pid, low)
    late_leases = await conn.fetchval(
        "SELECT count(*) FROM leases l JOIN items i ON i.id = l.item_id "
        "WHERE i.project_id = $1 AND i.status IN ('labeled', 'needs_review') AND (l.state = 'active' "
        "OR l.created_at > (SELECT max(a.created_at) FROM annotations a WHERE a.item_id = i.id))", pid)
    pg_active = await conn.fetchval(
        "SELECT count(*) FROM leases WHERE project_id = $1 AND state = 'active'", pid)

    keys = dispatcher.keys(pid)
    client = dispatcher.client
    redis_active = await client.zcard(keys.leases)
    members: list[Any] = await client.zrange(keys.ready, 0, -1)
    members += await client.zrange(keys.fresh, 0, -1)
    ready = {int(x) for x in members}  # the whole queue: held-before and fresh items
    closed_ids = [r["id"] for r in await conn.fetch(
        "SELECT id FROM items WHERE project_id = $1 AND status IN ('labeled', 'needs_review')", pid)]
    closed_in_ready = sum(1 for i in closed_ids if i in ready)

    # Every open item that has been touched: Redis's t/a/d and queue membership against Postgres.
    touched = await conn.fetch(
        "SELECT i.id, coalesce(i.target, $2) AS t, "
        "(SELECT count(*) FROM leases l WHERE l.item_id = i.id AND l.state = 'active') AS a, "
        "(SELECT count(*) FROM annotations n WHERE n.item_id = i.id) AS d "
        "FROM items i WHERE i.project_id = $1 AND i.status IN ('unlabeled', 'in_progress') "
        "AND EXISTS (SELECT 1 FROM leases l WHERE l.item_id = i.id)", pid, low)
    mismatched: list[dict[str, Any]] = []
    mismatches = stranded = undecided_at_target = 0
    for start in range(0, len(touched), CHECK_BATCH):
        rows = touched[start:start + CHECK_BATCH]
        async with client.pipeline(transaction=False) as pipe:
            for r in rows:
                pipe.hmget(keys.item(r["id"]), "t", "a", "d")
            states = await pipe.execute()
        for r, (t, a, d) in zip(rows, states, strict=True):
            got = (int(t or low), int(a or 0), int(d or 0))
            want = (r["t"], r["a"], r["d"])
            should_queue = r["a"] + r["d"] < r["t"]
            if r["d"] >= r["t"]:
                undecided_at_target += 1  # every annotation is in, yet nobody decided it
            if should_queue and r["id"] not in ready:
                stranded += 1
            if got != want or should_queue != (r["id"] in ready):
                mismatches += 1
                if len(mismatched) < 5:
                    mismatched.append({"item": r["id"], "redis_tad": got, "postgres_tad": want,
                                       "in_ready": r["id"] in ready})
    details = {
        "duplicate_lease_pairs": dup_leases, "duplicate_annotation_pairs": dup_annotations,
        "redis_grants_refused_by_postgres": stats.refused, "items_over_target": over_target,
        "closed_items_with_wrong_count": closed_wrong_count, "leases_after_decision": late_leases,
        "active_leases_postgres": pg_active, "active_leases_redis": redis_active,
        "open_items_checked": len(touched), "redis_state_mismatches": mismatches,
        "stranded_open_items": stranded, "closed_items_in_ready": closed_in_ready,
        "open_items_with_all_annotations": undecided_at_target,
    }
    log(f"invariant details: {json.dumps(details)}")
    if mismatched:
        log(f"first Redis/Postgres mismatches: {json.dumps(mismatched)}")
    return {
        "no_duplicate_pairs": dup_leases == 0 and dup_annotations == 0 and stats.refused == 0,
        "annotations_within_target": over_target == 0,
        "nothing_after_decision": closed_wrong_count == 0 and late_leases == 0,
        "redis_matches_postgres": pg_active == redis_active and (pg_active == 0 or not drained)
                                  and mismatches == 0 and stranded == 0,
        "ready_holds_no_closed_item": closed_in_ready == 0,
        "every_complete_item_decided": undecided_at_target == 0,
    }


async def check_redis_only(dispatcher: Dispatcher, pid: int, stats: Stats,
                           finish: str) -> dict[str, bool]:
    """Redis-only mode: what can be checked without Postgres in the loop."""
    keys = dispatcher.keys(pid)
    client = dispatcher.client
    counts = Counter(item for item, _ in stats.pairs)
    over = 0
    items = sorted(counts)
    for start in range(0, len(items), CHECK_BATCH):
        batch = items[start:start + CHECK_BATCH]
        async with client.pipeline(transaction=False) as pipe:
            for iid in batch:
                pipe.hmget(keys.item(iid), "t", "d")
            states = await pipe.execute()
        for iid, (t, d) in zip(batch, states, strict=True):
            limit = int(t or CONSENSUS["min"])
            # 's' consumes a slot per labeler; 'k' returns it, so only `d` is bounded then.
            over += (counts[iid] if finish == "s" else int(d or 0)) > limit
    return {
        "no_duplicate_pairs": stats.redis_double_grants == 0,
        "annotations_within_target": over == 0,
        "no_active_lease_left": await client.zcard(keys.leases) == 0,
    }


def machine_busy_s() -> float:
    """CPU seconds (all cores) the whole machine has spent busy, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return math.nan
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def processes_busy_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the given live processes have used so far."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2:].split()
        total += int(rest[11]) + int(rest[12])
    return total / os.sysconf("SC_CLK_TCK")


async def redis_counters(client: aioredis.Redis) -> tuple[float, int, int]:
    """(Redis main-thread CPU seconds, EVALSHA calls, EVALSHA microseconds) so far."""
    cpu = await client.info("cpu")
    cmds = await client.info("commandstats")
    ev = cmds.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    busy = float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])
    return busy, int(ev["calls"]), int(ev["usec"])


async def delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    batch: list[Any] = []
    async for key in client.scan_iter(match=prefix + "*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            await client.unlink(*batch)
            batch = []
    if batch:
        await client.unlink(*batch)


async def new_database() -> tuple[asyncpg.Connection, str, str, str]:
    """A database and a Redis key prefix of the run's own: (admin connection, database name,
    its URL, prefix); `clean_up` removes both."""
    dbname = f"colabel_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname
    return admin, dbname, url, f"colabel-bench-{uuid.uuid4().hex[:8]}:"


async def clean_up(admin: asyncpg.Connection, dbname: str, client: aioredis.Redis, prefix: str) -> None:
    try:
        await delete_prefix(client, prefix)
        await client.aclose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    admin, dbname, url, prefix = await new_database()
    client = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
        REDIS_URL, max_connections=args.labelers + 8, timeout=None))
    try:
        await migrate(url)
        conn = await asyncpg.connect(url)
        await init_connection(conn)
        t = time.perf_counter()
        setup = await create_fixture(conn, args.items, args.labelers)
        log(f"{args.items} items, {args.labelers} labelers registered in {time.perf_counter() - t:.1f} s")

        dispatcher = TimedDispatcher(client, prefix, args.ttl)
        t = time.perf_counter()
        queued = await dispatcher.rebuild(conn, setup.pid, int(CONSENSUS["min"]))
        rebuild_s = time.perf_counter() - t
        log(f"rebuilt the Redis state in {rebuild_s:.2f} s ({queued} queued)")
        assert queued == args.items, queued

        stats = Stats()
        stop = asyncio.Event()
        await asyncio.sleep(1.0)  # statistics of the set-up flushed
        nodes_cpu = statements = 0.0
        nodes: list[dict[str, Any]] = []
        if args.redis_only:
            pgc0 = await database_counters(conn)
            machine0, redis0, pg0 = machine_busy_s(), await redis_counters(client), postgres_busy()
            cpu0 = time.process_time()
            wall = await drive(args.labelers,
                               lambda i: redis_labeler(i, setup, args, dispatcher, stop, stats),
                               args.seconds, stats, stop)
            stats.lease_s = dispatcher.lease_s
            nodes_cpu = time.process_time() - cpu0
        else:
            # The nodes start together at `start_at`, once their processes are up; the
            # counters are read then.
            start_at = time.time() + NODE_START_S
            running = asyncio.create_task(run_nodes(args, url, prefix, setup, start_at))
            await asyncio.sleep(max(0.0, start_at + args.warmup - time.time()))
            await analyse_hot_tables(conn)
            await asyncio.sleep(max(0.0, start_at + args.warmup + MEASURE_GAP_S - time.time()))
            pgc0 = await database_counters(conn)
            machine0, redis0, pg0 = machine_busy_s(), await redis_counters(client), postgres_busy()
            nodes = await running
            wall = max(n["wall"] for n in nodes)
            for n in nodes:
                stats.leases += n["leases"]
                stats.lease_calls += n["lease_calls"]
                stats.empty_calls += n["empty_calls"]
                stats.submits += n["submits"]
                stats.lease_s += n["lease_s"]
                stats.submit_s += n["submit_s"]
                stats.errors.update(n["errors"])
                dispatcher.lease_s += n["redis_lease_s"]
                nodes_cpu += n["cpu"]
                statements += n["statements"]
        machine = machine_busy_s() - machine0
        pg = postgres_used(pg0, postgres_busy(), *(n["postgres"] for n in nodes))
        redis1 = await redis_counters(client)
        ev_calls, ev_usec = redis1[1] - redis0[1], redis1[2] - redis0[2]
        await asyncio.sleep(1.0)
        pgc = {k: v - pgc0[k] for k, v in (await database_counters(conn)).items()}
        log(f"done: {stats.leases} leases in {wall:.1f} s; checking invariants")

        if args.redis_only:
            invariants = await check_redis_only(dispatcher, setup.pid, stats, args.redis_finish)
            decided = needs_review = None
            by_count: dict[str, int] | None = None
        else:
            invariants = await check_invariants(conn, dispatcher, setup.pid, stats)
            decided = await conn.fetchval(
                "SELECT count(*) FROM items WHERE project_id = $1 AND status = 'labeled'", setup.pid)
            needs_review = await conn.fetchval(
                "SELECT count(*) FROM items WHERE project_id = $1 AND status = 'needs_review'", setup.pid)
            by_count = {str(r["n"]): r["items"] for r in await conn.fetch(
                "SELECT n, count(*) AS items FROM (SELECT count(*) AS n FROM annotations "
                "WHERE project_id = $1 GROUP BY item_id) c GROUP BY n ORDER BY n", setup.pid)}
        await conn.close()
        # After the checks: this phase writes Redis state Postgres knows nothing about.
        serial = await serial_phase(dispatcher, setup.pid, SERIAL_S)
        log(f"serial phase: {json.dumps(serial)}")
        return {
            "bench": "dispatch", "mode": "redis-only" if args.redis_only else "full",
            "items": args.items, "labelers": args.labelers, "count": args.count,
            "disagree": args.disagree, "seconds": round(wall, 3),
            "leases": stats.leases, "leases_per_s": round(stats.leases / wall),
            "lease_p50_ms": percentile_ms(stats.lease_s, 0.50),
            "lease_p99_ms": percentile_ms(stats.lease_s, 0.99),
            "redis_lease_p50_ms": percentile_ms(dispatcher.lease_s, 0.50),
            "redis_lease_p99_ms": percentile_ms(dispatcher.lease_s, 0.99),
            "submits": stats.submits, "submits_per_s": round(stats.submits / wall),
            "submit_p50_ms": percentile_ms(stats.submit_s, 0.50),
            "submit_p99_ms": percentile_ms(stats.submit_s, 0.99),
            "empty_lease_calls": stats.empty_calls,
            "decided": decided, "needs_review": needs_review,
            "items_by_annotations": by_count,
            "rebuild_s": round(rebuild_s, 3), "work_errors": dict(stats.errors),
            **serial,
            "processes": 1 if args.redis_only else args.processes,
            "nodes_cpu_cores": round(nodes_cpu / wall, 2),
            "redis_cpu_cores": round((redis1[0] - redis0[0]) / wall, 2),
            "postgres_cpu_cores": round(pg / wall, 2),
            "machine_busy_cores": round(machine / wall, 2), "machine_cores": os.cpu_count(),
            "redis_evalsha_us_per_call": round(ev_usec / ev_calls, 1) if ev_calls else None,
            "pg_statements_per_item": per(statements, stats.submits),
            "pg_commits_per_item": per(pgc["commits"], stats.submits),
            "pg_wal_bytes_per_item": per(pgc["wal_bytes"], stats.submits),
            "items_per_s": round(stats.submits / wall),
            "nodes_cpu_us_per_item": per(nodes_cpu * 1e6, stats.submits),
            "postgres_cpu_us_per_item": per(pg * 1e6, stats.submits),
            "invariants": invariants,
            **({"target_leases_per_s": TARGET_LEASES_PER_S, "target_p99_ms": TARGET_P99_MS}
               if args.redis_only else {"target_items_per_s": TARGET_ITEMS_PER_S}),
        }
    finally:
        await clean_up(admin, dbname, client, prefix)


async def analyse_hot_tables(conn: asyncpg.Connection) -> None:
    """Statistics for the tables the run fills, as a database in use has them: analysed
    empty (or never), the planner would scan them whole for lookups until autovacuum
    analyses them a minute or more into the run."""
    await conn.execute("ANALYZE leases, annotations, doc_updates, doc_snapshots, items")


def in_window(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [v for t, v in samples if start <= t < end]


async def run_open(args: argparse.Namespace) -> dict[str, Any]:
    """The open-loop mode (bench/dispatch_open.py): a server process, labelers who think."""
    admin, dbname, url, prefix = await new_database()
    client = aioredis.Redis.from_url(REDIS_URL)
    work_dir = dispatch_open.temp_dir()
    server: Any = None
    try:
        await migrate(url)
        conn = await asyncpg.connect(url)
        await init_connection(conn)
        dispatcher = Dispatcher(client, prefix, args.ttl)
        setups: dict[str, Setup] = {"classify": await create_fixture(conn, args.items, args.labelers)}
        if args.box_labelers:
            setups["box"] = await create_fixture(conn, args.box_items, args.box_labelers, "bbox")
        labelers: list[dispatch_open.Labeler] = []
        for kind, setup in setups.items():
            tokens = await dispatch_open.add_tokens(conn, setup.user_ids)
            labelers += [dispatch_open.Labeler(uid, tok, kind)
                         for uid, tok in zip(setup.user_ids, tokens, strict=True)]
            await dispatcher.rebuild(conn, setup.pid, int(CONSENSUS["min"]))
        log(f"{len(labelers)} labelers on {', '.join(f'{k} ({s.pid})' for k, s in setups.items())}")

        port = dispatch_open.free_port()
        base = f"http://127.0.0.1:{port}"
        counts, server_log = work_dir / "counts.json", work_dir / "server.log"
        server = dispatch_open.start_server(url, REDIS_URL, prefix, port, work_dir, counts, server_log,
                                            args.server_workers)
        await dispatch_open.wait_ready(base, server, server_log)
        log(f"server {server.pid} ready at {base}; log {server_log}")

        start = time.time() + dispatch_open.DRIVER_START_S
        window = (start + args.warmup, start + args.warmup + args.seconds)
        stop = window[1]
        projects = {k: (s.pid, s.label_ids) for k, s in setups.items()}
        running = asyncio.create_task(dispatch_open.run_labelers(base, labelers, projects, args, start, stop))
        await asyncio.sleep(max(0.0, window[0] - MEASURE_GAP_S - time.time()))
        await analyse_hot_tables(conn)
        await asyncio.sleep(max(0.0, window[0] - time.time()))
        t0 = time.perf_counter()
        pgc0, (st0, by0) = await database_counters(conn), dispatch_open.statements(server, counts)
        serving = dispatch_open.server_processes(server)
        srv0, machine0, redis0, pg0 = (processes_busy_s(serving), machine_busy_s(),
                                       await redis_counters(client), postgres_busy())
        log(f"measuring for {args.seconds:.0f} s")
        await asyncio.sleep(max(0.0, window[1] - time.time()))
        wall = time.perf_counter() - t0
        srv = processes_busy_s(serving) - srv0
        machine, pg = machine_busy_s() - machine0, postgres_used(pg0, postgres_busy())
        redis1 = await redis_counters(client)
        st1, by1 = dispatch_open.statements(server, counts)
        statements, by_text = st1 - st0, by1 - by0
        samples = await running
        await asyncio.sleep(1.0)
        pgc = {k: v - pgc0[k] for k, v in (await database_counters(conn)).items()}
        # Leases whose give-back failed (an overloaded server answers 503) stay active: both
        # stores must still agree on them.
        invariants = {kind: await check_invariants(conn, dispatcher, s.pid, Stats(), drained=False)
                      for kind, s in setups.items()}
        left = await conn.fetchval("SELECT count(*) FROM leases WHERE state = 'active'")
        await conn.close()
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(30)
        await clean_up(admin, dbname, client, prefix)

    lo, hi = window
    items = sum(int(n) for t, n in samples.accepted if lo <= t < hi)
    log("statements per item, most frequent first: " + json.dumps(
        {text: per(n, items) for text, n in by_text.most_common(25)}, indent=1))
    offered = sum(int(n) for t, n in samples.offered if lo <= t < hi)
    lease, submit = in_window(samples.lease, lo, hi), in_window(samples.submit, lo, hi)
    box_lease, box_submit = in_window(samples.box_lease, lo, hi), in_window(samples.box_submit, lo, hi)
    late = in_window(samples.late, lo, hi)
    return {
        "bench": "dispatch", "mode": "open", "items": args.items, "labelers": args.labelers,
        "box_labelers": args.box_labelers, "drivers": args.drivers,
        "server_workers": args.server_workers, "seconds": round(wall, 1),
        "offered_items_per_s": round(offered / wall, 1), "achieved_items_per_s": round(items / wall, 1),
        "lease_calls": len(lease), "lease_p50_ms": percentile_ms(lease, 0.50),
        "lease_p99_ms": percentile_ms(lease, 0.99),
        "page_submits": len(submit), "page_submit_p50_ms": percentile_ms(submit, 0.50),
        "page_submit_p99_ms": percentile_ms(submit, 0.99),
        "box_lease_p99_ms": percentile_ms(box_lease, 0.99),
        "box_submit_p50_ms": percentile_ms(box_submit, 0.50),
        "box_submit_p99_ms": percentile_ms(box_submit, 0.99),
        "late_submits": len(late), "max_late_s": round(max(late), 2) if late else 0.0,
        "errors": dict(samples.errors), "empty_leases": samples.empty_leases,
        "active_leases_left": left,
        "dropped": sum(samples.errors.values()) + len(late),
        "pg_statements_per_item": per(statements, items), "pg_commits_per_item": per(pgc["commits"], items),
        "pg_wal_bytes_per_item": per(pgc["wal_bytes"], items),
        "server_cpu_us_per_item": per(srv * 1e6, items), "server_cpu_cores": round(srv / wall, 2),
        "postgres_cpu_us_per_item": per(pg * 1e6, items), "postgres_cpu_cores": round(pg / wall, 2),
        "redis_cpu_cores": round((redis1[0] - redis0[0]) / wall, 2),
        "drivers_cpu_cores": round(samples.cpu_s / (args.warmup + args.seconds), 2),
        "machine_busy_cores": round(machine / wall, 2), "machine_cores": os.cpu_count(),
        "invariants": {f"{kind}.{name}": ok for kind, checks in invariants.items()
                       for name, ok in checks.items()},
        "target_lease_p99_ms": OPEN_TARGET_LEASE_P99_MS,
        "target_page_submit_p99_ms": OPEN_TARGET_SUBMIT_P99_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=500_000)
    parser.add_argument("--labelers", type=int, default=None,
                        help="default: 50 closed loop (no pause), 2,000 open loop (who think)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="measured window (default: 20 closed loop, 40 open loop)")
    parser.add_argument("--disagree", type=float, default=0.2,
                        help="probability that a labeler picks a class other than the true one")
    parser.add_argument("--count", type=int, default=9,
                        help="closed loop: items asked for per lease call (a grid page)")
    parser.add_argument("--db-pool", type=int, default=32, help="asyncpg pool size of each node")
    parser.add_argument("--processes", type=int, default=2,
                        help="server nodes (processes), each with its share of the labelers")
    parser.add_argument("--ttl", type=float, default=600.0, help="lease TTL in seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--open", action="store_true",
                        help="open loop: a server process and labelers who think, in driver processes")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of work before the measured window (default: 5 closed loop; 25 "
                             "open loop, where labelers start spread over it)")
    parser.add_argument("--box-labelers", type=int, default=0,
                        help="open loop: labelers drawing boxes (one item every 20-60 s) on a bbox project")
    parser.add_argument("--box-items", type=int, default=100_000)
    parser.add_argument("--drivers", type=int, default=2, help="open loop: driver processes")
    parser.add_argument("--server-workers", type=int, default=2,
                        help="open loop: server processes (colabel serve --workers)")
    parser.add_argument("--redis-only", action="store_true",
                        help="Lua path only: LEASE then FINISH at once, no Postgres in the loop")
    parser.add_argument("--redis-finish", choices=("s", "k"), default="s",
                        help="Redis-only mode: finish as submitted (consumes a slot) or skipped")
    args = parser.parse_args()
    if args.labelers is None:
        args.labelers = 2000 if args.open else 50
    if args.seconds is None:
        args.seconds = 40.0 if args.open else 20.0
    if args.warmup is None:
        args.warmup = 25.0 if args.open else 5.0
    if args.labelers < 1 or args.items < 1 or args.count < 1:
        parser.error("--items, --labelers and --count must be positive")
    import uvloop

    result = uvloop.run(run_open(args) if args.open else run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
