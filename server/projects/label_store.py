"""The SQL that owns the `labels` table: read a project's tree and apply an edited one."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any

import asyncpg

from server.errors import Conflict, Unprocessable
from server.projects import projects
from server.projects.label_tree import FlatLabel, name_key, tree_json

SELECT_TREE = """
SELECT id, parent_id, name, depth, used_at, hotkey FROM labels
WHERE project_id = $1 ORDER BY position
"""
SELECT_FOR_EDIT = "SELECT id, name, used_at FROM labels WHERE project_id = $1 FOR UPDATE"
INSERT = """
INSERT INTO labels (project_id, parent_id, parent_key, name, name_key, position, depth, hotkey)
VALUES ($1, $2::bigint, coalesce($2::bigint, 0), $3, $4, $5, $6, $7) RETURNING id
"""
UPDATE = """
UPDATE labels SET parent_id = $2::bigint, parent_key = coalesce($2::bigint, 0), name = $3, name_key = $4,
                  position = $5, depth = $6, hotkey = $7
WHERE id = $1
"""
DELETE = "DELETE FROM labels WHERE id = ANY($1::bigint[])"
# Keys are set again label by label: cleared first, two labels can swap theirs.
CLEAR_HOTKEYS = "UPDATE labels SET hotkey = NULL WHERE project_id = $1 AND hotkey IS NOT NULL"


async def label_ids(db: asyncpg.Pool | asyncpg.Connection, project_id: int) -> frozenset[int]:
    """Every label id of a project, for validating annotations."""
    return frozenset(r["id"] for r in await db.fetch(
        "SELECT id FROM labels WHERE project_id = $1", project_id))


class LabelIds:
    """`label_ids` of the projects a process works on, read once per version of the tree.

    Every submit validates its labels; reading them from Postgres each time was a round
    trip per request. Any change of the tree touches the project row (`apply_tree`), so
    the `updated_at` of the project row the caller has names the tree it may use: a newer
    row (on any node) misses and reads the labels again.
    """

    def __init__(self, projects_kept: int = 256) -> None:
        self._kept = projects_kept
        self._sets: OrderedDict[int, tuple[datetime, frozenset[int]]] = OrderedDict()

    async def of(self, db: asyncpg.Pool | asyncpg.Connection, project: asyncpg.Record) -> frozenset[int]:
        pid, version = project["id"], project["updated_at"]
        got = self._sets.get(pid)
        if got is not None and got[0] == version:
            self._sets.move_to_end(pid)
            return got[1]
        ids = await label_ids(db, pid)
        self._sets[pid] = (version, ids)
        self._sets.move_to_end(pid)
        while len(self._sets) > self._kept:
            self._sets.popitem(last=False)
        return ids


async def read_tree(db: asyncpg.Pool | asyncpg.Connection, project_id: int) -> list[dict[str, Any]]:
    return tree_json(await db.fetch(SELECT_TREE, project_id))


async def apply_tree(conn: asyncpg.Connection, project_id: int, flat: list[FlatLabel]) -> None:
    """Make the stored tree equal `flat` (pre-order); call inside a transaction. The project
    row is touched too: its `updated_at` tells readers of the tree (`LabelIds`) it changed.

    Nodes with an id keep it (rename, move, reorder); nodes without one are created;
    stored labels missing from `flat` are deleted unless an annotation has used them.
    """
    existing = {r["id"]: r for r in await conn.fetch(SELECT_FOR_EDIT, project_id)}
    for node in flat:
        if node.id is not None and node.id not in existing:
            raise Unprocessable(
                f"label id {node.id} does not belong to this project",
                code="unknown_label",
                details=[{"loc": [*node.loc, "id"], "msg": "unknown label id"}],
            )
    kept = {n.id for n in flat if n.id is not None}
    removed = [i for i in existing if i not in kept]
    used = [existing[i]["name"] for i in removed if existing[i]["used_at"] is not None]
    if used:
        raise Conflict(
            "labels already used in annotations cannot be deleted: " + ", ".join(sorted(used)),
            code="label_in_use",
            details={"labels": sorted(used)},
        )
    ids: list[int] = []
    await conn.execute(CLEAR_HOTKEYS, project_id)
    # Pre-order guarantees a parent has its id before any child needs it; removed
    # labels are deleted last so none of their kept children is cascaded away.
    for position, node in enumerate(flat):
        parent_id = ids[node.parent] if node.parent is not None else None
        args = (parent_id, node.name, name_key(node.name), position, node.depth, node.hotkey)
        if node.id is None:
            ids.append(await conn.fetchval(INSERT, project_id, *args))
        else:
            await conn.execute(UPDATE, node.id, *args)
            ids.append(node.id)
    if removed:
        await conn.execute(DELETE, removed)
    await projects.touch(conn, project_id)
