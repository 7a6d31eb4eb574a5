"""Data-manager listing benchmark: filtered, sorted pages of a 500,000-item project over HTTP.

    .venv/bin/python bench/items_listing.py [--items 500000] [--repeat 30] [--limit 50]

It creates its own database (migrated, dropped at the end) holding a multiclass project with
consensus (min 2, max 3) and N items in a realistic mix: about 45% unlabeled, 10% in
progress, 38% labeled (by consensus, single labeler, review or import), 3% in review, 2%
skipped, 1% missing, 2% with an imported prelabel, last changes spread over 30 days, and two
submitted annotations (with their leases) from 40 labelers on every started item, all written
with INSERT ... SELECT generate_series. Then it starts `colabel serve` on it and asks
GET /api/v1/projects/{pid}/items with an owner's API token for each query below, the first
page and a deep page (a cursor 60% of the way into that order), `--repeat` times each, one
request at a time, and GET .../items/count (the separate, capped count the page shows).

Printed as one JSON line: per query and page, p50 and p99 in ms and the items returned
(a file-name search may answer a short page: it examines at most 5,000 items per request),
the count's p50; `worst_p99_ms` over the pages, and `target_ms` (50). Before those, while
the freshly started server rebuilds the project's queue in Redis, it asks for the first page
over and over: `during_rebuild` holds how long the rebuild took and the slowest such page.

Needs PostgreSQL (COLABEL_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1/postgres)
and Redis (COLABEL_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
import uuid
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
    temp_dir,
    wait_ready,
)
from migrations.runner import migrate  # noqa: E402
from server.data.item_query import SORTS, Cursor, Order  # noqa: E402
from server.work.keys import DispatchKeys  # noqa: E402

ADMIN_URL = os.environ.get("COLABEL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COLABEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
LABELERS = 40
TARGET_MS = 50.0

# Statuses by share of items (of 1000), and how labeled ones were decided.
_ITEMS = """
INSERT INTO items (project_id, key, media_kind, width, height, shuffle_key, status, final,
                   decided_by, agreement, target, prelabel, created_at, updated_at, decided_at)
SELECT $1, 'd' || lpad((n % 100)::text, 2, '0') || '/img' || lpad(n::text, 6, '0') || '.jpg',
       'image', 640, 480, random(), s.status,
       CASE WHEN s.status = 'labeled' THEN jsonb_build_object('classes', jsonb_build_array($2::bigint))
       END,
       CASE WHEN s.status = 'labeled' THEN (ARRAY['consensus', 'consensus', 'consensus', 'single',
                                                  'owner', 'imported'])[1 + n % 6] END,
       CASE WHEN s.status IN ('labeled', 'needs_review') THEN (ARRAY[1.0, 1.0, 0.67, 0.5])[1 + n % 4]
       END,
       CASE WHEN s.status IN ('labeled', 'needs_review', 'in_progress') AND n % 7 = 0 THEN 3 ELSE 2 END,
       CASE WHEN n % 50 = 0 THEN jsonb_build_object('classes', jsonb_build_array($2::bigint)) END,
       now() - interval '30 days', now() - (n % 43200) * interval '1 minute',
       CASE WHEN s.status = 'labeled' THEN now() - (n % 43200) * interval '1 minute' END
FROM generate_series(1, $3::int) AS n,
     LATERAL (SELECT CASE WHEN n % 1000 < 450 THEN 'unlabeled' WHEN n % 1000 < 550 THEN 'in_progress'
                          WHEN n % 1000 < 930 THEN 'labeled' WHEN n % 1000 < 960 THEN 'needs_review'
                          WHEN n % 1000 < 980 THEN 'skipped' WHEN n % 1000 < 990 THEN 'missing'
                          ELSE 'labeled' END AS status) AS s
