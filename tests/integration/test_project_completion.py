"""A project completes when its last items are decided, also when they are submitted at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from server.services import Services
from tests.work_setup import MakeUser, next_, setup_project, submit


async def test_the_last_items_submitted_together_complete_the_project(
        services: Services, make_user: MakeUser, data_dir: Path) -> None:
    """Each submit used to check for undecided items inside its own transaction, where the
    other's item was not decided yet: both saw one left, and the project stayed running.
    A deferred trigger that holds each commit for a moment makes the two overlap every time."""
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=2, labelers=2)
    a, b = p.labelers
    la, lb = await asyncio.to_thread(next_, a, p.pid), await asyncio.to_thread(next_, b, p.pid)
    name = f"slow_decision_{p.pid}"
    await services.db.execute(f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$;
        CREATE CONSTRAINT TRIGGER {name} AFTER UPDATE ON items DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW WHEN (NEW.project_id = {p.pid} AND NEW.status = 'labeled') EXECUTE FUNCTION {name}();
    """)
    try:
        # Different labels: one label's first use would lock its row and line them up.
        results: list[dict[str, Any]] = await asyncio.gather(*(
            asyncio.to_thread(lambda who, lease, label: submit(who, lease, {"classes": [label]}).json(),
                              who, lease[0], p.labels[label])
            for who, lease, label in ((a, la, "cat"), (b, lb, "dog"))))
    finally:
        # DDL on items waits for every transaction that has read the table, such as the
        # shared server's prober while a datastore of an earlier test answers slowly: not
        # bound by the API's short statement timeout.
        async with services.db.bulk() as conn:
            await conn.execute(f"DROP TRIGGER {name} ON items; DROP FUNCTION {name}();")
    assert [r["item_status"] for r in results] == ["labeled", "labeled"]
    assert [r["project_completed"] for r in results].count(True) == 1
    project = await asyncio.to_thread(p.owner.get, f"/api/v1/projects/{p.pid}")
    assert project.json()["project"]["status"] == "completed"
