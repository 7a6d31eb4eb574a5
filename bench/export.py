"""Export benchmark: labeled projects exported through the real export job, against the targets.

    .venv/bin/python bench/export.py [--items 100000] [--large 300000] [--format-items 20000]
                                     [--boxes 4] [--only coco,large,jsonl,csv,masks,voc,yolo]

It creates its own database (migrated, dropped at the end) and in it, with COPY, projects of
items (640x480) each decided by one of 50 labelers with its annotation row (so the provenance
query does its real work), 20 labels in a two-level tree:

  coco    a bbox project of --items items, 1 to 2*boxes-1 boxes each (boxes on average),
          exported as COCO: the time and the export's peak memory;
  large   the same with --large items: its peak memory and the ratio to coco's (memory
          must not grow with the project);
  jsonl, voc, yolo   a bbox project of --format-items items, exported in that format;
  csv     a multilabel project of --format-items items (its "boxes" are class labels);
  masks   a semantic project of --format-items items (its "boxes" are the class regions,
          the annotations COCO would write: the format carries no boxes).

Each export runs in a child process exactly as a server process runs it
(`server.exports.runner.run_next`), so the child's peak memory is the export's own. Printed
as one JSON line, each figure beside its target:

  coco_100k_s, coco_100k_target_s          wall time of the export job (claim to file done)
  coco_100k_peak_mb, coco_100k_baseline_mb peak resident memory (VmHWM) of the export
                                           process, and its peak before the export
  coco_300k_peak_mb, coco_300k_ratio, coco_300k_ratio_target
  <format>_boxes_per_min, <format>_boxes_per_min_target
  sizes, checked                           items and boxes per project; every file parsed with
                                           the expected counts (COCO, JSON Lines, CSV, zips)

Timings are wall time: on a shared machine, run it several times and take the best.

Needs PostgreSQL (COLABEL_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1/postgres)
and Redis (COLABEL_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0; progress events only).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from migrations.runner import migrate  # noqa: E402

ADMIN_URL = os.environ.get("COLABEL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COLABEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
LABELERS = 50
WIDTH, HEIGHT = 640, 480


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


COCO_TARGET_S = 2.0
RATIO_TARGET = 1.2
BOXES_PER_MIN_TARGET = 1_000_000
FORMATS = ("jsonl", "csv", "masks", "voc", "yolo")
PARTS = ("coco", "large", *FORMATS)
TASK = {"coco": "bbox", "jsonl": "bbox", "voc": "bbox", "yolo": "bbox", "csv": "multilabel",
        "masks": "semantic"}
TILE = 64


def final_for(rng: random.Random, label_ids: list[int], boxes: int) -> dict[str, Any]:
    shapes = []
    for n in range(rng.randint(1, 2 * boxes - 1)):
        w, h = rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.5)
        shapes.append({"id": f"s{n}", "kind": "box", "label": rng.choice(label_ids), "source": "human",
                       "x": round(rng.uniform(0, 1 - w), 6), "y": round(rng.uniform(0, 1 - h), 6),
                       "w": round(w, 6), "h": round(h, 6)})
    return {"shapes": shapes}


def classes_for(rng: random.Random, label_ids: list[int], boxes: int) -> dict[str, Any]:
    return {"classes": rng.sample(label_ids, rng.randint(1, 2 * boxes - 1))}


def masks_for(rng: random.Random, label_ids: list[int], boxes: int, count: int = 16) -> list[dict[str, Any]]:
    """A few distinct semantic masks (items share them): 1 to 2*boxes-1 rectangles of classes."""
    from server.exports import geometry

    out = []
    for _ in range(count):
        values = np.zeros((HEIGHT, WIDTH), dtype=np.uint32)
        for _ in range(rng.randint(1, 2 * boxes - 1)):
            x, y = rng.randrange(0, WIDTH - 64), rng.randrange(0, HEIGHT - 64)
            h, w = rng.randint(32, HEIGHT - y), rng.randint(32, WIDTH - x)
            values[y:y + h, x:x + w] = rng.choice(label_ids)
        out.append({"mask": {"tile_size": TILE, "tiles": geometry.tiles_from_mask(values, TILE)}})
    return out


def units(final: dict[str, Any]) -> int:
    """What a label counts as boxes: its shapes, its classes, or its mask's class regions."""
    if "mask" in final:
        from server.exports import geometry

        values = geometry.mask_from_tiles(final["mask"], WIDTH, HEIGHT)
        return int(np.count_nonzero(np.unique(values)))
    return len(final.get("shapes", final.get("classes", [])))


async def build(conn: asyncpg.Connection, users: list[int], task: str, items: int,
                boxes: int) -> tuple[int, int]:
    """A project of `items` labeled items; returns (project id, boxes written)."""
    pid = await conn.fetchval(
        "INSERT INTO projects (name, task_type, consensus, ml_assist, created_by, status) "
        "VALUES ($1, $2, '{\"enabled\": false}', '{\"enabled\": false}', $3, 'running') RETURNING id",
        f"bench-{uuid.uuid4().hex[:6]}", task, users[0])
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
    if task == "semantic":
        shared = masks_for(rng, label_ids, boxes)
        texts = [json.dumps(m) for m in shared]
        sizes = [units(m) for m in shared]
        picks = [i % len(shared) for i in range(items)]
        finals, total = [texts[k] for k in picks], sum(sizes[k] for k in picks)
    else:
        make = classes_for if task == "multilabel" else final_for
        docs = [make(rng, label_ids, boxes) for _ in range(items)]
        finals, total = [json.dumps(f) for f in docs], sum(units(f) for f in docs)
        del docs
    await conn.copy_records_to_table(
        "items", columns=["project_id", "key", "media_kind", "width", "height", "status", "final",
                          "decided_by", "decided_at", "target"],
        records=[(pid, f"d{i % 100:02d}/img{i:06d}.jpg", "image", WIDTH, HEIGHT, "labeled", f,
                  "single", None, 1) for i, f in enumerate(finals)])
    rows = await conn.fetch("SELECT id FROM items WHERE project_id = $1 ORDER BY id", pid)
    await conn.copy_records_to_table(
        "annotations", columns=["project_id", "item_id", "user_id", "lease_id", "data"],
        records=[(pid, r["id"], users[i % LABELERS], f"l{r['id']}", finals[i]) for i, r in enumerate(rows)])
    return pid, total


