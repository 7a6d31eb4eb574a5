"""The open-loop mode of bench/dispatch.py: labelers who think, against a real server.

The server is `colabel serve` in a process of its own (bench/dispatch_server.py, which also
counts its statements); the labelers run in other processes (`--drivers`), each an asyncio
task with its own think times, talking HTTP to the server as a browser or a script would:

  classification labeler   leases a page of 4, 6 or 9 images, thinks 5-20 s, submits the
                           page in one request (POST /api/v1/leases/submit, plain JSON
                           annotations), leases the next page, and so on
  box labeler              leases one item, thinks 20-60 s, submits it
                           (POST /api/v1/leases/{id}/submit with one box), and so on

Open loop: each labeler's next submit is due at its previous due time plus a fresh think
time, whatever the server's answers took, so a slow server meets the same demand (a submit
that could only start after its due time counts as late). Labelers start spread over the
first think period; only what happens in the measured window (after `--warmup` seconds)
counts. At the end every labeler gives back what it holds, and the dispatcher's invariants
are checked as in the closed loop.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
PAGE_SIZES = (4, 6, 9)
CLASSIFY_THINK_S = (5.0, 20.0)
BOX_THINK_S = (20.0, 60.0)
LATE_S = 1.0          # a submit starting this much after it was due counts as late
READY_TIMEOUT_S = 120.0
DRIVER_START_S = 6.0  # time for the driver processes to start before the labelers' clock


@dataclass
class Labeler:
    user_id: int
    token: str
    kind: str  # "classify" or "box"


@dataclass
class Samples:
    """What one driver process saw, each sample with the time it started (wall clock)."""

    lease: list[tuple[float, float]] = field(default_factory=list)
    submit: list[tuple[float, float]] = field(default_factory=list)
    box_lease: list[tuple[float, float]] = field(default_factory=list)
    box_submit: list[tuple[float, float]] = field(default_factory=list)
    offered: list[tuple[float, int]] = field(default_factory=list)   # (due time, items)
    accepted: list[tuple[float, int]] = field(default_factory=list)  # (start time, items stored)
    late: list[tuple[float, float]] = field(default_factory=list)    # (due time, seconds late)
    errors: Counter[str] = field(default_factory=Counter)
    empty_leases: int = 0
    cpu_s: float = 0.0


def make_token(user_id: int) -> tuple[str, bytes]:
    token = f"clb_{secrets.token_urlsafe(24)}"
    return token, hashlib.sha256(token.encode()).digest()


async def add_tokens(conn: asyncpg.Connection, user_ids: list[int]) -> list[str]:
    """An API token per user, as `POST /api/v1/tokens` would make it."""
    made = [make_token(uid) for uid in user_ids]
    await conn.copy_records_to_table(
        "api_tokens", columns=["user_id", "name", "token_hash", "prefix"],
        records=[(uid, "bench", digest, token[:8])
                 for uid, (token, digest) in zip(user_ids, made, strict=True)])
    return [token for token, _ in made]


async def bench_users(conn: asyncpg.Connection, labelers: int) -> tuple[int, list[int]]:
    """An owner and `labelers` labelers of a benchmark's database: (owner id, labeler ids)."""
    owner: int = await conn.fetchval("INSERT INTO users (email, name, password_hash) "
                                     "VALUES ('owner@bench.test', 'Owner', 'x') RETURNING id")
    users = [await conn.fetchval(
        "INSERT INTO users (email, name, password_hash) VALUES ($1, $2, 'x') RETURNING id",
        f"labeler{i}@bench.test", f"L{i}") for i in range(labelers)]
    return owner, users


# -- the labelers (in the driver processes) ---------------------------------------------------

async def _post(http: aiohttp.ClientSession, url: str, token: str, body: dict[str, Any],
                samples: list[tuple[float, float]], errors: Counter[str], what: str) -> Any:
    started = time.time()
    t = time.perf_counter()
    try:
        async with http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
            data = await r.json(content_type=None)
            status = r.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        errors[f"{what}:{type(exc).__name__}"] += 1
        return None
    samples.append((started, time.perf_counter() - t))
    if status != 200:
        errors[f"{what}:{status}:{(data or {}).get('error', {}).get('code')}"] += 1
        return None
    return data


async def _sleep_until(at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.time()))


def _annotation(kind: str, item_id: int, labels: list[int], disagree: float,
                rng: random.Random) -> dict[str, Any]:
    true = labels[item_id % len(labels)]
    label = rng.choice([x for x in labels if x != true]) if rng.random() < disagree else true
    if kind == "classify":
        return {"classes": [label]}
    x, y = (item_id % 7) / 10, (item_id % 5) / 10
    return {"shapes": [{"id": "b1", "kind": "box", "label": label, "x": x, "y": y, "w": 0.2, "h": 0.3}]}


