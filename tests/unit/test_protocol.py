"""The y-websocket wire format: strict parsing, on the sync-update fast path and off it."""

from __future__ import annotations

import pytest

from collab import protocol
from collab.errors import ProtocolError, UnsupportedMessage


@pytest.mark.parametrize("size", [0, 1, 127, 128, 20_000])
def test_a_sync_update_parses_back_to_its_payload(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = protocol.parse(protocol.sync_update(payload))
    assert (frame.kind, frame.subtype, frame.payload) == (
        protocol.MSG_SYNC, protocol.SYNC_UPDATE, payload)


@pytest.mark.parametrize("message, error", [
    (protocol.sync_update(b"abc")[:-1], "truncated payload"),
    (protocol.sync_update(b"abc") + b"x", "trailing bytes"),
    (b"\x00\x02\x80", "truncated varint"),
    (b"\x00\x02" + b"\xff" * 9, "varint too long"),
    (protocol.sync_step1(b"\x00")[:-1], "truncated payload"),
    (protocol.awareness(b"{}") + b"x", "trailing bytes"),
    (b"", "empty frame"),
])
def test_malformed_messages_are_refused(message: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        protocol.parse(message)


@pytest.mark.parametrize("message", [b"\x00\x05\x00", b"\x07", b"\x02\x00\x00"])
def test_unknown_messages_are_unsupported(message: bytes) -> None:
    with pytest.raises(UnsupportedMessage):
        protocol.parse(message)


def test_varuints_round_trip_on_both_paths() -> None:
    for value in (0, 1, 127, 128, 300, 16_383, 16_384, 2**40):
        encoded = protocol.write_varuint(value)
        assert protocol.read_varuint(b"\x00" + encoded, 1) == (value, 1 + len(encoded))
