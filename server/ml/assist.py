"""Whether and how a project is assisted by a model: the model service's availability,
the task types it covers, asking for a training run, and the status the API shows.

The model service (Ray Serve) may be down: labeling then goes on without prelabels and
`GET …/ml` says why.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import asyncpg

from inference import extra as ml_extra
from server.errors import Conflict
from server.ml import service_owner
from server.settings import Settings

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger(__name__)

SUPPORTED = ("multiclass", "multilabel", "bbox")


DECIDED_COUNT = """
SELECT count(*) FROM items
WHERE project_id = $1 AND status = 'labeled' AND final IS NOT NULL AND media_kind = 'image'
"""
READY_MODEL = """
SELECT * FROM ml_models WHERE project_id = $1 AND status = 'ready' ORDER BY version DESC LIMIT 1
"""
LATEST_MODEL = """
SELECT * FROM ml_models WHERE project_id = $1 ORDER BY version DESC LIMIT 1
"""


_ENQUEUE = """
INSERT INTO ml_models (project_id, version, reason)
SELECT $1, coalesce(max(version), 0) + 1, $2 FROM ml_models WHERE project_id = $1
ON CONFLICT DO NOTHING RETURNING id, version
"""


OPEN_ITEMS = (
    "SELECT count(*) FROM items WHERE project_id = $1 AND status IN ('unlabeled', 'in_progress') "
    "AND media_kind = 'image'"
)
_COUNTS = """
SELECT count(*) FILTER (WHERE p.model_version = $2) AS predicted,
       count(*) FILTER (WHERE p.model_version = $2 AND p.prelabel <> '{}'::jsonb) AS with_prelabel
FROM ml_predictions p WHERE p.project_id = $1
"""


def service_unavailable(settings: Settings) -> str | None:
    """Why this server process runs no model service (None when it does): switched off, or
    installed without the `ml` extra, with how to enable it."""
    if not settings.ml_enabled:
        return "ML assistance is switched off on this server (COLABEL_ML_ENABLED=false)"
    return ml_extra.unavailable_reason()


async def _service_status(services: Services, service: Any) -> dict[str, Any]:
    if service is not None:
        status: dict[str, Any] = await service.status()
        return status
    if services.models_elsewhere:
        return await service_owner.shared(services)
    return {"up": False, "reason": service_unavailable(services.settings)}


def unsupported_reason(task_type: str) -> str | None:
    if task_type == "semantic":
        return "semantic segmentation projects get no ML assistance"
    if task_type == "polygon":
        return "ML assistance covers classification and bounding boxes"
    return None


async def request_training(db: asyncpg.Pool | asyncpg.Connection, project_id: int, reason: str) -> int | None:
    """Queue a new model version; None when one is already waiting or training."""
    row = await db.fetchrow(_ENQUEUE, project_id, reason)
    return int(row["version"]) if row else None


async def train_now(db: asyncpg.Pool | asyncpg.Connection, project: asyncpg.Record) -> int:
    """An owner's "train now": queue a new model version and return it, unless the project
    cannot be assisted, has assistance off, no model service can run here, or a version is
    already waiting or training."""
    reason = unsupported_reason(project["task_type"])
    if reason:
        raise Conflict(reason, code="ml_unsupported")
    if not project["ml_assist"].get("enabled"):
        raise Conflict("ML assistance is off for this project; enable it in the settings first",
                       code="ml_disabled")
    missing = ml_extra.unavailable_reason()
    if missing:
        raise Conflict(missing, code="ml_unavailable")
    version = await request_training(db, project["id"], "owner")
    if version is None:
        raise Conflict("a model version is already waiting or training", code="ml_training")
    return version


def model_json(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    submitted = row["prelabels_submitted"]
    return {
        "version": row["version"], "status": row["status"], "reason": row["reason"],
        "trained_on": row["trained_on"], "threshold": row["threshold"], "metrics": row["metrics"],
        "class_counts": row["class_counts"], "error": row["error"],
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "prelabels": {"shown": row["prelabels_shown"], "submitted": submitted,
                      "accepted_unchanged": row["prelabels_accepted"],
                      "acceptance_rate": row["prelabels_accepted"] / submitted if submitted else None},
    }


async def status_json(services: Services, service: Any, project: asyncpg.Record) -> dict[str, Any]:
    """Everything `GET …/ml` and the monitoring page show."""
    db, pid = services.db, project["id"]
    settings = dict(project["ml_assist"])
    reason = unsupported_reason(project["task_type"])
    decided = int(await db.fetchval(DECIDED_COUNT, pid))
    latest = await db.fetchrow(LATEST_MODEL, pid)
    ready = await db.fetchrow(READY_MODEL, pid)
    missing = ml_extra.unavailable_reason()
    if not settings.get("enabled"):
        phase = "off"
    elif reason:
        phase = "unsupported"
    elif missing and ready is None:
        # Nothing trains or serves until a server with the extra runs (another node may).
        phase, reason = "unavailable", missing
    elif latest is not None and latest["status"] in ("queued", "training"):
        phase = "training"
    elif ready is not None:
        phase = "ready"
    elif latest is not None and latest["status"] == "failed":
        phase = "failed"
    else:
        phase = "waiting_for_labels"
    counts = await db.fetchrow(_COUNTS, pid, ready["version"] if ready else -1)
    open_items = await db.fetchval(OPEN_ITEMS, pid)
    return {
        "settings": settings, "phase": phase, "reason": reason, "decided": decided,
        "min_labeled": settings.get("min_labeled"),
        "model": model_json(ready), "latest": model_json(latest),
        "predictions": {"predicted": counts["predicted"], "with_prelabel": counts["with_prelabel"],
                        "open_items": open_items,
                        "prelabel_share": counts["with_prelabel"] / counts["predicted"]
                        if counts["predicted"] else None},
        "service": await _service_status(services, service),
    }
