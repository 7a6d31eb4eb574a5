"""Live project events: published to Redis by whichever process made the change, and
pushed to every owner and reviewer watching `/events/{project}` on any process."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from collab.batches import Batches
from collab.fanout import publish_all
from server.monitoring.keys import events_channel

log = logging.getLogger(__name__)


class Outbox:
    """A process's project events (leased, submitted, released, decided, export progress...),
    published in batches: `emit` queues an event and returns at once, and whatever was queued meanwhile
    goes out in one command (one round trip), in order.

    A labeler's lease or submit is answered without waiting for Redis to take its event, and
    under load the events of many requests share one command. They are best effort as
    before: an event lost with its process is made up for by the watchers' snapshots.
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._batches: Batches[tuple[int, str, dict[str, Any]]] = Batches(self._publish, "events")

    def emit(self, project_id: int, kind: str, **data: Any) -> None:
        self.emit_many([(project_id, kind, data)])

    def emit_many(self, events: list[tuple[int, str, dict[str, Any]]]) -> None:
        """Queue (project, kind, data) events; they are published within a loop turn or two."""
        at = datetime.now(UTC).isoformat()
        self._batches.put((pid, kind, {"at": at, **data}) for pid, kind, data in events)

    async def _publish(self, batch: list[tuple[int, str, dict[str, Any]]]) -> None:
        await publish_all(self.client, [
            (events_channel(self.prefix, pid), json.dumps({"type": kind, "project_id": pid, **data}))
            for pid, kind, data in batch])

    async def drain(self) -> None:
        """Wait until what was emitted so far has been published (or given up on)."""
        await self._batches.drain()
