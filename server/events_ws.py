"""`/events/{project}`: live progress, decisions, review changes and activity for owners
and reviewers. Events arrive through Redis from every server process; a progress
snapshot (counts by status) is sent on connect and every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import auth, events, projects
from .collab_ws import deny
from .database import DatabaseUnavailable
from .errors import ApiError
from .roles import Role
from .services import Services

log = logging.getLogger(__name__)
SNAPSHOT_EVERY_S = 5.0


async def _snapshot(services: Services, pid: int) -> str:
    counts = {r["status"]: r["n"] for r in await services.db.fetch(projects.ITEM_COUNTS, pid)}
    return json.dumps({"type": "progress", "project_id": pid,
                       "at": datetime.now(UTC).isoformat(),
                       "counts": counts, "total": sum(counts.values())})


async def events_endpoint(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    pid: int = ws.path_params["pid"]
    try:
        user = await auth.websocket_user(services, ws)
        await projects.access(services.db, user, pid, Role.REVIEWER)
    except ApiError as exc:
        await deny(ws, exc)
        return
    await ws.accept()
    pubsub = services.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(events.channel(services.settings.redis_prefix, pid))
    sender = asyncio.create_task(_pump(ws, services, pid, pubsub))
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
    except WebSocketDisconnect:
        return
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        await pubsub.aclose()


async def _pump(ws: WebSocket, services: Services, pid: int, pubsub: object) -> None:
    """Forward Redis events, and a progress snapshot every few seconds."""
    from redis.asyncio.client import PubSub

    assert isinstance(pubsub, PubSub)
    loop = asyncio.get_running_loop()
    next_snapshot = loop.time()
    while True:
        if loop.time() >= next_snapshot:
            next_snapshot = loop.time() + SNAPSHOT_EVERY_S
            try:
                await ws.send_text(await _snapshot(services, pid))
            except DatabaseUnavailable as exc:  # events keep flowing; the next snapshot will do
                log.warning("no progress snapshot for project %s: %s", pid, exc)
        message = await pubsub.get_message(timeout=1.0)
        if message is not None and message["type"] == "message":
            data = message["data"]
            await ws.send_text(data.decode() if isinstance(data, bytes) else str(data))


ROUTES = [WebSocketRoute("/events/{pid:int}", events_endpoint)]
