"""The ML worker every server process runs: when to train, training through the model
service, predictions computed ahead for the head of the queue, and similarity order.

Postgres decides who does what: a model version is claimed with `SKIP LOCKED`, and at most
one version per project waits or trains (unique index).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from server.data.datastores.base import DatastoreError
from server.data.datastores.factory import open_datastore
from server.ml.assist import DECIDED_COUNT, LATEST_MODEL, READY_MODEL, SUPPORTED, request_training
from server.ml.prelabels import prelabel_from
from server.work.queue_state import forget_queue

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger(__name__)

PREDICT_AHEAD = 64        # items predicted per project and worker step


TRAIN_CAP = 20_000        # most recent decided items a training run uses


RETRAIN_GROWTH = 1.5      # retrain once decided items grew by half since the last run


TRAINING_STALE_S = 6 * 3600


_ML_PROJECTS = """
SELECT id, name, task_type, status, dataset, consensus, ml_assist FROM projects
WHERE deleted_at IS NULL AND status IN ('running', 'paused', 'completed')
  AND (ml_assist ->> 'enabled')::boolean AND task_type = ANY($1::text[])
"""






_CLAIM = """
UPDATE ml_models SET status = 'training', started_at = now()
WHERE id = (SELECT id FROM ml_models WHERE status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING *
"""


_STALE = f"""
UPDATE ml_models SET status = 'failed', error = 'training stopped with its process', finished_at = now()
WHERE status = 'training' AND started_at < now() - interval '{TRAINING_STALE_S} seconds'
"""


_SAMPLES = """
SELECT id, key, final FROM items
WHERE project_id = $1 AND status = 'labeled' AND final IS NOT NULL AND media_kind = 'image'
ORDER BY decided_at DESC NULLS LAST, id DESC LIMIT $2
"""


_DONE = """
UPDATE ml_models SET status = 'ready', trained_on = $2, threshold = $3, metrics = $4, class_counts = $5,
                     state_path = $6, finished_at = now()
WHERE id = $1
"""


_FAILED = "UPDATE ml_models SET status = 'failed', error = $2, finished_at = now() WHERE id = $1"


_RETIRE = """
UPDATE ml_models SET status = 'retired' WHERE project_id = $1 AND status = 'ready' AND version < $2
"""


_TO_PREDICT = """
SELECT i.id, i.key FROM items i
WHERE i.project_id = $1 AND i.status IN ('unlabeled', 'in_progress') AND i.media_kind = 'image'
  AND NOT EXISTS (SELECT 1 FROM ml_predictions p WHERE p.item_id = i.id AND p.model_version = $2)
ORDER BY coalesce(i.cluster_rank, i.shuffle_key) LIMIT $3
"""


_SAVE_PREDICTION = """
INSERT INTO ml_predictions (item_id, project_id, model_version, prelabel) VALUES ($1, $2, $3, $4)
ON CONFLICT (item_id) DO UPDATE SET model_version = $3, prelabel = $4, created_at = now()
"""


_OPEN_ITEMS = """
SELECT id, key FROM items
WHERE project_id = $1 AND status IN ('unlabeled', 'in_progress') AND media_kind = 'image' ORDER BY id
"""


_SET_RANKS = """
UPDATE items SET cluster_rank = r.rank FROM unnest($1::bigint[], $2::float8[]) AS r(id, rank)
WHERE items.id = r.id
"""


_CLUSTERED = "UPDATE ml_models SET clustered_at = now() WHERE id = $1"


def _allowed_weights(path: Path, roots: tuple[Path, ...]) -> bool:
    """Owners name a weights file on the server: only inside the folders the admin opened."""
    resolved = path.resolve()
    return resolved.is_file() and any(resolved.is_relative_to(r.resolve()) for r in roots)


Box = tuple[int, float, float, float, float]


def _labels_in(final: dict[str, Any], task_type: str) -> tuple[list[int], list[Box]]:
    if task_type == "bbox":
        return [], [(s["label"], s["x"], s["y"], s["w"], s["h"]) for s in final.get("shapes", [])
                    if s.get("kind") == "box"]
    return list(final.get("classes", [])), []


@dataclass
class _Deployed:
    version: int


class MLWorker:
    """One process's share of ML work: training, deploying, predicting ahead, clustering."""

    def __init__(self, services: Services, service: Any) -> None:
        self.services = services
        self.service = service
        self.deployed: dict[int, _Deployed] = {}
        self.last_error: dict[int, str] = {}

    async def step(self) -> int:
        db = self.services.db
        await db.execute(_STALE)
        did = 0
        projects = await db.fetch(_ML_PROJECTS, list(SUPPORTED))
        for project in projects:
            await self._maybe_queue(project)
        # Projects that switched ML off (or were deleted): their deployments scale down.
        for pid in set(self.deployed) - {p["id"] for p in projects}:
            try:
                await self.service.stop(pid)
            except Exception as exc:  # noqa: BLE001 - stopping is best effort; retried next step
                self._note(pid, f"could not stop the deployment: {exc}")
                continue
            del self.deployed[pid]
        claimed = await db.fetchrow(_CLAIM)
        if claimed is not None:
            await self._train(claimed)
            did += 1
        for project in await db.fetch(_ML_PROJECTS, list(SUPPORTED)):
            if project["status"] != "running":
                continue
            try:
                did += await self._predict_ahead(project)
            except Exception as exc:  # noqa: BLE001 - the service being down must not stop labeling
                self._note(project["id"], f"{type(exc).__name__}: {exc}")
        return did

    def _note(self, project_id: int, message: str) -> None:
        if self.last_error.get(project_id) != message:
            log.warning("ML for project %s: %s", project_id, message)
        self.last_error[project_id] = message

    async def _maybe_queue(self, project: asyncpg.Record) -> None:
        db, pid = self.services.db, project["id"]
        decided = int(await db.fetchval(DECIDED_COUNT, pid))
        latest = await db.fetchrow(LATEST_MODEL, pid)
        need = int(project["ml_assist"].get("min_labeled", 300))
        if latest is None:
            if decided >= need:
                await request_training(db, pid, "threshold")
        elif latest["status"] in ("ready", "failed", "retired") and latest["trained_on"] is not None:
            if decided >= max(latest["trained_on"] * RETRAIN_GROWTH, latest["trained_on"] + 10):
                await request_training(db, pid, "more_labels")

    async def _images(self, project: asyncpg.Record, keys: list[str]) -> dict[str, bytes]:
        settings = self.services.settings
        store = open_datastore(settings, project["id"], project["dataset"])
        out: dict[str, bytes] = {}
        try:
            for key in keys:
                try:
                    out[key] = await store.read(key, settings.media_max_bytes)
                except (DatastoreError, OSError) as exc:
                    log.warning("ML could not read %s of project %s: %s", key, project["id"], exc)
        finally:
            await store.close()
        return out

    async def _train(self, model: asyncpg.Record) -> None:
        from inference.train import Sample, TrainConfig

        db, settings = self.services.db, self.services.settings
        pid = model["project_id"]
        project = await db.fetchrow("SELECT * FROM projects WHERE id = $1", pid)
        try:
            rows = await db.fetch(_SAMPLES, pid, TRAIN_CAP)
            images = await self._images(project, [r["key"] for r in rows])
            labels = [r["id"] for r in await db.fetch(
                "SELECT id FROM labels WHERE project_id = $1 ORDER BY position", pid)]
            samples = []
            for r in rows:
                if r["key"] not in images:
                    continue
                classes, boxes = _labels_in(r["final"], project["task_type"])
                samples.append(Sample(image=images[r["key"]], classes=classes, boxes=boxes))
            if len(samples) < 2:
                raise ValueError(f"only {len(samples)} labeled image(s) to learn from")
            ml = project["ml_assist"]
            weights = ml.get("backbone_weights")
            if weights and not _allowed_weights(Path(weights), settings.local_roots):
                raise ValueError("backbone_weights must be a file inside COLABEL_LOCAL_ROOTS")
            previous = await db.fetchrow(READY_MODEL, pid)
            config = TrainConfig(
                task=project["task_type"], classes=labels, input_size=settings.ml_input_size,
                epochs=settings.ml_epochs, precision_target=float(ml.get("precision_target", 0.9)),
                backbone_weights=weights or None,
                previous_state=Path(previous["state_path"]).read_bytes()
                if previous is not None and previous["state_path"] and Path(previous["state_path"]).exists()
                else None,
            )
            result = await self.service.train(config, samples)
            folder = settings.models_dir / str(pid)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"v{model['version']}.pt"
            await asyncio.to_thread(path.write_bytes, result.state)
            await db.execute(_DONE, model["id"], len(samples), result.threshold,
                             orjson.loads(orjson.dumps(result.metrics, option=orjson.OPT_SERIALIZE_NUMPY)),
                             {str(k): v for k, v in result.class_counts.items()}, str(path))
            await db.execute(_RETIRE, pid, model["version"])
            log.info("trained model v%s of project %s on %d items", model["version"], pid, len(samples))
        except Exception as exc:  # noqa: BLE001 - a failed run is recorded on its version
            log.exception("training model v%s of project %s failed", model["version"], pid)
            await db.execute(_FAILED, model["id"], f"{type(exc).__name__}: {exc}"[:1000])

    async def _ensure_deployed(self, pid: int, model: asyncpg.Record) -> None:
        current = self.deployed.get(pid)
        if current is not None and current.version == model["version"]:
            return
        state = await asyncio.to_thread(Path(model["state_path"]).read_bytes)
        await self.service.deploy(pid, model["version"], state)
        if current is not None:
            await self.service.stop(pid, current.version)
        self.deployed[pid] = _Deployed(model["version"])

    async def _predict_ahead(self, project: asyncpg.Record) -> int:
        db, pid = self.services.db, project["id"]
        model = await db.fetchrow(READY_MODEL, pid)
        if model is None or model["threshold"] is None:
            return 0
        await self._ensure_deployed(pid, model)
        if project["task_type"] != "bbox" and model["clustered_at"] is None:
            await self._cluster(project, model)
        rows = await db.fetch(_TO_PREDICT, pid, model["version"], PREDICT_AHEAD)
        if not rows:
            return 0
        images = await self._images(project, [r["key"] for r in rows])
        items = [(r["id"], images[r["key"]]) for r in rows if r["key"] in images]
        n = 0
        async for item_id, prediction in self.service.predict(pid, model["version"], items):
            prelabel = prelabel_from(prediction, project["task_type"], float(model["threshold"]),
                                     model["version"])
            await db.execute(_SAVE_PREDICTION, item_id, pid, model["version"], prelabel)
            n += 1
        self.last_error.pop(pid, None)
        return n

    async def _cluster(self, project: asyncpg.Record, model: asyncpg.Record) -> None:
        """Put open classification items in similarity order, so a page of 4, 6 or 9 from
        the queue's head shows similar images; the queue is rebuilt in that order."""
        from inference.clusters import similar_order

        db, pid = self.services.db, project["id"]
        async with db.bulk() as conn:  # every open item of the project
            rows = await conn.fetch(_OPEN_ITEMS, pid)
        embeddings: dict[int, Any] = {}
        for start in range(0, len(rows), 256):
            chunk = rows[start:start + 256]
            images = await self._images(project, [r["key"] for r in chunk])
            items = [(r["id"], images[r["key"]]) for r in chunk if r["key"] in images]
            embeddings.update(await self.service.embed(pid, model["version"], items))
        ids = list(embeddings)
        if ids:
            import numpy as np

            order = await asyncio.to_thread(similar_order, np.stack([embeddings[i] for i in ids]), 9)
            ranks = [len(order)] * len(ids)
            for position, index in enumerate(order):
                ranks[index] = position
            async with db.bulk() as conn:
                await conn.execute(_SET_RANKS, ids, [r / max(1, len(ids)) for r in ranks])
        await db.execute(_CLUSTERED, model["id"])
        await forget_queue(self.services.redis, self.services.settings.redis_prefix, pid)
        log.info("project %s: %d items in similarity order (model v%s)", pid, len(ids), model["version"])
