"""The WebSocket protocol `colabel serve` runs: uvicorn's own (on websockets' sans-I/O
protocol), plus a direct channel that the collaboration endpoint uses for its frames.

Why: a live document's traffic is many small frames, each going to several receivers.
Through ASGI every received frame is a queue hand-off, a task wake-up and a pause and
resume of the socket's reading, and every sent frame an awaited send through Starlette
and uvicorn that frames it again for each receiver. The channel hands each received
message to a callback as soon as it is parsed, and writes frames that were encoded once
for all their receivers straight to the socket, in the loop turn that produced them.

Everything else stays ASGI: the handshake (authentication happens before it is accepted),
pings, the closing handshake, and every other route and socket.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

log = logging.getLogger(__name__)

# The ASGI scope extension under which an accepted socket offers its channel.
EXTENSION = "colabel.channel"
# What `colabel serve` passes to uvicorn as its WebSocket protocol.
PROTOCOL = "server.live.channel:ColabelWebSocketProtocol"

# (message, whether it came as a text frame)
OnMessage = Callable[[bytes, bool], None]


def binary_frame(message: bytes) -> bytes:
    """`message` as one unmasked binary WebSocket frame, as a server sends it (RFC 6455
    5.2: FIN and opcode 2, then a 7-bit, 16-bit or 64-bit length). websockets' general
    `Frame.serialize` (masking, extensions, checks) costs several times this per frame,
    and the room frames every message it broadcasts; the tests check the two agree."""
    n = len(message)
    if n < 126:
        return _SHORT[n] + message
    if n < 1 << 16:
        return _MEDIUM.pack(0x82, 126, n) + message
    return _LONG.pack(0x82, 127, n) + message


_SHORT = [bytes((0x82, n)) for n in range(126)]
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


class Channel:
    """The direct channel of one socket (see the module docstring)."""

    def __init__(self, protocol: ColabelWebSocketProtocol) -> None:
        self._protocol = protocol
        self._on_message: OnMessage | None = None
        self._on_writable: Callable[[], None] | None = None

    def listen(self, on_message: OnMessage, on_writable: Callable[[], None]) -> None:
        """From now on hand every message to `on_message` as soon as it is read, those
        that arrived before and were not yet received first; `on_writable` is called when
        a full socket takes more again. A disconnect still arrives through ASGI."""
        protocol = self._protocol
        self._on_message = on_message
        self._on_writable = on_writable
        waiting = []
        while not protocol.queue.empty():
            waiting.append(protocol.queue.get_nowait())
        for event in waiting:
            if event["type"] == "websocket.receive":
                text = event.get("text")
                self.deliver(event["bytes"] if text is None else text.encode(), text is not None)
            else:
                protocol.queue.put_nowait(event)
        self.resume_reading()

    @property
    def listening(self) -> bool:
        return self._on_message is not None

    def deliver(self, message: bytes, text: bool) -> None:
        assert self._on_message is not None
        self._on_message(message, text)

    def writable(self) -> bool:
        """Whether the socket takes frames now: open, and its write buffer not full."""
        p = self._protocol
        return (p.writable.is_set() and not p.close_sent and not p.disconnected
                and not p.transport.is_closing())

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)

    def backlogged(self) -> bool:
        """Whether the socket's write buffer is full (the client reads too slowly)."""
        return not self._protocol.writable.is_set()

    def abort(self) -> None:
        """Drop the connection at once, with whatever it has not taken."""
        self._protocol.transport.abort()

    def resumed(self) -> None:
        if self._on_writable is not None:
            self._on_writable()

    def pause_reading(self) -> None:
        """Read nothing more from the socket until `resume_reading` (back-pressure)."""
        protocol = self._protocol
        if not protocol.read_paused:
            protocol.read_paused = True
            protocol.transport.pause_reading()

    def resume_reading(self) -> None:
        protocol = self._protocol
        if protocol.read_paused and not protocol.transport.is_closing():
            protocol.read_paused = False
            protocol.transport.resume_reading()


class ColabelWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with a `Channel` in every socket's scope."""

    channel: Channel | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The app's task has been created but has not run: the scope can still gain the
        # extension. A refused handshake (no 101) never reaches the app.
        if self.response.status_code == 101:
            self.channel = Channel(self)
            extensions: dict[str, Any] = self.scope["extensions"]  # type: ignore[assignment]
            extensions[EXTENSION] = {"channel": self.channel}

    def send_receive_event_to_app(self) -> None:
        channel = self.channel
        if channel is None or not channel.listening:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return  # past the app's close: nothing more is read (as uvicorn does)
        channel.deliver(bytes(data), self.curr_msg_data_type == "text")

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.channel is not None:
            self.channel.resumed()


def channel_of(ws: WebSocket) -> Channel | None:
    """The direct channel of an accepted socket (None under another server's protocol)."""
    extension = ws.scope.get("extensions", {}).get(EXTENSION)
    return None if extension is None else extension["channel"]
