"""What the connections of one process send: at most two writes per connection per loop
turn, and each message framed once for all its receivers.

The first message a connection is sent in a loop turn is written at once (see
`Connection.send`), which is what a live document mostly does: one update, a handful of
receivers. Further messages to it in the same turn wait in its queue, and the flusher
writes the queue in one write (one system call however many messages it holds) when the
turn ends. A broadcast thus costs one encoding plus one cheap write per receiver, with no
task or await per message.
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
    """Counts loop turns, and flushes marked connections at the end of the current one.

    `frame` turns a message into what goes on the wire (a WebSocket frame in the server);
    a message sent to several connections one after another is framed once.
    """

    def __init__(self, frame: Callable[[bytes], bytes] = unframed) -> None:
        self._frame = frame
        self._marked: list[Connection] = []
        self._scheduled = False
        # Which loop turn this is, as far as connections are concerned: it changes when a
        # turn in which something was written or marked ends.
        self.turn = 0
        # The last message framed and its frame: a broadcast frames its message for its
        # first receiver and reuses the frame for the others. Dropped when the turn ends.
        self._last: bytes | None = None
        self._last_frame = b""

    def opened(self) -> int:
        """The current turn, making sure it ends (call before writing in it)."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return self.turn

    def mark(self, conn: Connection) -> None:
        """Flush `conn` at the end of this loop turn (the caller marks each connection once)."""
        self._marked.append(conn)
        self.opened()

    def framed(self, message: bytes) -> bytes:
        if message is not self._last:
            self._last, self._last_frame = message, self._frame(message)
        return self._last_frame

    def flush(self) -> None:
        """End the turn: write every marked connection's queue."""
        marked, self._marked = self._marked, []
        self._scheduled = False
        self.turn += 1
        try:
            for conn in marked:
                try:
                    conn.flush(self.framed)
                except Exception:  # one broken link must not hold up the others
                    log.exception("writing to a client failed; closing it")
                    conn.close_soon(1011, "internal error")
        finally:
            self._last = None
