"""Every Redis key of the work queue, under the instance prefix.

The Lua scripts build per-item keys from the same prefix (`item_prefix`), so the layout
lives here and in the scripts only. The dispatcher assumes a single Redis (no cluster):
scripts touch per-item keys they derive themselves.
"""

from __future__ import annotations


class DispatchKeys:
    def __init__(self, prefix: str, project_id: int) -> None:
        self.base = f"{prefix}d:{project_id}:"
        self._lock = f"{prefix}dlock:{project_id}"

    @property
    def epoch(self) -> str:
        """Present while the project's dispatcher state is built; gone means rebuild."""
        return self.base + "epoch"

    @property
    def ready(self) -> str:
        """Sorted set: items some labeler has held that can take another one, by priority."""
        return self.base + "ready"

    @property
    def fresh(self) -> str:
        """Sorted set: items no labeler has held yet, by priority (shuffle order). Any
        labeler can take its head, so leasing never scans past other people's work."""
        return self.base + "fresh"

    @property
    def leases(self) -> str:
        """Sorted set: active lease id -> expiry (ms since the epoch)."""
        return self.base + "leases"

    @property
    def conf(self) -> str:
        """Hash: default target (min) for items without their own state."""
        return self.base + "conf"

    @property
    def item_prefix(self) -> str:
        """Item state hashes are `<item_prefix>i:<id>`, labeler sets `<item_prefix>s:<id>`,
        lease hashes `<item_prefix>l:<lease id>`."""
        return self.base

    @property
    def lock(self) -> str:
        """Held while one process rebuilds (or forgets) the project's queue; outside the
        project's key space, so dropping the queue's keys leaves it alone."""
        return self._lock

    def item(self, item_id: int) -> str:
        return f"{self.base}i:{item_id}"

    def seen(self, item_id: int) -> str:
        return f"{self.base}s:{item_id}"

    def lease(self, lease_id: str) -> str:
        return f"{self.base}l:{lease_id}"
