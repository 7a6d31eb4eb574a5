"""Collaboration fan-out benchmark: Colabel's /collab WebSocket server against y-websocket.

    .venv/bin/python bench/collab_fanout/run.py [--quick] [--rate 1000] [--find-max] [--rounds N]
                                                [--servers both|reference|colabel]

It starts both servers pinned to core 0, then runs `driver.mjs` (every Yjs client in one Node
process, pinned to core 1) once per scenario and server, the two servers back to back, sampling
the server's CPU time and RSS from /proc while the driver measures. It then prints one JSON line
per scenario on stdout with both servers' figures and colabel/reference ratios; progress goes to
stderr. See README.md next to this file for what each figure means.

Colabel needs PostgreSQL (COLABEL_BENCH_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/postgres, in which a fresh database is created and dropped)
and Redis (COLABEL_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0, under a unique key prefix
that is deleted at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DRIVER = HERE / "driver.mjs"
Y_WEBSOCKET = ROOT / "node_modules" / ".bin" / "y-websocket"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PG_ADMIN_URL = os.environ.get("COLABEL_BENCH_DATABASE_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COLABEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SERVER_CPU, DRIVER_CPU = "0", "1"
ADMIN_EMAIL, ADMIN_PASSWORD = "bench@colabel.test", "benchpass123"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_RATE_STEPS = (500, 1000, 2000, 4000)
MAX_RATE_P99_MS = 50.0


class BenchError(Exception):
    """A setup or run step failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"[collab_fanout] {msg}", file=sys.stderr, flush=True)


# --- /proc sampling ------------------------------------------------------------------------------


def _process_tree(pid: int) -> list[int]:
    """pid and all its descendants (a server that forks helpers is measured whole)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process tree, in seconds."""
    ticks = 0
    for p in _process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks / CLK_TCK


def host_busy_seconds() -> float:
    """Busy CPU time of the whole machine (all cores; idle and iowait excluded), in seconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def rss_kb(pid: int) -> int:
    """VmRSS of the process tree, in kB."""
    total = 0
    for p in _process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """SIGTERM the process group (started with start_new_session), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def wait_http(url: str, proc: subprocess.Popen[Any], logfile: Path, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with status {proc.returncode}:\n{tail(logfile)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"{url} did not answer within {timeout_s:.0f} s:\n{tail(logfile)}")


# --- servers -------------------------------------------------------------------------------------


@dataclass
class Server:
    """One server under test: how to reach it and which rooms it offers."""

    name: str
    url: str = ""
    params: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[Any] | None = None
    logfile: Path | None = None
    room_names: list[str] = field(default_factory=list)
    next_room: int = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def take_rooms(self, n: int) -> list[str]:
        """n rooms never used before in this run (so every scenario starts from empty docs)."""
        if self.next_room + n > len(self.room_names):
            raise BenchError(f"{self.name}: ran out of rooms ({len(self.room_names)} prepared)")
        rooms = self.room_names[self.next_room:self.next_room + n]
        self.next_room += n
        return rooms


@contextlib.contextmanager
def reference_server(rooms_needed: int, workdir: Path) -> Iterator[Server]:
    port = free_port()
    logfile = workdir / "y-websocket.log"
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port)}
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, "node", str(Y_WEBSOCKET)], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc, logfile, 30)
        yield Server("reference", url=f"ws://127.0.0.1:{port}", proc=proc, logfile=logfile,
                     room_names=[f"bench-{i}" for i in range(rooms_needed)])
    finally:
        stop_process(proc)


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _drop_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
    finally:
        client.close()


def _api(client: Any, method: str, path: str, **kw: Any) -> Any:
    r = client.request(method, path, **kw)
    if r.status_code >= 400:
        raise BenchError(f"Colabel setup: {method} {path} -> {r.status_code}: {r.text[:500]}")
    return r.json() if r.content else None


def _make_images(folder: Path, n: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), ((i * 37) % 256, (i * 11) % 256, 128)).save(folder / f"img{i:05d}.png")


