"""`colabel serve --demo`: a demo admin and a running demo project with generated images."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from PIL import Image, ImageDraw

from server.accounts.users import SELECT_BY_EMAIL, create_user
from server.data import binding as dataset_binding
from server.data import ingest
from server.data.datastores.local import LocalDatastore
from server.projects import projects
from server.projects.lifecycle import insert_project
from server.projects.project_settings import ProjectCreate
from server.services import init_connection
from server.settings import Settings

log = logging.getLogger(__name__)

DEMO_EMAIL = "demo@colabel.dev"
DEMO_PASSWORD = "colabel-demo"
DEMO_PROJECT = "Demo: shapes"
SHAPES = ("circle", "square", "triangle")
COLORS = {"red": (220, 50, 47), "green": (60, 160, 60), "blue": (38, 110, 210)}


@dataclass(frozen=True)
class DemoInfo:
    email: str
    password: str
    project_id: int


def generate_images(folder: Path, count: int = 12, seed: int = 7) -> list[Path]:
    """Draw `count` PNGs of coloured shapes on noisy backgrounds (deterministic)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        shape = SHAPES[i % len(SHAPES)]
        color = list(COLORS.values())[rng.randrange(len(COLORS))]
        img = Image.new("RGB", (320, 240), tuple(rng.randrange(200, 256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        x, y, r = rng.randrange(70, 250), rng.randrange(60, 180), rng.randrange(25, 55)
        if shape == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
        elif shape == "square":
            draw.rectangle((x - r, y - r, x + r, y + r), fill=color)
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=color)
        path = folder / f"{i:03d}_{shape}.png"
        img.save(path)
        paths.append(path)
    return paths


async def ensure_demo(settings: Settings) -> DemoInfo:
    """Create what is missing of the demo; running it twice changes nothing."""
    assert settings.database_url
    folder = settings.effective_local_roots[0] / "demo"
    if not folder.exists() or not any(folder.glob("*.png")):
        generate_images(folder)
    conn = await asyncpg.connect(settings.database_url)
    await init_connection(conn)
    try:
        async with conn.transaction():
            row = await conn.fetchrow(SELECT_BY_EMAIL, DEMO_EMAIL)
            if row is None:
                user = await create_user(conn, email=DEMO_EMAIL, password=DEMO_PASSWORD,
                                         name="Demo Admin", is_admin=True)
                uid = user.id
            else:
                uid = row["id"]
            pid = await conn.fetchval("SELECT id FROM projects WHERE name = $1", DEMO_PROJECT)
            if pid is None:
                body = ProjectCreate.model_validate({
                    "name": DEMO_PROJECT,
                    "task_type": "multiclass",
                    "labels": [{"name": "Shape", "children": [
                        {"name": s.capitalize()} for s in SHAPES
                    ]}],
                    "instructions": {"text": "Pick the **shape** you see. Use keys 1-4."},
                    "consensus": {"enabled": True, "min": 2, "max": 3},
                })
                pid = await insert_project(conn, uid, body)
                binding = await dataset_binding.validate(
                    settings,
                    dataset_binding.DatasetBody.model_validate(
                        {"datastore": {"kind": "local", "path": str(folder)}, "pattern": "**/*.*"}
                    ),
                )
                await conn.execute("UPDATE projects SET dataset = $2 WHERE id = $1", pid, binding)
                await ingest.ingest_binding(conn, pid, settings.max_items_per_project,
                                            LocalDatastore(folder), "**/*.*", kind="bind",
                                            detect_missing=False)
                await conn.execute(projects.SET_STATUS, pid, "running")
                log.info("created demo project %s", pid)
        return DemoInfo(DEMO_EMAIL, DEMO_PASSWORD, pid)
    finally:
        await conn.close()
