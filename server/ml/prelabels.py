"""Prelabels: a model's predictions shown to labelers as suggestions, written into their
documents when items are leased, and how often labelers accept them unchanged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import asyncpg
from pycrdt import Map

from collab import schema
from collab.manager import RoomManager
from server.ml.assist import SUPPORTED

log = logging.getLogger(__name__)

_FOR_LEASES = """
SELECT p.item_id, p.model_version, p.prelabel FROM ml_predictions p
JOIN ml_models m ON m.project_id = p.project_id AND m.version = p.model_version AND m.status = 'ready'
WHERE p.item_id = ANY($1::bigint[]) AND p.prelabel <> '{}'::jsonb
"""


# Which model version each lease was shown, for the page's leases in one statement.
_MARK_LEASES = """
UPDATE leases SET prelabel_version = t.version
FROM unnest($1::text[], $2::int[]) AS t(id, version) WHERE leases.id = t.id
"""


_SHOWN = """
UPDATE ml_models SET prelabels_shown = prelabels_shown + $3 WHERE project_id = $1 AND version = $2
"""


_OUTCOME = """
UPDATE ml_models SET prelabels_submitted = prelabels_submitted + $3,
                     prelabels_accepted = prelabels_accepted + $4
WHERE project_id = $1 AND version = $2
"""


_PREDICTIONS_OF = """
SELECT p.item_id, p.model_version, p.prelabel
FROM ml_predictions p JOIN unnest($1::bigint[], $2::int[]) AS t(i, v)
  ON p.item_id = t.i AND p.model_version = t.v
"""


def prelabel_from(prediction: dict[str, Any], task_type: str, threshold: float,
                  version: int) -> dict[str, Any]:
    """The part of a prediction shown to labelers (confidence >= threshold), plain JSON form."""
    if task_type == "bbox":
        shapes = [{"id": f"m{version}-{n}", "kind": "box", "label": int(b["label"]),
                   "x": b["x"], "y": b["y"], "w": b["w"], "h": b["h"],
                   "source": "model", "confidence": round(float(b["confidence"]), 4)}
                  for n, b in enumerate(prediction.get("boxes", [])) if b["confidence"] >= threshold]
        return {"shapes": shapes} if shapes else {}
    scores = {int(k): float(v) for k, v in prediction.get("classes", {}).items()}
    if task_type == "multiclass":
        best = max(scores, key=lambda k: scores[k], default=None)
        chosen = [best] if best is not None and scores[best] >= threshold else []
    else:
        chosen = sorted(k for k, v in scores.items() if v >= threshold)
    if not chosen:
        return {}
    return {"classes": chosen, "confidence": {str(k): round(scores[k], 4) for k in chosen}}


def write_prelabel(doc: Any, prelabel: dict[str, Any], task_type: str) -> None:
    """Put a prelabel into a labeler's document as suggestions: model shapes (source model,
    with confidence), or classes whose value is the confidence (a number, not `true`: only
    `true` counts as chosen, so a suggestion is not a label until the labeler accepts it)."""
    if "shapes" in prelabel:
        schema.write_annotation(doc, {"shapes": prelabel["shapes"]}, task_type,  # type: ignore[arg-type]
                                origin="model", author="model", replace=False)
        return
    classes = doc.get("classes", type=Map)
    for label in prelabel.get("classes", []):
        if str(label) not in classes:
            classes[str(label)] = float(prelabel["confidence"][str(label)])


def accepted_unchanged(prelabel: dict[str, Any], submitted: dict[str, Any]) -> bool:
    """Whether the labeler submitted exactly what the model suggested."""
    if "classes" in prelabel:
        return sorted(submitted.get("classes", [])) == sorted(prelabel["classes"])
    mine = {s["id"]: s for s in submitted.get("shapes", [])}
    if set(mine) != {s["id"] for s in prelabel.get("shapes", [])}:
        return False
    return all(mine[s["id"]]["label"] == s["label"]
               and all(abs(mine[s["id"]][k] - s[k]) < 1e-9 for k in ("x", "y", "w", "h"))
               for s in prelabel["shapes"])


async def prelabel_leases(db: asyncpg.Pool, rooms: RoomManager, project_id: int, task_type: str,
                          leases: list[tuple[str, int, str]]) -> dict[int, dict[str, Any]]:
    """Write the ready prelabels of freshly leased items into their labelers' documents;
    return item id -> prelabel (plain JSON, `source` model) for the lease answer.
    leases: (lease id, item id, document room)."""
    if task_type not in SUPPORTED or not leases:
        return {}
    rows = {r["item_id"]: r for r in await db.fetch(_FOR_LEASES, [iid for _, iid, _ in leases])}
    shown = [(lid, iid, room) for lid, iid, room in leases if iid in rows]
    if not shown:
        return {}
    edits: list[tuple[str, Callable[[Any], None], str]] = [
        (room, partial(write_prelabel, prelabel=rows[iid]["prelabel"], task_type=task_type), "model")
        for _, iid, room in shown]
    by_version: dict[int, int] = {}
    for _, iid, _ in shown:
        by_version[rows[iid]["model_version"]] = by_version.get(rows[iid]["model_version"], 0) + 1
    # One transaction for the page: the documents no one has open here are read together and
    # their suggestions logged with the leases' marks (a document loaded and stored per
    # lease cost four statements an item, and twice a plain lease's CPU).
    async with db.acquire() as conn, conn.transaction():
        committed = await rooms.edit_in(conn, edits)
        await conn.execute(_MARK_LEASES, [lid for lid, _, _ in shown],
                           [rows[iid]["model_version"] for _, iid, _ in shown])
        for version, n in sorted(by_version.items()):
            await conn.execute(_SHOWN, project_id, version, n)
    committed()
    return {iid: {**rows[iid]["prelabel"], "source": "model", "model_version": rows[iid]["model_version"]}
            for _, iid, _ in shown}


async def record_outcomes(conn: asyncpg.Connection,
                          submitted: list[tuple[int, int, int | None, dict[str, Any]]]) -> None:
    """Count submits of prelabeled items, and whether each prelabel went in unchanged:
    (project, item, model version shown or None, annotation submitted) each."""
    shown = [(p, i, v, a) for p, i, v, a in submitted if v is not None]
    if not shown:
        return
    prelabels = {(r["item_id"], r["model_version"]): r["prelabel"] for r in await conn.fetch(
        _PREDICTIONS_OF, [i for _, i, _, _ in shown], [v for _, _, v, _ in shown])}
    counts: dict[tuple[int, int], list[int]] = {}
    for pid, iid, version, annotation in shown:
        prelabel = prelabels.get((iid, version))
        if prelabel is not None:
            count = counts.setdefault((pid, version), [0, 0])
            count[0] += 1
            count[1] += accepted_unchanged(prelabel, annotation)
    for (pid, version), (n, accepted) in sorted(counts.items()):
        await conn.execute(_OUTCOME, pid, version, n, accepted)
