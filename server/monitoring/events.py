"""Live project events: published to Redis by whichever process made the change, and
pushed to every owner and reviewer watching `/events/{project}` on any process."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from collab.fanout import publish_all
from server.monitoring.keys import events_channel

log = logging.getLogger(__name__)


async def publish_many(client: aioredis.Redis, prefix: str,
                       events: list[tuple[int, str, dict[str, Any]]]) -> None:
    """Publish (project, kind, data) events with one command; losing them is acceptable."""
    if not events:
        return
    at = datetime.now(UTC).isoformat()
    try:
        await publish_all(client, [
            (events_channel(prefix, project_id),
             json.dumps({"type": kind, "project_id": project_id, "at": at, **data}))
            for project_id, kind, data in events])
    except Exception as exc:  # noqa: BLE001 - events are best effort; the changes are stored
        log.warning("could not publish %d events: %s", len(events), exc)


async def publish(client: aioredis.Redis, prefix: str, project_id: int, kind: str,
                  **data: Any) -> None:
    """Publish one event; losing one is acceptable (watchers also get periodic snapshots)."""
    event = {"type": kind, "project_id": project_id, "at": datetime.now(UTC).isoformat(), **data}
    try:
        await client.publish(events_channel(prefix, project_id), json.dumps(event))
    except Exception as exc:  # noqa: BLE001 - events are best effort; the change itself is stored
        log.warning("could not publish %s event for project %s: %s", kind, project_id, exc)