def _colabel_rooms(base: str, port: int, data_dir: Path, n: int) -> tuple[str, list[str]]:
    """Admin login, API token, a project bound to n tiny PNGs; returns (token, rooms)."""
    import httpx

    origin = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, headers={"Origin": origin}, timeout=120) as client:
        _api(client, "POST", "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        token: str = _api(client, "POST", "/api/v1/tokens", json={"name": "bench"})["token"]
        client.cookies.clear()
        client.headers["Authorization"] = f"Bearer {token}"
        uid = _api(client, "GET", "/api/v1/me")["user"]["id"]
        project = _api(client, "POST", "/api/v1/projects", json={
            "name": f"bench-{uuid.uuid4().hex[:12]}", "task_type": "bbox", "labels": [{"name": "x"}]})
        pid = project["project"]["id"]
        folder = data_dir / "datasets" / "bench"
        _make_images(folder, n)
        _api(client, "PUT", f"/api/v1/projects/{pid}/dataset",
             json={"datastore": {"kind": "local", "path": str(folder)}, "pattern": "**/*.*"})
        items: list[int] = []
        after = 0
        while True:
            page = _api(client, "GET", f"/api/v1/projects/{pid}/items",
                        params={"limit": 1000, "after": after})
            items.extend(item["id"] for item in page["items"])
            if page["next_after"] is None:
                break
            after = page["next_after"]
        if len(items) < n:
            raise BenchError(f"Colabel setup: bound {n} images but the project lists {len(items)} items")
    return token, [f"{pid}/{iid}/{uid}" for iid in items[:n]]


@contextlib.contextmanager
def colabel_server(rooms_needed: int, workdir: Path) -> Iterator[Server]:
    port = free_port()
    tag = uuid.uuid4().hex[:10]
    dbname = f"colabel_bench_{tag}"
    data_dir = workdir / "colabel-data"
    data_dir.mkdir()
    logfile = workdir / "colabel.log"
    prefix = f"colabel-bench-{tag}:"
    env = {
        **os.environ,
        "COLABEL_DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname,
        "COLABEL_REDIS_URL": REDIS_URL,
        "COLABEL_REDIS_PREFIX": prefix,
        "COLABEL_DATA_DIR": str(data_dir),
        "COLABEL_SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "COLABEL_BACKGROUND_JOBS": "false",
    }
    python = str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable)
    proc: subprocess.Popen[Any] | None = None
    try:
        asyncio.run(_pg(f'CREATE DATABASE "{dbname}"'))
    except Exception as exc:  # noqa: BLE001 - asyncpg/OS errors alike: say where and why
        raise BenchError(f"cannot create database {dbname} via {PG_ADMIN_URL}: {exc}") from None
    try:
        made = subprocess.run([python, "-m", "server", "createuser", "--email", ADMIN_EMAIL,
                               "--password", ADMIN_PASSWORD, "--admin"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        if made.returncode != 0:
            raise BenchError(f"colabel createuser failed ({made.returncode}): {made.stderr.strip()}")
        with open(logfile, "wb") as out:
            proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, python, "-m", "server", "serve",
                                     "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", proc, logfile, 90)
        token, rooms = _colabel_rooms(base, port, data_dir, rooms_needed)
        yield Server("colabel", url=f"ws://127.0.0.1:{port}/collab", params={"token": token},
                     proc=proc, logfile=logfile, room_names=rooms)
    finally:
        if proc is not None:
            stop_process(proc)
        try:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        except Exception as exc:  # noqa: BLE001 - cleanup goes on, and says what it could not do
            log(f"could not drop database {dbname}: {exc}")
        try:
            _drop_redis_prefix(prefix)
        except Exception as exc:  # noqa: BLE001
            log(f"could not delete Redis keys {prefix}*: {exc}")


# --- driver runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    rooms: int
    clients: int
    awareness: bool = False


SCENARIOS = (
    Scenario("1x10", 1, 10),
    Scenario("20x5", 20, 5),
    Scenario("100x2", 100, 2),
    Scenario("20x5_awareness", 20, 5, awareness=True),
)


def run_driver(server: Server, config: dict[str, Any],
               on_event: Callable[[str, subprocess.Popen[str]], None] | None = None,
               timeout_s: float = 120) -> dict[str, Any]:
    """Run driver.mjs once; on_event sees its progress events as they arrive."""
    config = {"url": server.url, "params": server.params, **config}
    proc = subprocess.Popen(["taskset", "-c", DRIVER_CPU, "node", str(DRIVER), json.dumps(config)],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr,
                            text=True, start_new_session=True)
    timer = threading.Timer(timeout_s, lambda: stop_process(proc, 2))
    timer.start()
    result: dict[str, Any] | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                log(f"driver said: {line.rstrip()}")
                continue
            event = msg.get("event")
            if event == "result":
                result = msg
            elif isinstance(event, str):
                if on_event is not None:
                    on_event(event, proc)
                if event == "ready" and proc.stdin is not None:
                    proc.stdin.close()  # EOF: a `hold` run closes its rooms and reports
        proc.wait(10)
    finally:
        timer.cancel()
        stop_process(proc, 2)
    if result is None:
        return {"ok": False, "error": f"driver ended without a result (status {proc.returncode}; "
                f"timed out after {timeout_s:.0f} s?)"}
    if not server.alive():
        result = {**result, "ok": False, "error": f"{server.name} server died:\n{tail_of(server)}"}
    return result


def tail_of(server: Server) -> str:
    return tail(server.logfile) if server.logfile else ""


def fanout(server: Server, scenario: Scenario, total_rate: float, duration: float,
           warmup: float) -> dict[str, Any]:
    rooms = server.take_rooms(scenario.rooms)
    rate = total_rate / (scenario.rooms * scenario.clients)
    samples: dict[str, float] = {}

    def on_event(event: str, proc: subprocess.Popen[str]) -> None:
        if event in ("measure_start", "measure_end"):
            i = "0" if event == "measure_start" else "1"
            samples["cpu" + i], samples["t" + i] = cpu_seconds(server.pid), time.monotonic()
            samples["host" + i], samples["driver" + i] = host_busy_seconds(), cpu_seconds(proc.pid)
        if event == "measure_end":
            samples["rss_kb"] = rss_kb(server.pid)

    res = run_driver(server, {"rooms": rooms, "clients": scenario.clients, "rate": rate,
                              "duration": duration, "warmup": warmup, "drain": 1,
                              "awareness": scenario.awareness, "mode": "fanout"},
                     on_event, timeout_s=warmup + duration + 90)
    if not res.get("ok") or "cpu1" not in samples:
        return {"ok": False, "error": res.get("error") or "driver did not report a measurement window"}
    cpu_s = samples["cpu1"] - samples["cpu0"]
    wall_s = samples["t1"] - samples["t0"]
    # Everything else the machine did meanwhile: Postgres and Redis for Colabel, and any
    # unrelated load (which makes the run noisy).
    other_s = samples["host1"] - samples["host0"] - cpu_s - (samples["driver1"] - samples["driver0"])
    writes, delivered = res["writes"], res["delivered"]
    return {
        "ok": True,
        "error": res.get("error"),
        "offered_per_s": res["offered_per_s"],
        "delivered_per_s": res["delivered_per_s"],
        "cpu_us_per_update": round(cpu_s * 1e6 / writes, 2) if writes else None,
        "cpu_us_per_delivered_msg": round(cpu_s * 1e6 / delivered, 2) if delivered else None,
        "cpu_core_fraction": round(cpu_s / duration, 3),
        "driver_core_fraction": round((samples["driver1"] - samples["driver0"]) / wall_s, 3),
        "other_core_fraction": round(max(0.0, other_s) / wall_s, 3),
        "p50_ms": res["p50_ms"],
        "p99_ms": res["p99_ms"],
        "max_ms": res["max_ms"],
        "delivery_ratio": res["delivery_ratio"],
        "lost": res["lost"],
        "superseded": res["superseded"],
        "rss_mb": round(samples["rss_kb"] / 1024, 1),
        "sync_ms": res["sync_ms"],
        "rate_hz_per_client": round(rate, 3),
        "p99_ms_by_second": res.get("p99_ms_by_second"),
    }


def rooms_memory(server: Server, n: int) -> dict[str, Any]:
    """RSS growth per open room: n rooms with one client and one small entry each."""
    warm = run_driver(server, {"rooms": server.take_rooms(1), "clients": 1, "mode": "hold"}, timeout_s=60)
    if not warm.get("ok"):
        return {"ok": False, "error": warm.get("error")}
    time.sleep(1.0)
    base_kb = rss_kb(server.pid)
    sample: dict[str, int] = {}

    def on_event(event: str, proc: subprocess.Popen[str]) -> None:
        if event == "ready":
            time.sleep(2.0)
            sample["rss_kb"] = rss_kb(server.pid)

    res = run_driver(server, {"rooms": server.take_rooms(n), "clients": 1, "mode": "hold",
                              "syncTimeout": 60}, on_event, timeout_s=120)
    if not res.get("ok") or "rss_kb" not in sample:
        return {"ok": False, "error": res.get("error") or "driver never reported ready"}
    return {"ok": True, "kb_per_room": round((sample["rss_kb"] - base_kb) / n, 2),
            "rss_idle_mb": round(base_kb / 1024, 1), "rss_open_mb": round(sample["rss_kb"] / 1024, 1),
            "rooms": n, "sync_ms": res["sync_ms"]}


def find_max(server: Server, steps_per_s: list[float], duration: float, warmup: float) -> dict[str, Any]:
    """Highest offered rate (20x5) with p99 <= 50 ms and nothing lost."""
    scenario = Scenario("20x5", 20, 5)
    best: float | None = None
    steps: dict[str, Any] = {}
    for rate in steps_per_s:
        log(f"{server.name}: max-rate step {rate}/s")
        r = fanout(server, scenario, rate, duration, warmup)
        steps[f"{rate:g}"] = {k: r.get(k) for k in (
            "ok", "offered_per_s", "p99_ms", "lost", "cpu_core_fraction", "driver_core_fraction", "error")}
        if not r["ok"] or r["lost"] or r["p99_ms"] is None or r["p99_ms"] > MAX_RATE_P99_MS:
            break
        best = rate
    # capped: even the last step passed, so the true maximum is at least max_per_s.
    return {"max_per_s": best, "capped": best == steps_per_s[-1], "steps": steps}


# --- orchestration -------------------------------------------------------------------------------


def ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return round(a / b, 3)
    return None


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose CPU per update is the median of the rounds that ran (the first
    failure if none did), with every round's CPU per update alongside."""
    ok = sorted((r for r in rounds if r.get("ok")), key=lambda r: r["cpu_us_per_update"] or 0)
    chosen = dict(ok[(len(ok) - 1) // 2] if ok else rounds[0])
    chosen["rounds_cpu_us_per_update"] = [r.get("cpu_us_per_update") for r in rounds]
    return chosen


def bench_servers(kinds: tuple[str, ...], args: argparse.Namespace, scenarios: list[Scenario],
                  workdirs: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Every measurement of every server: {kind: {"memory": ..., scenario name: ..., "max": ...}}.

    Both servers run at once (only the one under load is busy), and each scenario runs on
    one right after the other, `--rounds` times, alternating which goes first: the two
    figures of a scenario are taken within a minute of each other, on the same machine
    speed (this machine's drifts by up to a quarter within the hour).
    """
    rooms_needed = 1 + args.memory_rooms + args.rounds * sum(s.rooms for s in scenarios)
    if args.find_max:
        rooms_needed += 20 * len(args.max_steps)
    results: dict[str, dict[str, Any]] = {k: {} for k in kinds}
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        for kind in kinds:
            starter = reference_server if kind == "reference" else colabel_server
            log(f"{kind}: starting server")
            try:
                servers[kind] = stack.enter_context(starter(rooms_needed, workdirs[kind]))
            except BenchError as exc:
                log(f"{kind}: {exc}")
                results[kind] = {"error": str(exc)}
            except (OSError, ValueError, RuntimeError) as exc:
                log(f"{kind}: {type(exc).__name__}: {exc}")
                results[kind] = {"error": f"{type(exc).__name__}: {exc}"}
        for kind, server in list(servers.items()):
            log(f"{kind}: rooms_memory ({args.memory_rooms} rooms)")
            results[kind]["memory"] = rooms_memory(server, args.memory_rooms)
            if not results[kind]["memory"]["ok"]:
                error = results[kind]["memory"]["error"]
                if kind == "colabel":
                    error = f"Colabel's /collab WebSocket did not accept the clients ({server.url}): {error}"
                log(f"{kind}: {error}; skipping its other scenarios")
                results[kind] = {"error": error}
                del servers[kind]
        rounds: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k in servers}
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(servers)[::-1]
            for s in scenarios:
                for kind in order:
                    log(f"{kind}: scenario {s.name} at {args.rate:g} updates/s"
                        + (f" (round {r + 1} of {args.rounds})" if args.rounds > 1 else ""))
                    got = fanout(servers[kind], s, args.rate, args.duration, args.warmup)
                    if not got["ok"]:
                        log(f"{kind}: {s.name} failed: {got['error']}")
                    rounds[kind].setdefault(s.name, []).append(got)
        for kind, by_scenario in rounds.items():
            for name, runs in by_scenario.items():
                results[kind][name] = _median_round(runs)
        if args.find_max:
            for kind, server in servers.items():
                results[kind]["max"] = find_max(server, args.max_steps, args.max_duration, args.warmup)
    return results


def side(results: dict[str, Any], key: str) -> dict[str, Any]:
    if "error" in results and key not in results:
        return {"ok": False, "error": results["error"]}
    return results.get(key) or {"ok": False, "error": "not run"}


def report(args: argparse.Namespace, scenarios: list[Scenario], results: dict[str, dict[str, Any]]) -> None:
    def emit(obj: dict[str, Any]) -> None:
        print(json.dumps(obj), flush=True)

    for s in scenarios:
        col, ref = side(results["colabel"], s.name), side(results["reference"], s.name)
        emit({
            "bench": "collab_fanout", "scenario": s.name, "rooms": s.rooms, "clients_per_room": s.clients,
            "awareness": s.awareness, "offered_per_s": args.rate, "duration_s": args.duration,
            "colabel": col, "reference": ref,
            "ratio_cpu": ratio(col.get("cpu_us_per_update"), ref.get("cpu_us_per_update")),
            "ratio_cpu_by_round": [ratio(c, r) for c, r in zip(
                col.get("rounds_cpu_us_per_update") or [], ref.get("rounds_cpu_us_per_update") or [],
                strict=False)],
            "ratio_p50": ratio(col.get("p50_ms"), ref.get("p50_ms")),
            "ratio_p99": ratio(col.get("p99_ms"), ref.get("p99_ms")),
            "ratio_rss": ratio(col.get("rss_mb"), ref.get("rss_mb")),
        })
    col, ref = side(results["colabel"], "memory"), side(results["reference"], "memory")
    emit({
        "bench": "collab_fanout", "scenario": "rooms_memory", "rooms": args.memory_rooms,
        "colabel_kb_per_room": col.get("kb_per_room"), "reference_kb_per_room": ref.get("kb_per_room"),
        "ratio": ratio(col.get("kb_per_room"), ref.get("kb_per_room")), "colabel": col, "reference": ref,
    })
    if args.find_max:
        col, ref = side(results["colabel"], "max"), side(results["reference"], "max")
        emit({
            "bench": "collab_fanout", "scenario": "max_rate_20x5", "p99_limit_ms": MAX_RATE_P99_MS,
            "colabel_max_per_s": col.get("max_per_s"), "reference_max_per_s": ref.get("max_per_s"),
            "colabel_capped": col.get("capped"), "reference_capped": ref.get("capped"),
            "ratio": ratio(col.get("max_per_s"), ref.get("max_per_s")), "colabel": col, "reference": ref,
        })


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 s windows (default 10 s)")
    p.add_argument("--rate", type=float, default=1000.0, help="offered updates/s over all clients")
    p.add_argument("--duration", type=float, help="measurement window, s")
    p.add_argument("--warmup", type=float, help="writes before the window opens, s")
    p.add_argument("--memory-rooms", type=int, default=200, help="rooms opened by rooms_memory")
    p.add_argument("--find-max", action="store_true", help="also ramp 20x5 to its highest good rate")
    p.add_argument("--max-steps", default=",".join(map(str, MAX_RATE_STEPS)),
                   help="offered rates (updates/s) tried by --find-max, ascending")
    p.add_argument("--servers", choices=("both", "reference", "colabel"), default="both")
    p.add_argument("--rounds", type=int, default=1,
                   help="run each scenario this many times per server, back to back with the "
                        "other server; the median round (by CPU per update) is reported")
    p.add_argument("--scenarios", help="comma-separated subset of " + ",".join(s.name for s in SCENARIOS))
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds: at least 1")
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.max_duration = 3.0 if args.quick else 5.0
    try:
        args.max_steps = sorted(float(x) for x in args.max_steps.split(",") if x.strip())
    except ValueError:
        p.error("--max-steps: comma-separated numbers")
    if not args.max_steps:
        p.error("--max-steps: give at least one rate")
    return args


def _check_tools() -> None:
    missing = [what for what, ok in (
        ("node", shutil.which("node")), ("taskset", shutil.which("taskset")),
        (str(Y_WEBSOCKET), Y_WEBSOCKET.exists()),
        (str(ROOT / "node_modules" / "y-websocket"), (ROOT / "node_modules" / "y-websocket").exists()),
    ) if not ok]
    if missing:
        raise BenchError("missing: " + ", ".join(missing) + " (run `npm ci` at the repository root)")
    if len(os.sched_getaffinity(0)) < 2:
        log("warning: fewer than 2 CPUs available; server and driver share a core")


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    scenarios = list(SCENARIOS)
    if args.scenarios:
        wanted = set(args.scenarios.split(","))
        scenarios = [s for s in SCENARIOS if s.name in wanted]
        if unknown := wanted - {s.name for s in scenarios}:
            log(f"unknown scenarios: {', '.join(sorted(unknown))}")
            return 2
    signal.signal(signal.SIGTERM, _sigterm)
    # Also when started in the background with SIGINT ignored: an interrupt must clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    kinds = ("reference", "colabel") if args.servers == "both" else (args.servers,)
    results: dict[str, dict[str, Any]] = {
        k: {"error": "not run (--servers)"} for k in ("reference", "colabel")}
    started = time.monotonic()
    workdirs = {k: Path(tempfile.mkdtemp(prefix=f"colabel-bench-{k}-")) for k in kinds}
    try:
        _check_tools()
        results.update(bench_servers(kinds, args, scenarios, workdirs))
    except BenchError as exc:
        log(str(exc))
        return 2
    except KeyboardInterrupt:
        log("interrupted; servers stopped and temporary data removed")
        return 130
    finally:
        for workdir in workdirs.values():
            shutil.rmtree(workdir, ignore_errors=True)
    report(args, scenarios, results)
    log(f"done in {time.monotonic() - started:.0f} s")
    failed = [k for k in kinds if "error" in results[k]
              or any(isinstance(v, dict) and v.get("ok") is False for v in results[k].values())]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
