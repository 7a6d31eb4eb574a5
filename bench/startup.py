"""Start-up benchmark: how fast `colabel serve` is ready and how much memory it holds idle.

    .venv/bin/python bench/startup.py [--runs 5] [--idle-s 10] [--colabel .venv/bin/colabel]

Runs `colabel serve --demo` on the embedded PostgreSQL and Redis (no configuration, as a
first-time user does) in a fresh data directory: once cold (the engines are created, the
schema migrated, the demo made), then `--runs` times warm on the same directory. Each run
is timed from spawning the process to the first 200 from `/readyz`; after a warm start the
server sits idle for `--idle-s` and the resident memory of the server process (the
embedded engines are processes of their own and not counted) is read from /proc, with
whether torch or Ray got loaded. Targets: warm start <= 2 s, idle RSS <= 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_START_S = 2.0
TARGET_RSS_MB = 150.0
# Shared objects that give the heavy ML packages away in a process's memory map.
ML_LIBRARIES = {"torch": "/torch/lib/", "ray": "/ray/_raylet"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def loaded(pid: int) -> dict[str, bool]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name: marker in maps for name, marker in ML_LIBRARIES.items()}


@dataclass(frozen=True)
class Run:
    start_s: float
    rss_mb: float
    peak_mb: float
    loaded: dict[str, bool]


def run_once(colabel: str, data_dir: Path, idle_s: float, workdir: Path) -> Run:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLABEL_", "RAY_"))}
    log = open(data_dir.parent / "serve.log", "ab")  # noqa: SIM115 - closed below
    began = time.perf_counter()
    proc = subprocess.Popen([colabel, "serve", "--demo", "--data-dir", str(data_dir), "--port", str(port)],
                            env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        while not ready(f"http://127.0.0.1:{port}/readyz"):
            if proc.poll() is not None:
                raise SystemExit(f"colabel serve exited with {proc.returncode}; see {log.name}")
            if time.perf_counter() - began > 120:
                raise SystemExit("not ready after 120 s")
            time.sleep(0.02)
        took = time.perf_counter() - began
        time.sleep(idle_s)
        return Run(took, status_kb(proc.pid, "VmRSS") / 1024, status_kb(proc.pid, "VmHWM") / 1024,
                   loaded(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--colabel", default=str(ROOT / ".venv" / "bin" / "colabel"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="colabel-startup-") as tmp:
        data_dir, workdir = Path(tmp) / "data", Path(tmp) / "cwd"
        workdir.mkdir()
        cold = run_once(args.colabel, data_dir, 0.0, workdir)
        warm = [run_once(args.colabel, data_dir, args.idle_s, workdir) for _ in range(args.runs)]
    starts, rss = [w.start_s for w in warm], [w.rss_mb for w in warm]
    print(json.dumps({
        "cold_start_s": round(cold.start_s, 2),
        "warm_start_s": round(statistics.median(starts), 2),
        "warm_start_max_s": round(max(starts), 2),
        "idle_rss_mb": round(statistics.median(rss), 1),
        "idle_rss_max_mb": round(max(rss), 1),
        "peak_rss_mb": round(max(w.peak_mb for w in warm), 1),
        "torch_loaded": any(w.loaded["torch"] for w in warm),
        "ray_loaded": any(w.loaded["ray"] for w in warm),
        "runs": args.runs, "idle_s": args.idle_s,
        "target_start_s": TARGET_START_S, "target_rss_mb": TARGET_RSS_MB,
    }))


if __name__ == "__main__":
    main()
