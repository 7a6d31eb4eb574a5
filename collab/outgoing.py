"""What the connections of one process send, written once per loop turn.

A message that a room broadcasts is queued on each receiving connection (see
`Connection.send`). At the end of the loop turn the flusher writes each connection's queue
in one write (one system call however many messages it holds), and frames every message
once for all its receivers: a busy room's broadcast costs one encoding plus one cheap
write per receiver, with no task or await per message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .room import Connection

log = logging.getLogger(__name__)

def unframed(message: bytes) -> bytes:
    """The framing of a transport that takes messages as they are (tests' recording peers)."""
    return message


class Flusher:
    """Flushes marked connections at the end of the current loop turn.

    `frame` turns a message into what goes on the wire (a WebSocket frame in the server);
    within one flush each distinct message object is framed once.
    """

    def __init__(self, frame: Callable[[bytes], bytes] = unframed) -> None:
        self._frame = frame
        self._marked: list[Connection] = []
        self._scheduled = False
        # id(message) -> (message, its frame) during one flush; the message is kept so that
        # its id cannot be reused by another object before the flush ends.
        self._framed: dict[int, tuple[bytes, bytes]] = {}

    def mark(self, conn: Connection) -> None:
        """Flush `conn` at the end of this loop turn (the caller marks each connection once)."""
        self._marked.append(conn)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def framed(self, message: bytes) -> bytes:
        known = self._framed.get(id(message))
        if known is not None:
            return known[1]
        frame = self._frame(message)
        self._framed[id(message)] = (message, frame)
        return frame

    def flush(self) -> None:
        marked, self._marked = self._marked, []
        self._scheduled = False
        try:
            for conn in marked:
                try:
                    conn.flush(self.framed)
                except Exception:  # one broken link must not hold up the others
                    log.exception("writing to a client failed; closing it")
                    conn.close_soon(1011, "internal error")
        finally:
            self._framed.clear()