"""
# Two labelers per started item: their leases (submitted) and annotations.
_WORK = """
WITH started AS (
    SELECT id, row_number() OVER (ORDER BY id) AS n FROM items
    WHERE project_id = $1 AND status IN ('in_progress', 'labeled', 'needs_review')
), pairs AS (
    SELECT s.id AS item_id, ($2::bigint[])[1 + (s.n + k) % $3] AS user_id, k
    FROM started s, generate_series(0, 1) AS k
), l AS (
    INSERT INTO leases (id, project_id, item_id, user_id, state, expires_at, finished_at)
    SELECT 'b' || item_id || '-' || k, $1, item_id, user_id, 'submitted', now(), now() FROM pairs
)
INSERT INTO annotations (project_id, item_id, user_id, lease_id, data)
SELECT $1, item_id, user_id, 'b' || item_id || '-' || k,
       jsonb_build_object('classes', jsonb_build_array($4::bigint)) FROM pairs
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def build(url: str, items: int) -> tuple[int, str, int]:
    """The project; returns (project id, the owner's API token, a labeler's id)."""
    conn = await asyncpg.connect(url)
    try:
        owner, users = await bench_users(conn, LABELERS)
        pid = await conn.fetchval(
            "INSERT INTO projects (name, task_type, consensus, ml_assist, created_by, status) "
            "VALUES ($1, 'multiclass', '{\"enabled\": true, \"min\": 2, \"max\": 3}', "
            "'{\"enabled\": false}', $2, 'running') RETURNING id", f"bench-{uuid.uuid4().hex[:6]}", owner)
        await conn.execute("INSERT INTO memberships (project_id, user_id, role) VALUES ($1, $2, 'owner')",
                           pid, owner)
        await conn.executemany(
            "INSERT INTO memberships (project_id, user_id, role) VALUES ($1, $2, 'labeler')",
            [(pid, u) for u in users])
        label = await conn.fetchval(
            "INSERT INTO labels (project_id, parent_key, name, name_key, position, depth) "
            "VALUES ($1, 0, 'cat', 'cat', 0, 1) RETURNING id", pid)
        await conn.execute(_ITEMS, pid, label, items)
        await conn.execute(_WORK, pid, users, len(users), label)
        await conn.execute("VACUUM ANALYZE")
        token = (await add_tokens(conn, [owner]))[0]
        return pid, token, users[3]
    finally:
        await conn.close()


def queries(labeler: int) -> dict[str, str]:
    """Representative listings: name -> query string (without paging)."""
    return {
        "all_by_id": "sort=id",
        "labeled_recent_first": "status=labeled&sort=-updated_at",
        "open_or_review_by_name": "status=unlabeled&status=needs_review&sort=key",
        "needs_review_by_status": "needs_review=true&sort=status",
        "raised_by_id": "agreement=raised&sort=id",
        "consensus_by_name_desc": "agreement=consensus&sort=-key",
        "labeler_recent_first": f"labeler={labeler}&sort=-updated_at",
        "has_prelabel_by_id": "has_prelabel=true&sort=id",
        "name_folder_recent_first": "name=d07/&sort=-updated_at",
        "name_rare_by_name": "name=img04321&sort=key",
        "labeled_name_by_id": "status=labeled&name=img1&sort=id",
        "all_by_status_desc": "sort=-status",
    }


async def deep_cursor(conn: asyncpg.Connection, pid: int, query: str, labeler: int) -> str | None:
    """A cursor 60% of the way into the listing's order (as the server would have made it
    after paging that far), taken straight from the table."""
    pairs = [p.split("=", 1) for p in query.split("&")]
    params = dict(pairs)
    if "status" in params:
        params["status"] = ",".join(v for k, v in pairs if k == "status")
    raw = params.get("sort", "id")
    order = Order(raw.lstrip("-"), raw.startswith("-"))
    col = SORTS[order.sort].removeprefix("i.")
    way = "DESC" if order.desc else "ASC"
    where = ["project_id = $1"]
    args: list[Any] = [pid]
    if "status" in params:
        args.append(params["status"].split(","))
        where.append(f"status = ANY(${len(args)}::text[])")
    if params.get("needs_review") == "true":
        where.append("status = 'needs_review'")
    if params.get("agreement") == "raised":
        where.append("target > 2")
    if params.get("agreement") == "consensus":
        where.append("decided_by = 'consensus'")
    if "labeler" in params:
        where.append(f"id IN (SELECT item_id FROM leases WHERE user_id = {labeler})")
    if params.get("has_prelabel") == "true":
        where.append("prelabel IS NOT NULL")
    if "name" in params:
        args.append("%" + params["name"] + "%")
        where.append(f"key ILIKE ${len(args)}")
    n = await conn.fetchval(f"SELECT count(*) FROM items WHERE {' AND '.join(where)}", *args)
    row = await conn.fetchrow(
        f"SELECT id, {col} AS v FROM items WHERE {' AND '.join(where)} ORDER BY {col} {way}, id {way} "
        f"OFFSET {int(n * 0.6)} LIMIT 1", *args)
    if row is None:
        return None
    return Cursor(order, row["id"] if order.sort == "id" else row["v"], row["id"]).encode()


