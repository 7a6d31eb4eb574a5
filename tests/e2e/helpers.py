"""Small steps the browser tests share: waiting for the drawing stage, drawing with the
mouse, and reading what the server holds through the API."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
from playwright.sync_api import Page, expect

from tests.infra import Api


def items_by_key(owner: Api, pid: int) -> dict[str, dict[str, Any]]:
    """The project's items by key (as its owner sees them)."""
    return {i["key"]: i for i in owner.get(f"/api/v1/projects/{pid}/items?limit=500").json()["items"]}


def stage_ready(page: Page) -> None:
    """The image on the drawing stage has loaded and its document is in sync."""
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=stage] img');"
        " return i && i.naturalWidth > 0 }")
    expect(page.locator("[data-testid=sync-state]")).to_have_attribute("data-state", "synced")


def center(page: Page) -> tuple[float, float]:
    box = page.locator("[data-testid=stage]").bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def drag(page: Page, x0: float, y0: float, x1: float, y1: float, steps: int = 6) -> None:
    """Press at (x0, y0), move to (x1, y1) and release: a box, a move or a brush stroke."""
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=steps)
    page.mouse.up()


def shape_labels(page: Page) -> list[str]:
    """The label of each shape in the side list, in its order."""
    return [t.strip() for t in page.locator("[data-testid=shapes] .shape a").all_inner_texts()]


def active_leases(owner: Api, pid: int) -> int:
    """How many leases of the project are active now, by the monitor's count."""
    r = owner.get(f"/api/v1/projects/{pid}/stats")
    assert r.status_code == 200, r.text
    return int(r.json()["queue"]["active_leases"])


class LeaseLog:
    """Every lease the page was handed, from its `tasks/next` answers, in order."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.leases: list[dict[str, Any]] = []
        page.on("response", self._seen)

    def _seen(self, response: Any) -> None:
        if response.url.endswith("/tasks/next") and response.ok:
            self.leases.extend(response.json()["leases"])

    def ids(self) -> list[str]:
        return [lease["lease_id"] for lease in self.leases]

    def wait_for(self, count: int, timeout_ms: int = 10_000) -> list[dict[str, Any]]:
        """The first `count` leases, once the page has been handed that many. (Playwright
        delivers responses only while it is called, so this waits through it, not sleep.)"""
        for _ in range(timeout_ms // 50):
            if len(self.leases) >= count:
                return self.leases[:count]
            self.page.wait_for_timeout(50)
        raise AssertionError(f"the page was handed {len(self.leases)} leases, expected {count}")


def still_active(labeler: Api, lease_ids: list[str]) -> list[str]:
    """Which of these leases of `labeler` were still active. It releases them in asking (the
    server's answer says which were live), so call it once the browser is done with them."""
    r = labeler.post("/api/v1/leases/release", {"lease_ids": lease_ids})
    assert r.status_code == 200, r.text
    released: list[str] = r.json()["released"]
    return released


def lease_seconds_left(database_url: str, pid: int) -> list[float]:
    """Seconds each active lease of the project has left, read from Postgres (in a thread of
    its own: Playwright's synchronous API keeps an event loop running in this one)."""

    async def read() -> list[float]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT extract(epoch FROM expires_at - now())::float8 AS s "
                                    "FROM leases WHERE project_id = $1 AND state = 'active'", pid)
        finally:
            await conn.close()
        return [r["s"] for r in rows]

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(read())).result()
