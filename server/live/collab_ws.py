"""The collaboration WebSocket: `/collab/{project}/{item}/{annotator}` (y-websocket).

Authentication and permissions are settled before the handshake is accepted. A refusal
is an HTTP response (401, 403 or 404 with the usual JSON error body) where the server
supports WebSocket denial responses, and otherwise an accepted socket closed at once
with 4401, 4403 or 4404. Once accepted, frames go to the room; malformed frames close
with 1002, unsupported ones (text, unknown types) with 1003, oversized ones with 1009
and floods with 1008, without disturbing any other connection. An open socket is
checked again whenever its user's access changes (see access_watch.py): it closes with
4401 once its session or token has ended, with 4403 once the same rule refuses it, and
with 4404 once its item is deleted; a labeler's document turns read-only once its item
is decided, skipped or sent to review.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from collab.errors import ProtocolError, RoomUnavailable, UnsupportedMessage
from collab.names import FINAL, document_name
from collab.protocol import parse
from collab.room import CLOSE_POLICY, CLOSE_TRY_AGAIN, Connection, Room
from server.accounts import auth
from server.accounts.roles import Role
from server.errors import ApiError, Forbidden, NotFound, ServiceUnavailable
from server.live import access_watch
from server.live.channel import PROTOCOL, Channel, channel_of
from server.projects import projects
from server.work.plan import CLOSED

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger(__name__)

CLOSE_PROTOCOL = 1002
CLOSE_UNSUPPORTED = 1003
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_UNAVAILABLE = 1013
_ITEM_STATUS = "SELECT status FROM items WHERE project_id = $1 AND id = $2"
_MEMBER = "SELECT role FROM memberships WHERE project_id = $1 AND user_id = $2"


@dataclass(frozen=True)
class Grant:
    identity: auth.Identity
    readonly: bool

    @property
    def user_id(self) -> int:
        assert self.identity.user is not None
        return self.identity.user.id


def rights(role: Role, consensus: bool, user_id: int, annotator: str,
           annotator_is_member: bool, item_status: str) -> bool:
    """Whether a member with `role` may write the document (True) or only read it (False);
    raises when they may not open it. The same rule admits a socket and keeps it open."""
    if annotator == FINAL:
        if role >= Role.REVIEWER or not consensus:
            return True
        raise Forbidden("with consensus on, the final document is for reviewers and owners")
    if not annotator_is_member:
        raise NotFound(f"no document {annotator!r} for this item")
    if int(annotator) == user_id:
        # Once an item is decided (or waits for review), what its labelers submitted is
        # what counted: their documents are read-only, to them too, until it is re-opened.
        return item_status not in CLOSED
    if role >= Role.REVIEWER:
        return False
    raise Forbidden("labelers may open only their own documents")


def _canonical(ws: WebSocket, pid: int, iid: int, annotator: str) -> bool:
    """Whether the address names its document the one way it is named: ASCII digits without
    leading zeros ("04" or Arabic-Indic digits would otherwise open documents of their own)."""
    plain = annotator == FINAL or (
        annotator.isascii() and annotator.isdigit() and str(int(annotator)) == annotator)
    return plain and ws.scope["path"].split("/")[-3:] == [str(pid), str(iid), annotator]


async def authorize(services: Services, ws: WebSocket, pid: int, iid: int, annotator: str) -> Grant:
    """Who may open this document, and whether they may write to it."""
    identity = await auth.websocket_identity(services, ws)
    assert identity.user is not None
    if not _canonical(ws, pid, iid, annotator):
        raise NotFound(f"no document {annotator!r} for item {iid}; documents are named "
                       f"{pid}/{iid}/<user id> or {pid}/{iid}/final")
    pa = await projects.access(services.db, identity.user, pid, Role.LABELER)
    status = await services.db.fetchval(_ITEM_STATUS, pid, iid)
    if status is None:
        raise NotFound(f"item {iid} not found in project {pid}")
    member = annotator != FINAL and await services.db.fetchval(
        _MEMBER, pid, int(annotator)) is not None
    writable = rights(pa.role, bool(pa.setting("consensus").get("enabled")), identity.user.id,
                      annotator, member, status)
    return Grant(identity, readonly=not writable or pa.archived)


def _rule(grant: Grant, iid: int, annotator: str, conn: Connection) -> access_watch.Rule:
    """How an open socket is checked again: the same rule as at the handshake."""

    def recheck(project: access_watch.ProjectFacts) -> None:
        role = project.require(grant.user_id, Role.LABELER)
        status = project.items.get(iid)
        if status is None:
            raise access_watch.Gone(f"item {iid} was deleted")
        member = annotator != FINAL and project.is_member(int(annotator))
        # Rights never grow on an open socket; with today's rules they only ever shrink to
        # a refusal, and a narrower grant would take effect here without a reconnect.
        conn.readonly = conn.readonly or project.archived or not rights(
            role, project.consensus, grant.user_id, annotator, member, status)

    return recheck


async def deny(ws: WebSocket, exc: ApiError) -> None:
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse(exc.body(), status_code=exc.status))
    else:
        await ws.accept()
        await ws.close(code=4000 + exc.status, reason=exc.message[:120])


async def collab_endpoint(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    manager = services.rooms
    pid, iid = ws.path_params["pid"], ws.path_params["iid"]
    annotator: str = ws.path_params["annotator"]
    channel = channel_of(ws)
    if channel is None:
        log.error("/collab needs Colabel's WebSocket protocol: run `colabel serve`, or give "
                  "uvicorn --ws %s", PROTOCOL)
        await deny(ws, ServiceUnavailable("live documents need the server run by `colabel serve`"))
        return
    try:
        grant = await authorize(services, ws, pid, iid, annotator)
    except ApiError as exc:
        await deny(ws, exc)
        return
    await ws.accept()
    try:
        room = await manager.acquire(document_name(pid, iid, annotator))
    except RoomUnavailable as exc:
        log.warning("%s", exc)
        await ws.close(code=CLOSE_UNAVAILABLE, reason="document store unavailable; retry")
        return
    conn = manager.connect(channel, readonly=grant.readonly, user=str(grant.user_id))
    watch = services.access
    ticket = access_watch.Ticket(
        grant.identity, pid, _rule(grant, iid, annotator, conn), conn.close_soon,
        users=frozenset(() if annotator == FINAL else {int(annotator)}), item_id=iid)
    # An open document of the labeler's own counts as activity: their lease on the item
    # stays alive (see lease_keeper.py).
    keeping = (services.keeper.holding(pid, iid, grant.user_id)
               if annotator == str(grant.user_id) else contextlib.nullcontext())
    room.join(conn)
    reader = _Reader(room, conn, ticket, channel)
    try:
        with watch.watching(ticket), keeping:
            # Until the client leaves (its connection is lost) or the room closes it (too
            # slow, see Connection; even while its socket neither reads nor writes).
            channel.listen(reader.on_message, conn.resume, lambda: conn.close_soon(1000, ""))
            await conn.stopped.wait()
    finally:
        if reader.releasing is not None:
            reader.releasing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader.releasing
        room.leave(conn)
        conn.close_soon(1000, "")
        try:
            await _close(ws, channel, *(conn.closing or (1000, "")))
        finally:
            await manager.release(room)


class _Reader:
    """Applies the client's messages to the room as the channel reads them, within the
    connection's limits. A message that arrives while an announced access change is being
    checked waits (and the socket is read no further) until the verdict; one from a socket
    being closed is never applied."""

    def __init__(self, room: Room, conn: Connection, ticket: access_watch.Ticket,
                 channel: Channel) -> None:
        self.room = room
        self.conn = conn
        self.ticket = ticket
        self.channel = channel
        self.held: deque[tuple[bytes, bool]] = deque()
        self.releasing: asyncio.Task[None] | None = None

    def on_message(self, data: bytes, text: bool) -> None:
        if self.held or not self.ticket.settled.is_set():
            self.held.append((data, text))
            self.channel.pause_reading()
            if self.releasing is None or self.releasing.done():
                self.releasing = asyncio.create_task(self._release_held())
            return
        self.handle(data, text)

    async def _release_held(self) -> None:
        while self.held:
            await self.ticket.settled.wait()
            self.handle(*self.held.popleft())
        self.channel.resume_reading()

    def handle(self, data: bytes, text: bool) -> None:
        conn = self.conn
        if conn.closing is not None:
            return
        if text:
            conn.close_soon(CLOSE_UNSUPPORTED, "binary frames only")
        elif len(data) > conn.max_message_bytes:
            conn.close_soon(CLOSE_TOO_BIG, f"message larger than {conn.max_message_bytes} bytes")
        elif not conn.allow():
            conn.close_soon(CLOSE_POLICY, "too many messages; slow down")
        else:
            try:
                self.room.handle(conn, parse(data), data)
            except ProtocolError as exc:
                log.info("closing %s: %s", self.room.name, exc)
                conn.close_soon(CLOSE_PROTOCOL, str(exc)[:120])
            except UnsupportedMessage as exc:
                log.info("closing %s: %s", self.room.name, exc)
                conn.close_soon(CLOSE_UNSUPPORTED, str(exc)[:120])
            except Exception:  # it runs inside the socket's read: never let it escape there
                log.exception("closing %s after an unexpected error", self.room.name)
                conn.close_soon(CLOSE_INTERNAL, "internal error")


async def _close(ws: WebSocket, channel: Channel, code: int, reason: str) -> None:
    """Close the socket with `code`. A client closed for being too slow, or that takes
    nothing for 5 s, is cut off instead: its close frame would wait behind its backlog."""
    if code == CLOSE_TRY_AGAIN and channel.backlogged():
        channel.abort()
        return
    try:
        await asyncio.wait_for(ws.close(code=code, reason=reason), 5)
    except TimeoutError:
        channel.abort()
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # it is gone already


ROUTES = [WebSocketRoute("/collab/{pid:int}/{iid:int}/{annotator}", collab_endpoint)]