async def queue(conn: asyncpg.Connection, pid: int, fmt: str, user: int) -> int:
    eid: int = await conn.fetchval(
        "INSERT INTO exports (project_id, format, filters, created_by) VALUES ($1, $2, $3, $4) "
        "RETURNING id", pid, fmt, json.dumps({"needs_review": False, "raw_annotations": False}), user)
    return eid


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
    """The file holds what was exported: counted for the text formats, entries for the zips."""
    if fmt == "coco":
        doc = json.loads(path.read_bytes())
        return len(doc["images"]) == items and len(doc["annotations"]) == boxes
    if fmt == "jsonl":
        with open(path, "rb") as fp:
            return sum(len(json.loads(line)["label"]) for line in fp) == boxes
    if fmt == "csv":
        with open(path, encoding="utf-8", newline="") as fp:
            return sum(len(json.loads(row["labels"])) for row in csv.DictReader(fp)) == boxes
    with zipfile.ZipFile(path) as z:
        folder = {"masks": "masks/", "voc": "Annotations/", "yolo": "labels/"}[fmt]
        return sum(1 for n in z.namelist() if n.startswith(folder)) == items


def export(url: str, data_dir: str, eid: int) -> dict[str, Any]:
    """Run export `eid` in a child process; its timings, memory and file."""
    out = subprocess.run([sys.executable, __file__, "--child", url, data_dir, str(eid)],
                         check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["status"] != "done":
        raise SystemExit(f"export failed: {result}")
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    parts = [p for p in args.only.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    dbname = f"colabel_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname
    out: dict[str, Any] = {"bench": "export", "sizes": {}}
    checked = True
    try:
        await migrate(url)
        conn = await asyncpg.connect(url)
        try:
            users = [await conn.fetchval(
                "INSERT INTO users (email, name, password_hash) VALUES ($1, $2, 'x') RETURNING id",
                f"labeler{i}@bench.test", f"L{i}") for i in range(LABELERS)]
            projects: dict[tuple[str, int], tuple[int, int]] = {}
            with tempfile.TemporaryDirectory() as data_dir:
                for part in parts:
                    fmt = "coco" if part == "large" else part
                    items = {"coco": args.items, "large": args.large}.get(part, args.format_items)
                    task = TASK[fmt]
                    if (task, items) not in projects:
                        t = time.perf_counter()
                        projects.clear()  # one project at a time: the database stays small
                        await conn.execute("TRUNCATE items, annotations, exports")
                        projects[task, items] = await build(conn, users, task, items, args.boxes)
                        await conn.execute("ANALYZE")
                        log(f"built {task} project: {items} items / {projects[task, items][1]} boxes "
                            f"in {time.perf_counter() - t:.1f} s")
                    pid, boxes = projects[task, items]
                    result = export(url, data_dir, await queue(conn, pid, fmt, users[0]))
                    path = Path(result["path"])
                    ok = check(path, fmt, items, boxes)
                    path.unlink()
                    checked = checked and ok
                    seconds, peak = result["seconds"], result["peak_kb"] / 1024
                    log(f"{part}: {seconds:.2f} s, peak {peak:.0f} MB, checked {ok}")
                    out["sizes"][part] = {"items": items, "boxes": boxes}
                    if part == "coco":
                        out.update(coco_100k_s=round(seconds, 3), coco_100k_target_s=COCO_TARGET_S,
                                   coco_100k_peak_mb=round(peak, 1),
                                   coco_100k_baseline_mb=round(result["baseline_kb"] / 1024, 1))
                    elif part == "large":
                        out.update(coco_300k_s=round(seconds, 3), coco_300k_peak_mb=round(peak, 1))
                    if part != "large":
                        out[f"{part}_boxes_per_min"] = round(boxes / seconds * 60)
                        out[f"{part}_boxes_per_min_target"] = BOXES_PER_MIN_TARGET
        finally:
            await conn.close()
        if "coco_100k_peak_mb" in out and "coco_300k_peak_mb" in out:
            out["coco_300k_ratio"] = round(out["coco_300k_peak_mb"] / out["coco_100k_peak_mb"], 3)
            out["coco_300k_ratio_target"] = RATIO_TARGET
        out["checked"] = checked
        return out
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        asyncio.run(child(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="items of the COCO project")
    parser.add_argument("--large", type=int, default=300_000, help="items of the large COCO project")
    parser.add_argument("--format-items", type=int, default=20_000, 
                        help="items of the other formats' projects")
    parser.add_argument("--boxes", type=int, default=4, help="average boxes (classes, regions) per item")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
