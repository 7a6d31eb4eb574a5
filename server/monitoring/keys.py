"""The Redis channels of live project events, under the instance prefix."""

from __future__ import annotations


def events_channel(prefix: str, project_id: int) -> str:
    """Pub/sub: the events of one project, for everyone watching `/events/{project}`."""
    return f"{prefix}events:{project_id}"
