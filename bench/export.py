"""Export benchmark: a labeled box project exported as COCO through the real export job.

    .venv/bin/python bench/export.py [--items 100000] [--boxes 4] [--format coco]

It creates its own database (migrated, dropped at the end) holding a bbox project with 20
labels in a two-level tree and N labeled items (640x480, 1 to 2*boxes-1 boxes each, boxes on
average), each decided by one of 50 labelers with its annotation row (so the provenance
query does its real work), all written with COPY. Then it runs the export job exactly as a
server process does (`server.exports.runner.run`) in a child process, so that the child's
peak memory is the export's own. Printed as one JSON line:

  items, boxes_total          the project's size
  seconds                     wall time of the export job (claim to file complete)
  items_per_s, boxes_per_s
  file_mb                     size of the written file
  peak_rss_mb                 the export process's peak resident memory (VmHWM)
  baseline_rss_mb             the same process's peak before the export (imports, connections):
                              peak - baseline is what the export itself took
  checked                     the file parsed as JSON with the expected image and annotation
                              counts (COCO) or lines (JSON Lines)
  target_seconds              the goal (<= 5 s)
  label_studio_seconds, label_studio_mb
                              for scale: Label Studio's JSON export of 100,000 tasks measured
                              on this machine (not run here)

Needs PostgreSQL (COLABEL_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1/postgres)
and Redis (COLABEL_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0; progress events only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from migrations.runner import migrate  # noqa: E402

ADMIN_URL = os.environ.get("COLABEL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COLABEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
LABELERS = 50
WIDTH, HEIGHT = 640, 480


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def final_for(rng: random.Random, label_ids: list[int], boxes: int) -> dict[str, Any]:
    shapes = []
    for n in range(rng.randint(1, 2 * boxes - 1)):
        w, h = rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.5)
        shapes.append({"id": f"s{n}", "kind": "box", "label": rng.choice(label_ids), "source": "human",
                       "x": round(rng.uniform(0, 1 - w), 6), "y": round(rng.uniform(0, 1 - h), 6),
                       "w": round(w, 6), "h": round(h, 6)})
    return {"shapes": shapes}


async def build(url: str, items: int, boxes: int, fmt: str) -> tuple[int, int, int]:
    """The project; returns (project id, boxes written, export id queued)."""
    conn = await asyncpg.connect(url)
    try:
        users = [await conn.fetchval(
            "INSERT INTO users (email, name, password_hash) VALUES ($1, $2, 'x') RETURNING id",
            f"labeler{i}@bench.test", f"L{i}") for i in range(LABELERS)]
        pid = await conn.fetchval(
            "INSERT INTO projects (name, task_type, consensus, ml_assist, created_by, status) "
            "VALUES ($1, 'bbox', '{\"enabled\": false}', '{\"enabled\": false}', $2, 'running') RETURNING id",
            f"bench-{uuid.uuid4().hex[:6]}", users[0])
        label_ids: list[int] = []
        position = 0
        for g in range(4):
            parent = await conn.fetchval(
                "INSERT INTO labels (project_id, parent_key, name, name_key, position, depth) "
                "VALUES ($1, 0, $2, $2, $3, 1) RETURNING id", pid, f"group{g}", position)
            position += 1
            for c in range(5):
                label_ids.append(await conn.fetchval(
                    "INSERT INTO labels (project_id, parent_id, parent_key, name, name_key, position, depth) "
                    "VALUES ($1, $2, $2, $3, $3, $4, 2) RETURNING id", pid, parent, f"class{g}{c}", position))
                position += 1
        rng = random.Random(7)
        finals = [final_for(rng, label_ids, boxes) for _ in range(items)]
        total_boxes = sum(len(f["shapes"]) for f in finals)
        await conn.copy_records_to_table(
            "items", columns=["project_id", "key", "media_kind", "width", "height", "status", "final",
                              "decided_by", "decided_at", "target"],
            records=[(pid, f"d{i % 100:02d}/img{i:06d}.jpg", "image", WIDTH, HEIGHT, "labeled", json.dumps(f),
                      "single", None, 1) for i, f in enumerate(finals)])
        rows = await conn.fetch("SELECT id FROM items WHERE project_id = $1 ORDER BY id", pid)
        ids = [r["id"] for r in rows]
        await conn.copy_records_to_table(
            "annotations", columns=["project_id", "item_id", "user_id", "lease_id", "data"],
            records=[(pid, iid, users[i % LABELERS], f"l{iid}", json.dumps(finals[i]))
                     for i, iid in enumerate(ids)])
        await conn.execute("ANALYZE")
        eid = await conn.fetchval(
            "INSERT INTO exports (project_id, format, filters, created_by) VALUES ($1, $2, $3, $4) "
            "RETURNING id", pid, fmt, json.dumps({"needs_review": False, "raw_annotations": False}), users[0])
        return pid, total_boxes, eid
    finally:
        await conn.close()



async def child(url: str, data_dir: str, export_id: int) -> None:
    """Run one export job as a server process would, and report timings and memory."""
    from dataclasses import replace

    from server.exports import runner
    from server.services import Services
    from server.settings import Settings

    settings = replace(Settings(data_dir=Path(data_dir)), database_url=url, redis_url=REDIS_URL,
                       redis_prefix=f"bench-export-{uuid.uuid4().hex[:6]}:")
    services = await Services.open(settings)
    try:
        baseline = memory_kb("VmHWM")
        t = time.perf_counter()
        claimed = await runner.run_next(services)
        seconds = time.perf_counter() - t
        peak = memory_kb("VmHWM")
        row = await services.db.fetchrow("SELECT status, done, file_name, project_id, error FROM exports "
                                         "WHERE id = $1", export_id)
    finally:
        await services.close()
    print(json.dumps({"claimed": claimed, "seconds": seconds, "baseline_kb": baseline, "peak_kb": peak,
                      "status": row["status"], "done": row["done"], "error": row["error"],
                      "path": str(runner.file_path(settings, row["project_id"], row["file_name"] or ""))}))


def memory_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process from /proc: unlike getrusage's maxrss, the
    peak is not inherited from the parent across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def check(path: Path, fmt: str, items: int, boxes: int) -> bool:
    if fmt == "coco":
        doc = json.loads(path.read_bytes())
        return len(doc["images"]) == items and len(doc["annotations"]) == boxes
    if fmt == "jsonl":
        with open(path, "rb") as fp:
            return sum(1 for _ in fp) == items
    return path.stat().st_size > 0


async def main(args: argparse.Namespace) -> dict[str, Any]:
    dbname = f"colabel_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname
    try:
        await migrate(url)
        t = time.perf_counter()
        _, total_boxes, eid = await build(url, args.items, args.boxes, args.format)
        log(f"built {args.items} items / {total_boxes} boxes in {time.perf_counter() - t:.1f} s; exporting")
        with tempfile.TemporaryDirectory() as data_dir:
            out = subprocess.run([sys.executable, __file__, "--child", url, data_dir, str(eid)],
                                 check=True, capture_output=True, text=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            if result["status"] != "done":
                raise SystemExit(f"export failed: {result}")
            path = Path(result["path"])
            size = path.stat().st_size
            ok = check(path, args.format, args.items, total_boxes)
        seconds = result["seconds"]
        return {
            "bench": "export", "format": args.format, "items": args.items, "boxes_total": total_boxes,
            "seconds": round(seconds, 3), "items_per_s": round(args.items / seconds),
            "boxes_per_s": round(total_boxes / seconds), "file_mb": round(size / 1e6, 1),
            "peak_rss_mb": round(result["peak_kb"] / 1024, 1),
            "baseline_rss_mb": round(result["baseline_kb"] / 1024, 1),
            "checked": ok, "target_seconds": 5.0,
            "label_studio_seconds": 206, "label_studio_mb": 780,
        }
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        asyncio.run(child(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--boxes", type=int, default=4, help="average boxes per item")
    parser.add_argument("--format", default="coco", choices=["coco", "jsonl", "voc", "yolo"])
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
