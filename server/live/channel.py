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

import struct
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask


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
        self._transport = protocol.transport
        # Where messages go once the endpoint listens (None until then).
        self.on_message: OnMessage | None = None
        self._on_writable: Callable[[], None] | None = None
        self._on_lost: Callable[[], None] | None = None

    def listen(self, on_message: OnMessage, on_writable: Callable[[], None],
               on_lost: Callable[[], None]) -> None:
        """From now on hand every message to `on_message` as soon as it is read, those
        that arrived before and were not yet received first; `on_writable` is called when
        a full socket takes more again, and `on_lost` once the connection is gone (at
        once if it already is)."""
        protocol = self._protocol
        self.on_message = on_message
        self._on_writable = on_writable
        self._on_lost = on_lost
        waiting = []
        while not protocol.queue.empty():
            waiting.append(protocol.queue.get_nowait())
        for event in waiting:
            if event["type"] == "websocket.receive":
                text = event.get("text")
                data = text.encode() if text is not None else event.get("bytes") or b""
                self.deliver(data, text is not None)
            else:
                protocol.queue.put_nowait(event)
        self.resume_reading()
        if protocol.disconnected:
            on_lost()

    def lost(self) -> None:
        if self._on_lost is not None:
            self._on_lost()

    def deliver(self, message: bytes, text: bool) -> None:
        assert self.on_message is not None
        self.on_message(message, text)

    def writable(self) -> bool:
        """Whether the socket takes frames now: open, and its write buffer not full."""
        p = self._protocol
        return (not p.close_sent and not p.disconnected and p.writable.is_set()
                and not self._transport.is_closing())

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def backlogged(self) -> bool:
        """Whether the socket's write buffer is full (the client reads too slowly)."""
        return not self._protocol.writable.is_set()

    def abort(self) -> None:
        """Drop the connection at once, with whatever it has not taken."""
        self._transport.abort()

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
    """uvicorn's sans-I/O WebSocket protocol with a `Channel` in every socket's scope.

    Once the handshake is done it also cuts the client's byte stream into frames itself
    (RFC 6455 5.2 headers only). A whole, unfragmented, masked binary frame without
    extension bits, on a socket whose channel listens, is unmasked (websockets' C
    `apply_mask`) and delivered straight away: that is nearly every frame a live document
    receives, and websockets' generator-based parser costs several times more per frame.
    Every other frame (pings, pongs, close, text, fragments, compressed ones) is handed to
    websockets whole, one at a time, so its parser always stands at a frame boundary and
    keeps every rule it enforces; a frame over the size limit is handed over from its
    header, websockets closes with 1009, and the stream stays with it from there.
    """

    channel: Channel | None = None
    # True while this protocol cuts the stream into frames (see the class docstring).
    _framing = False
    # The start of a frame whose end has not arrived yet.
    _partial: bytearray | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The app's task has been created but has not run: the scope can still gain the
        # extension. A refused handshake (no 101) never reaches the app.
        if self.response.status_code == 101:
            self.channel = Channel(self)
            extensions: dict[str, Any] = self.scope["extensions"]
            extensions[EXTENSION] = {"channel": self.channel}

    def data_received(self, data: bytes) -> None:
        if not self._framing:
            if not self._may_frame():
                super().data_received(data)
                return
            self._framing = True
        if self._partial:
            self._partial += data
            buf: bytes | bytearray = self._partial
        else:
            buf = data
        end = len(buf)
        pos = 0
        deliver = self._direct()
        max_size = self.conn.max_message_size
        while pos < end:
            # The frame header (RFC 6455 5.2): FIN, RSV and opcode; MASK and length.
            if end - pos < 2:
                break
            head1, head2 = buf[pos], buf[pos + 1]
            length, at = head2 & 0x7F, pos + 2
            if length >= 126:
                size = 2 if length == 126 else 8
                if end - at < size:
                    break
                length, at = int.from_bytes(buf[at:at + size], "big"), at + size
            if max_size is not None and length > max_size:
                # websockets refuses it from its header; the stream is its own from here.
                self._framing = False
                super().data_received(bytes(buf[pos:]))
                pos = end
                break
            masked = head2 & 0x80
            stop = at + length + (4 if masked else 0)
            if stop > end:
                break  # its end has not arrived
            if head1 == 0x82 and masked and deliver is not None:
                deliver(apply_mask(buf[at + 4:stop], buf[at:at + 4]), False)
            else:
                # Whole, so websockets stays at a frame boundary; it may change the state.
                super().data_received(bytes(buf[pos:stop]))
                if self.transport.is_closing():
                    pos = end  # what follows a close is never read
                    break
                deliver = self._direct()
            pos = stop
        self._partial = bytearray(buf[pos:]) if pos < end and self._framing else None

    def _may_frame(self) -> bool:
        """Whether to start framing: the handshake is done and websockets holds no byte of
        a frame (every byte after the handshake reaches this protocol first)."""
        return (self.channel is not None and self.handshake_complete
                and self.initial_response is None and self.conn.state is State.OPEN
                and not self.conn.reader.buffer)

    def _direct(self) -> OnMessage | None:
        """Where plain binary frames go straight to, while they may (else None)."""
        channel = self.channel
        if (channel is None or channel.on_message is None or self.close_sent
                or self.conn.state is not State.OPEN or self.conn.expect_continuation_frame):
            return None
        return channel.on_message

    def send_receive_event_to_app(self) -> None:
        channel = self.channel
        if channel is None or channel.on_message is None:
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

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.channel is not None:
            self.channel.lost()


def channel_of(ws: WebSocket) -> Channel | None:
    """The direct channel of an accepted socket (None under another server's protocol)."""
    extension = ws.scope.get("extensions", {}).get(EXTENSION)
    return None if extension is None else extension["channel"]
