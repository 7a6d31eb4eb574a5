"""Taking an annotation out of a live document, for submits and review decisions."""

from __future__ import annotations

from typing import Any

from collab import schema
from collab.manager import RoomManager

from .errors import Unprocessable


def validate(annotation: dict[str, Any], task_type: str, label_ids: set[int]) -> None:
    """Submit-time rules for the task type and label tree, as a 422."""
    try:
        schema.validate_annotation(annotation, task_type,  # type: ignore[arg-type]
                                   label_ids=label_ids, strict_submit=True)
    except schema.SchemaError as exc:
        raise Unprocessable(str(exc), code="invalid_annotation",
                            details=[{"loc": ["annotation", exc.field], "msg": exc.reason}]) from None


async def snapshot(rooms: RoomManager, room: str, task_type: str, label_ids: set[int], *,
                   given: dict[str, Any] | None, origin: str, author: str) -> dict[str, Any]:
    """The document's annotation, after writing `given` into it first when there is one.

    Clients without a live document send the plain JSON form; it goes through the
    document like any edit, so everyone watching sees it and the snapshot is the same.
    """
    if given is not None:
        validate(given, task_type, label_ids)
        await rooms.edit(room, lambda doc: schema.write_annotation(
            doc, given, task_type, origin=origin, author=author), origin)  # type: ignore[arg-type]
    annotation: dict[str, Any] = await rooms.read(
        room, lambda doc: schema.read_annotation(doc, task_type))  # type: ignore[arg-type]
    validate(annotation, task_type, label_ids)
    return annotation
