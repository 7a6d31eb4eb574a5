"""The WebSocket protocol under /collab on its own: a recording transport stands in for the
socket. Frames are built by websockets itself, so the protocol's own framing is checked
against the library's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Close, Frame, Opcode

from server.live.channel import ColabelWebSocketProtocol, binary_frame

HANDSHAKE = (b"GET /collab/1/2/3 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")
MAX_SIZE = 100_000


class Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1234) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def accepted() -> tuple[ColabelWebSocketProtocol, Transport, list[tuple[bytes, bool]]]:
    """A protocol past the handshake whose channel listens; and what it delivers."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(3600)

    config = Config(app, ws_max_size=MAX_SIZE, ws_per_message_deflate=False, log_level="warning")
    config.load()
    protocol = ColabelWebSocketProtocol(config, ServerState(), {})
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(HANDSHAKE)
    await protocol.send({"type": "websocket.accept"})
    assert transport.written.startswith(b"HTTP/1.1 101")
    transport.written.clear()
    delivered: list[tuple[bytes, bool]] = []
    assert protocol.channel is not None
    protocol.channel.listen(lambda data, text: delivered.append((data, text)), lambda: None, lambda: None)
    return protocol, transport, delivered


def client(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin).serialize(mask=True)


def close_code(written: bytes | bytearray) -> int:
    """The code of the close frame the server wrote (and nothing after it)."""
    assert written[0] == 0x88 and len(written) == 2 + written[1], bytes(written)
    return Close.parse(bytes(written[2:])).code


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_server_frame_is_what_websockets_would_write(length: int) -> None:
    message = bytes(range(256)) * (length // 256) + bytes(length % 256)
    assert binary_frame(message) == Frame(Opcode.BINARY, message).serialize(mask=False)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000, 1 << 20])
async def test_every_message_arrives_in_order_however_the_stream_is_cut(chunk: int) -> None:
    """Plain binary frames of every length class, with a ping, a text frame and a
    fragmented message between them: each message once, in order; the ping answered."""
    protocol, transport, delivered = await accepted()
    messages = [b"\x00\x02\x01x", b"a" * 126, b"b" * 70_000, b""]
    stream = (client(Opcode.BINARY, messages[0]) + client(Opcode.PING, b"hi")
              + client(Opcode.BINARY, messages[1]) + client(Opcode.TEXT, b"words")
              + client(Opcode.BINARY, b"frag", fin=False) + client(Opcode.CONT, b"mented")
              + client(Opcode.BINARY, messages[2]) + client(Opcode.BINARY, messages[3]))
    for start in range(0, len(stream), chunk):
        protocol.data_received(stream[start:start + chunk])
    assert delivered == [(messages[0], False), (messages[1], False), (b"words", True),
                         (b"fragmented", False), (messages[2], False), (messages[3], False)]
    assert bytes(transport.written) == Frame(Opcode.PONG, b"hi").serialize(mask=False)
    assert not transport.closing and protocol._partial is None


async def test_a_frame_over_the_size_limit_closes_with_1009_and_delivers_nothing_more() -> None:
    protocol, transport, delivered = await accepted()
    protocol.data_received(client(Opcode.BINARY, b"ok"))
    protocol.data_received(client(Opcode.BINARY, b"x" * (MAX_SIZE + 1))[:1000])
    protocol.data_received(client(Opcode.BINARY, b"late"))
    assert delivered == [(b"ok", False)]
    assert close_code(transport.written) == 1009 and transport.closing


async def test_an_unmasked_client_frame_is_a_protocol_error() -> None:
    protocol, transport, delivered = await accepted()
    protocol.data_received(Frame(Opcode.BINARY, b"bare").serialize(mask=False))
    assert delivered == [] and transport.closing
    assert close_code(transport.written) == 1002


async def test_the_clients_close_is_answered_and_nothing_after_it_is_delivered() -> None:
    protocol, transport, delivered = await accepted()
    protocol.data_received(client(Opcode.CLOSE, Close(1000, "bye").serialize())
                           + client(Opcode.BINARY, b"after"))
    assert delivered == [] and transport.closing
    assert close_code(transport.written) == 1000


async def test_the_endpoint_hears_of_a_lost_connection_even_if_it_was_lost_before_listening() -> None:
    protocol, _transport, _delivered = await accepted()
    lost: list[str] = []
    assert protocol.channel is not None
    protocol.channel.listen(lambda data, text: None, lambda: None, lambda: lost.append("now"))
    protocol.connection_lost(None)
    assert lost == ["now"]
    protocol.channel.listen(lambda data, text: None, lambda: None, lambda: lost.append("late"))
    assert lost == ["now", "late"]
