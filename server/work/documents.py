"""Taking an annotation out of a live document, for submits and review decisions.

The live document is the one source of truth for what a labeler submits: the browser
edits it and, when submitting, says how far its copy goes (its state vector); the server
waits until its own copy covers that, then reads the annotation out of it. Scripts that
have no live document send the plain JSON form instead, and it is written into the
document like any edit, so everyone watching sees what was submitted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Set as AbstractSet
from typing import Any

from collab import schema
from collab.errors import ProtocolError
from collab.manager import RoomManager
from collab.protocol import read_varuint
from server.errors import Conflict, Unprocessable, field_error

# How long a submit waits for the labeler's last edits to reach the server's copy of their
# document (they travel on the WebSocket, the submit on its own HTTP request).
CATCH_UP_S = 5.0
_POLL_S = 0.02


def validate(annotation: dict[str, Any], task_type: str, label_ids: AbstractSet[int]) -> None:
    """Submit-time rules for the task type and label tree, as a 422."""
    try:
        schema.validate_annotation(annotation, task_type,  # type: ignore[arg-type]
                                   label_ids=label_ids, strict_submit=True)
    except schema.SchemaError as exc:
        raise Unprocessable(str(exc), code="invalid_annotation",
                            details=[{"loc": ["annotation", exc.field], "msg": exc.reason}]) from None


def state_vector(encoded: str) -> dict[int, int]:
    """A Yjs state vector (base64 of `Y.encodeStateVector`): client id -> clock; 422 if it
    is not one."""
    try:
        raw = base64.b64decode(encoded, validate=True)
        return _clocks(raw)
    except (binascii.Error, ValueError, ProtocolError):
        raise field_error("state_vector", "not a base64-encoded Yjs state vector") from None


def _clocks(raw: bytes) -> dict[int, int]:
    count, pos = read_varuint(raw, 0)
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = read_varuint(raw, pos)
        clocks[client], pos = read_varuint(raw, pos)
    if pos != len(raw):
        raise ValueError("trailing bytes after the state vector")
    return clocks


def _covers(have: dict[int, int], want: dict[int, int]) -> bool:
    return all(have.get(client, 0) >= clock for client, clock in want.items())


async def snapshot(rooms: RoomManager, room: str, task_type: str, label_ids: AbstractSet[int], *,
                   given: dict[str, Any] | None, origin: str, author: str,
                   seen: dict[int, int] | None = None) -> dict[str, Any]:
    """The document's validated annotation. With `given` (plain JSON from a script), that
    annotation is written into the document first; with `seen` (the browser's state
    vector), the read waits until the document holds everything the browser had."""
    if given is not None:
        validate(given, task_type, label_ids)
        await rooms.edit(room, lambda doc: schema.write_annotation(
            doc, given, task_type, origin=origin, author=author), origin)  # type: ignore[arg-type]
    live = await rooms.acquire(room)
    try:
        if seen:
            deadline = time.monotonic() + CATCH_UP_S
            while not _covers(_clocks(live.doc.get_state()), seen):
                if time.monotonic() >= deadline:
                    raise Conflict("your latest edits have not reached the server yet; submit again "
                                   "once you are connected", code="document_behind")
                await asyncio.sleep(_POLL_S)
        annotation: dict[str, Any] = schema.read_annotation(live.doc, task_type)  # type: ignore[arg-type]
    finally:
        await rooms.release(live)
    validate(annotation, task_type, label_ids)
    return annotation
