"""The Redis channels of the live sockets' access watch, under the instance prefix."""

from __future__ import annotations


class LiveKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @property
    def access_changes(self) -> str:
        """Pub/sub: a user's or a project's access changed; open sockets are checked again.
        Each process also answers on `<access_changes>:ack:<process id>`."""
        return f"{self.prefix}access:changes"
