"""How live documents are named: `<project>/<item>/<labeler's user id>` for a labeler's
own annotation, `<project>/<item>/final` for the item's final label. The same names are
the rooms' names, the WebSocket path under /collab/ and the update log's key."""

from __future__ import annotations

FINAL = "final"


def document_name(project_id: int, item_id: int, annotator: int | str) -> str:
    """A labeler's document (their user id), or the final one (`FINAL`)."""
    return f"{project_id}/{item_id}/{annotator}"


def final_document(project_id: int, item_id: int) -> str:
    return document_name(project_id, item_id, FINAL)
