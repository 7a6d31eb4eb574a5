"""`/events/{project}`: live progress, decisions, review changes and activity for owners
and reviewers. Events arrive through Redis from every server process; a progress
snapshot (counts by status) is sent on connect and every few seconds. A socket whose user
loses access is closed (4401 signed out, 4403 no longer a reviewer or owner here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.accounts import auth
from server.accounts.roles import Role
from server.database import DatabaseUnavailable
from server.errors import ApiError
from server.live import access_watch
from server.live.collab_ws import deny
from server.monitoring.keys import events_channel
from server.projects import projects

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger(__name__)
SNAPSHOT_EVERY_S = 5.0


async def _snapshot(services: Services, pid: int) -> str:
    counts = {r["status"]: r["n"] for r in await services.db.fetch(projects.ITEM_COUNTS, pid)}
    return json.dumps({"type": "progress", "project_id": pid,
                       "at": datetime.now(UTC).isoformat(),
                       "counts": counts, "total": sum(counts.values())})


async def events_endpoint(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    watch = services.access
    pid: int = ws.path_params["pid"]
    try:
        identity = await auth.websocket_identity(services, ws)
        assert identity.user is not None
        await projects.access(services.db, identity.user, pid, Role.REVIEWER)
    except ApiError as exc:
        await deny(ws, exc)
        return
    await ws.accept()
    uid = identity.user.id
    pubsub = services.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(events_channel(services.settings.redis_prefix, pid))
    ended: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    def rule(project: access_watch.ProjectFacts) -> None:
        project.require(uid, Role.REVIEWER)

    def end(code: int, reason: str) -> None:
        if not ended.done():
            ended.set_result((code, reason))

    ticket = access_watch.Ticket(identity, pid, rule, end)
    sender = asyncio.create_task(_pump(ws, services, pid, pubsub, ticket))
    receiver = asyncio.create_task(_drain(ws))
    try:
        with watch.watching(ticket):
            waiting: list[asyncio.Future[Any]] = [receiver, ended]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if ended.done():
            # Access ended: nothing more is sent, and the client learns why.
            sender.cancel()
            code, reason = ended.result()
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await ws.close(code=code, reason=reason)
    finally:
        for task in (sender, receiver):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await pubsub.aclose()


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass


async def _pump(ws: WebSocket, services: Services, pid: int, pubsub: object,
                ticket: access_watch.Ticket) -> None:
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
        await ticket.wait_settled()
        if ticket.closed:
            return
        if message is not None and message["type"] == "message":
            data = message["data"]
            await ws.send_text(data.decode() if isinstance(data, bytes) else str(data))


ROUTES = [WebSocketRoute("/events/{pid:int}", events_endpoint)]
