"""The y-websocket wire format: lib0 varints, message types and strict frame parsing.

A frame is `varuint type` followed by a type-specific body:
- 0 SYNC: `varuint subtype` (0 step 1, 1 step 2, 2 update) + `varbytes payload`
- 1 AWARENESS: `varbytes update`
- 2 AUTH (server to client only): `varuint 0` (permission denied) + `varstring reason`
- 3 QUERY_AWARENESS: no body
Parsing is strict: truncated input, overlong varints and trailing bytes are errors, so
garbage is refused before it reaches the CRDT.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ProtocolError, UnsupportedMessage

MSG_SYNC = 0
MSG_AWARENESS = 1
MSG_AUTH = 2
MSG_QUERY_AWARENESS = 3
SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2
# JavaScript clients use doubles: lengths and ids stay below 2**53.
_MAX_VARINT_BYTES = 8


def read_varuint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a lib0 varuint at `pos`; return (value, next position)."""
    if pos < len(buf) and buf[pos] < 0x80:
        return buf[pos], pos + 1  # one byte: message types, subtypes, short lengths
    value = 0
    shift = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise ProtocolError("truncated varint")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + i + 1
        shift += 7
    raise ProtocolError("varint too long")


def write_varuint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varbytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = read_varuint(buf, pos)
    end = pos + length
    if end > len(buf):
        raise ProtocolError("truncated payload")
    return buf[pos:end], end


def varbytes(data: bytes) -> bytes:
    return write_varuint(len(data)) + data


@dataclass(frozen=True, slots=True)
class Frame:
    """A parsed client frame: its type, sync subtype (or -1) and payload."""

    kind: int
    subtype: int
    payload: bytes


def parse(frame: bytes) -> Frame:
    """Parse one client frame, refusing anything malformed or unexpected."""
    if not frame:
        raise ProtocolError("empty frame")
    if frame[0] == MSG_SYNC and len(frame) > 2 and frame[1] == SYNC_UPDATE:
        # Nearly every frame of a live document: decoded without the general path.
        length, pos = read_varuint(frame, 2)
        if pos + length != len(frame):
            raise ProtocolError("truncated payload" if pos + length > len(frame)
                                else "trailing bytes after the message")
        return Frame(MSG_SYNC, SYNC_UPDATE, frame[pos:])
    kind, pos = read_varuint(frame, 0)
    if kind == MSG_SYNC:
        subtype, pos = read_varuint(frame, pos)
        if subtype not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
            raise UnsupportedMessage(f"unknown sync message {subtype}")
        payload, pos = read_varbytes(frame, pos)
        result = Frame(kind, subtype, payload)
    elif kind == MSG_AWARENESS:
        payload, pos = read_varbytes(frame, pos)
        result = Frame(kind, -1, payload)
    elif kind == MSG_QUERY_AWARENESS:
        result = Frame(kind, -1, b"")
    else:
        raise UnsupportedMessage(f"unknown message type {kind}")
    if pos != len(frame):
        raise ProtocolError("trailing bytes after the message")
    return result


def sync_step1(state_vector: bytes) -> bytes:
    return bytes((MSG_SYNC, SYNC_STEP1)) + varbytes(state_vector)


def sync_step2(update: bytes) -> bytes:
    return bytes((MSG_SYNC, SYNC_STEP2)) + varbytes(update)


def sync_update(update: bytes) -> bytes:
    return bytes((MSG_SYNC, SYNC_UPDATE)) + varbytes(update)


def awareness(update: bytes) -> bytes:
    return bytes((MSG_AWARENESS,)) + varbytes(update)


def permission_denied(reason: str) -> bytes:
    """The y-websocket auth message: the client logs it as 'Permission denied'."""
    return bytes((MSG_AUTH, 0)) + varbytes(reason.encode())
