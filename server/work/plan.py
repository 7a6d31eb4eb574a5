"""How many labelers an item needs, and which item states are open or decided."""

from __future__ import annotations

from typing import Any

import asyncpg

# Item states in which the item is still handed out, and those in which it is decided
# (labeled), waiting for a person's decision, or taken out of labeling by an owner (skipped):
# a closed item takes no lease and no submit.
OPEN = ("unlabeled", "in_progress")
CLOSED = ("labeled", "needs_review", "skipped")


def consensus_plan(project: asyncpg.Record | dict[str, Any]) -> tuple[int, int, float]:
    """(min, max, threshold) labelers for a project; 1/1 without consensus."""
    c: dict[str, Any] = project["consensus"]
    if not c.get("enabled"):
        return 1, 1, 0.5
    return int(c["min"]), int(c["max"]), float(c.get("threshold", 0.5))