async def time_query(http: aiohttp.ClientSession, url: str, token: str, repeat: int,
                     ) -> tuple[list[float], int]:
    times = []
    shown = 0
    for _ in range(repeat):
        t = time.perf_counter()
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
            body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"{url}: {r.status} {body}")
        times.append((time.perf_counter() - t) * 1000)
        shown = len(body.get("items", ()))
    return times, shown


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def during_rebuild(base: str, pid: int, token: str, prefix: str) -> dict[str, Any]:
    """First pages asked for while the server rebuilds the project's queue in Redis after its
    start (the state of 500,000 items): how long the rebuild took and the slowest page meanwhile.
    The pages after this are measured on a settled server."""
    client = aioredis.Redis.from_url(REDIS_URL)
    epoch = DispatchKeys(prefix, pid).epoch
    times: list[float] = []
    t0 = time.perf_counter()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"{base}/api/v1/projects/{pid}/items?sort=id&limit=50"
            while not await client.exists(epoch):
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError("the queue was not rebuilt within 10 minutes")
                times.extend((await time_query(http, url, token, 1))[0])
                await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    return {"rebuild_s": round(time.perf_counter() - t0, 1), "pages": len(times),
            "max_ms": round(max(times), 1) if times else None,
            "p50_ms": p(times, 0.5) if times else None}


async def measure(url: str, base: str, pid: int, token: str, labeler: int, repeat: int,
                  limit: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for name, query in queries(labeler).items():
                first = f"{base}/api/v1/projects/{pid}/items?{query}&limit={limit}"
                await time_query(http, first, token, 3)  # warm: plans, caches
                times, shown = await time_query(http, first, token, repeat)
                entry: dict[str, Any] = {"first_p50_ms": p(times, 0.5), "first_p99_ms": p(times, 0.99),
                                         "first_items": shown}
                count = f"{base}/api/v1/projects/{pid}/items/count?{query}"
                await time_query(http, count, token, 2)
                times, _ = await time_query(http, count, token, max(repeat // 3, 3))
                entry.update(count_p50_ms=p(times, 0.5))
                cursor = await deep_cursor(conn, pid, query, labeler)
                if cursor is not None:
                    deep = f"{first}&cursor={cursor}"
                    await time_query(http, deep, token, 3)
                    times, shown = await time_query(http, deep, token, repeat)
                    entry.update(deep_p50_ms=p(times, 0.5), deep_p99_ms=p(times, 0.99), deep_items=shown)
                out[name] = entry
                log(f"{name}: {entry}")
    finally:
        await conn.close()
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    dbname = f"colabel_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname
    proc = None
    prefix = f"bench-listing-{secrets.token_hex(3)}:"
    try:
        await migrate(url)
        t = time.perf_counter()
        pid, token, labeler = await build(url, args.items)
        log(f"built {args.items} items in {time.perf_counter() - t:.1f} s; starting the server")
        work = temp_dir()
        port = free_port()
        server_log = work / "server.log"
        proc = start_server(url, REDIS_URL, prefix, port, work,
                            work / "counts", server_log)
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, proc, server_log)
        rebuild = await during_rebuild(base, pid, token, prefix)
        log(f"while the queue was rebuilt: {rebuild}")
        figures = await measure(url, base, pid, token, labeler, args.repeat, args.limit)
        worst = max(v for f in figures.values() for k, v in f.items()
                    if k in ("first_p99_ms", "deep_p99_ms"))
        return {"bench": "items_listing", "items": args.items, "limit": args.limit,
                "repeat": args.repeat, "during_rebuild": rebuild, "queries": figures, "worst_p99_ms": worst,
                "target_ms": TARGET_MS}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()
        # The dispatcher's state of 500,000 items (1.5 million keys): left behind, every
        # later SCAN of this Redis (other runs' clean-ups, the tests') walks them all.
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            await delete_prefix(client, prefix)
        finally:
            await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--limit", type=int, default=50)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