async def labeler(base: str, who: Labeler, pid: int, labels: list[int], start: float, stop: float,
                  seed: int, disagree: float, http: aiohttp.ClientSession, s: Samples) -> None:
    rng = random.Random(seed)
    lo, hi = CLASSIFY_THINK_S if who.kind == "classify" else BOX_THINK_S
    lease_samples = s.lease if who.kind == "classify" else s.box_lease
    due = start + rng.uniform(0, hi)  # spread over the first think period
    thought = hi  # the time spent on the page on screen
    held: list[dict[str, Any]] = []
    await _sleep_until(due - rng.uniform(lo, hi))
    try:
        while True:
            if not held:
                count = rng.choice(PAGE_SIZES) if who.kind == "classify" else 1
                got = await _post(http, f"{base}/api/v1/projects/{pid}/tasks/next", who.token,
                                  {"count": count}, lease_samples, s.errors, "lease")
                held = got["leases"] if got else []
                if not held:
                    s.empty_leases += got is not None
                    due += rng.uniform(lo, hi)
                    if due >= stop:
                        return
                    await _sleep_until(due)
                    continue
            if due >= stop:
                return
            s.offered.append((due, len(held)))
            await _sleep_until(due)
            began = time.time()
            if began - due > LATE_S:
                s.late.append((due, began - due))
            entries = [{"lease_id": x["lease_id"], "duration_ms": int(thought * 1000 / len(held)),
                        "annotation": _annotation(who.kind, x["item"]["id"], labels, disagree, rng)}
                       for x in held]
            if who.kind == "classify":
                answer = await _post(http, f"{base}/api/v1/leases/submit", who.token,
                                     {"submissions": entries}, s.submit, s.errors, "submit")
                stored = sum(1 for r in answer["results"] if r["ok"]) if answer else 0
                if answer:
                    for r in answer["results"]:
                        if not r["ok"]:
                            s.errors[f"submit:{r['status']}:{r['error']['code']}"] += 1
            else:
                entry = entries[0]
                answer = await _post(http, f"{base}/api/v1/leases/{entry['lease_id']}/submit", who.token,
                                     {"annotation": entry["annotation"], "duration_ms": entry["duration_ms"]},
                                     s.box_submit, s.errors, "submit")
                stored = 1 if answer else 0
            s.accepted.append((began, stored))
            held = []
            thought = rng.uniform(lo, hi)
            due += thought
    finally:
        if held:  # give back what is on screen, as a closing tab does, once the window is over
            await _sleep_until(stop)
            await _post(http, f"{base}/api/v1/leases/release", who.token,
                        {"lease_ids": [x["lease_id"] for x in held]}, [], s.errors, "release")


async def drive(base: str, group: list[Labeler], projects: dict[str, tuple[int, list[int]]],
                start: float, stop: float, seed: int, disagree: float) -> Samples:
    s = Samples()
    cpu0 = time.process_time()
    # Below the server's keep-alive (5 s): a connection it is closing is never reused.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.gather(*(
            labeler(base, who, *projects[who.kind], start, stop, seed * 1_000_003 + who.user_id,
                    disagree, http, s) for who in group))
    s.cpu_s = time.process_time() - cpu0
    return s


def run_driver(*a: Any) -> Samples:
    """`drive` in a process of its own (the entry point of each driver process)."""
    import uvloop

    return uvloop.run(drive(*a))


# -- the server -------------------------------------------------------------------------------

def start_server(url: str, redis_url: str, prefix: str, port: int, data_dir: Path,
                 counts: Path, log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    env = {**os.environ, "COLABEL_DATABASE_URL": url, "COLABEL_REDIS_URL": redis_url,
           "COLABEL_WORKERS": str(workers),
           "COLABEL_REDIS_PREFIX": prefix, "COLABEL_PORT": str(port), "COLABEL_HOST": "127.0.0.1",
           "COLABEL_SECRET_KEY": secrets.token_hex(16), "COLABEL_DATA_DIR": str(data_dir),
           "COLABEL_ML_ENABLED": "false", "COLABEL_BENCH_COUNTS": str(counts),
           "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "bench" / "dispatch_server.py"), "serve",
                                 "--log-level", "warning"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)


async def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
            try:
                async with http.get(f"{base}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"server not ready: {log.read_text()[-3000:]}")


def server_processes(proc: subprocess.Popen[bytes]) -> list[int]:
    """The server's processes: `colabel serve` and, with --server-workers, its workers
    (children started by multiprocessing's spawn, not its resource tracker)."""
    pids = [proc.pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == proc.pid and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def statements(proc: subprocess.Popen[bytes], counts: Path) -> tuple[int, Counter[str]]:
    """The server's statement count now, in all and by statement, over the processes that
    serve (each writes its own when signalled; with workers, uvicorn's parent serves
    nothing and keeps SIGUSR1 for itself)."""
    total, by_text = 0, Counter[str]()
    pids = server_processes(proc)
    for pid in pids[1:] or pids:
        target = Path(f"{counts}.{pid}")
        target.unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not target.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"server process {pid} did not report its statement count")
            time.sleep(0.02)
        got = json.loads(target.read_text())
        total += int(got["statements"])
        by_text.update(got["by_text"])
    return total, by_text


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spread(labelers: list[Labeler], n: int) -> list[list[Labeler]]:
    return [labelers[i::n] for i in range(n) if labelers[i::n]]


def merge(parts: list[Samples]) -> Samples:
    out = Samples()
    for p in parts:
        out.lease += p.lease
        out.submit += p.submit
        out.box_lease += p.box_lease
        out.box_submit += p.box_submit
        out.offered += p.offered
        out.accepted += p.accepted
        out.late += p.late
        out.errors.update(p.errors)
        out.empty_leases += p.empty_leases
        out.cpu_s += p.cpu_s
    return out


async def run_labelers(base: str, labelers: list[Labeler], projects: dict[str, tuple[int, list[int]]],
                       args: argparse.Namespace, start: float, stop: float) -> Samples:
    loop = asyncio.get_running_loop()
    groups = spread(labelers, args.drivers)
    with ProcessPoolExecutor(len(groups), mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = await asyncio.gather(*(
            loop.run_in_executor(pool, run_driver, base, g, projects, start, stop, args.seed,
                                 args.disagree) for g in groups))
    return merge(list(parts))


def temp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="colabel-bench-"))
