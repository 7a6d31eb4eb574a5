"""Label-import memory benchmark: a COCO file of about 1 GB imported with bounded memory.

    .venv/bin/python bench/import_memory.py [--size-mb 1024] [--boxes 50]

Writes (streaming, in a temporary folder deleted afterwards) a COCO file of boxes for a
bbox project whose items it registers directly in a fresh database, then imports it
through `label_import.import_label_file` in a child process and reports that process's
peak RSS against the 300 MB target. Prints one JSON line: file size, seconds, records
(images + annotations) per second, peak RSS. Needs PostgreSQL
(COLABEL_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1/postgres), in which it
creates and drops its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch_db import scratch_database  # noqa: E402
from server.services import init_connection  # noqa: E402

TARGET_RSS_MB = 300
CATEGORIES = ["animal/cat", "animal/dog", "car", "person", "bicycle"]


def write_coco(path: Path, size_bytes: int, boxes: int) -> tuple[int, int]:
    """Annotations first (as some tools write them), then images and categories; returns
    (images, annotations). Each box carries a polygon and an area, as exports do."""
    images = annotations = 0
    with path.open("w", buffering=1 << 20) as f:
        f.write('{"info": {"description": "bench"}, "annotations": [')
        while f.tell() < size_bytes:
            parts = []
            for j in range(boxes):
                annotations += 1
                x, y = (j * 37) % 560, (j * 53) % 400
                parts.append(
                    f'{{"id": {annotations}, "image_id": {images}, "category_id": {j % len(CATEGORIES) + 1}, '
                    f'"bbox": [{x}.5, {y}.25, 60.0, 40.5], "area": 2430.0, "iscrowd": 0, '
                    f'"segmentation": [[{x}.5, {y}.25, {x + 60}.5, {y}.25, {x + 60}.5, {y + 40}.75, '
                    f'{x}.5, {y + 40}.75]]}}')
            f.write(("," if images else "") + ",".join(parts))
            images += 1
        f.write('], "images": [')
        f.write(",".join(f'{{"id": {i}, "file_name": "img/{i:07d}.jpg", "width": 640, "height": 480}}'
                         for i in range(images)))
        f.write('], "categories": [')
        f.write(",".join(f'{{"id": {n}, "name": "{c}"}}' for n, c in enumerate(CATEGORIES, start=1)))
        f.write("]}")
    return images, annotations


async def make_project(url: str, images: int) -> tuple[int, int]:
    """A bbox project with one item per image, registered with COPY."""
    conn = await asyncpg.connect(url)
    try:
        uid = await conn.fetchval(
            "INSERT INTO users (email, name, password_hash) VALUES ($1, 'b', 'x') RETURNING id",
            f"{uuid.uuid4().hex}@bench")
        pid: int = await conn.fetchval(
            "INSERT INTO projects (name, task_type, consensus, ml_assist, created_by) "
            "VALUES ($1, 'bbox', '{\"enabled\": false}', '{\"enabled\": false}', $2) RETURNING id",
            uuid.uuid4().hex, uid)
        await conn.copy_records_to_table(
            "items", columns=["project_id", "key", "media_kind"],
            records=((pid, f"img/{i:07d}.jpg", "image") for i in range(images)))
        return pid, uid
    finally:
        await conn.close()


async def child(url: str, pid: int, uid: int, path: Path) -> dict[str, object]:
    """The import itself, in the measured process."""
    from server.data.label_import import LabelImportOptions, import_label_file
    from server.database import Database

    db = await Database.open(url, timeout_s=30, bulk_timeout_s=3600, min_size=1, max_size=2,
                             init=init_connection)
    try:
        t = time.perf_counter()
        done = await import_label_file(db, pid, uid, "bbox", path, path.name,
                                       LabelImportOptions(create_labels=True), 100_000_000)
        seconds = time.perf_counter() - t
    finally:
        await db.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_rss_mb": peak_kb / 1024, "result": done}


async def run(args: argparse.Namespace) -> dict[str, object]:
    async with scratch_database() as url:
        with tempfile.TemporaryDirectory(prefix="colabel-import-bench-") as tmp:
            path = Path(tmp) / "labels.json"
            t = time.perf_counter()
            images, annotations = write_coco(path, args.size_mb << 20, args.boxes)
            write_s = time.perf_counter() - t
            size = path.stat().st_size
            pid, uid = await make_project(url, images)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", url, str(pid), str(uid), str(path)],
                capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"the import failed:\n{proc.stderr[-4000:]}")
            measured = json.loads(proc.stdout.strip().splitlines()[-1])
        result = measured["result"]
        assert result["labeled"] == images and result["errors"] == [], result
        seconds = measured["seconds"]
        return {
            "bench": "import_memory", "format": "coco", "file_mb": round(size / (1 << 20), 1),
            "images": images, "annotations": annotations, "write_file_s": round(write_s, 1),
            "seconds": round(seconds, 1), "records_per_s": round((images + annotations) / seconds),
            "mb_per_s": round(size / (1 << 20) / seconds, 1),
            "peak_rss_mb": round(measured["peak_rss_mb"], 1), "target_peak_rss_mb": TARGET_RSS_MB,
            "within_target": measured["peak_rss_mb"] < TARGET_RSS_MB,
        }


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        url, pid, uid, path = sys.argv[2:6]
        print(json.dumps(asyncio.run(child(url, int(pid), int(uid), Path(path)))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--boxes", type=int, default=50, help="boxes per image")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
