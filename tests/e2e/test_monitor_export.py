"""The monitoring page's counts change live while someone labels, and the export page runs an
export and downloads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.e2e.conftest import shot, sign_in
from tests.export_setup import MakeUser, started_project

TREE = [{"name": "cat"}, {"name": "dog, or wolf"}]


def test_monitor_counts_are_live_and_exports_download(make_user: MakeUser, data_dir: Path, server: str,
                                                      new_context: Any, tmp_path: Path) -> None:
    owner, labeler, pid, labels = started_project(make_user, data_dir, "multiclass", TREE, 3)

    page = sign_in(new_context(), server, owner, f"#/p/{pid}/monitor")
    expect(page.locator("[data-testid=events-state]")).to_have_attribute("data-state", "open")
    expect(page.locator("[data-testid=count-total]")).to_have_text("3")
    expect(page.locator("[data-testid=count-labeled]")).to_have_text("0")

    for _ in range(2):
        lease = labeler.post(f"/api/v1/projects/{pid}/tasks/next", {"count": 1}).json()["leases"][0]
        r = labeler.post(f"/api/v1/leases/{lease['lease_id']}/submit",
                         {"annotation": {"classes": [labels["dog, or wolf"]]}})
        assert r.status_code == 200, r.text
    expect(page.locator("[data-testid=count-labeled]")).to_have_text("2", timeout=10_000)
    expect(page.locator("[data-testid=count-unlabeled]")).to_have_text("1")
    shot(page, "monitor")

    page.goto(f"{server}/#/p/{pid}/export")
    page.click("[data-testid=export-format-csv]")
    page.click("[data-testid=export-start]")
    row = page.locator("[data-testid=export-row]").first
    expect(row).to_have_attribute("data-status", "done", timeout=20_000)
    shot(page, "export")
    with page.expect_download() as info:
        row.locator("[data-testid=export-download]").click()
    path = tmp_path / "labels.csv"
    info.value.save_as(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("image,label,") and text.count('"dog, or wolf"') == 2
