"""The Redis channels of the cross-node fan-out, under the instance prefix."""

from __future__ import annotations


class FanoutKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def room(self, room: str) -> bytes:
        """Pub/sub: every message about one room, from any node holding it."""
        return f"{self.prefix}collab:room:{room}".encode()

    def node(self, node_id: bytes) -> bytes:
        """Pub/sub: a private channel per node, so its connection stays subscribed."""
        return f"{self.prefix}collab:node:{node_id.hex()}".encode()
