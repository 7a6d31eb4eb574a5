"""An owner refreshes a project's data from its page and follows the job there and on the
monitoring page, live, and across a reload."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import expect

from tests.conftest import bind_folder, project_body
from tests.e2e.conftest import shot, sign_in
from tests.infra import Api, unique, wait_job


def test_a_refresh_is_followed_to_its_outcome_on_the_project_and_monitor_pages(
    server: str, make_user: Callable[..., Api], data_dir: Path, new_context: Any,
) -> None:
    owner = make_user("owner")
    folder = data_dir / "datasets" / unique("jobs-e2e")
    folder.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (16, 16), (i * 90, 0, 0)).save(folder / f"{i}.png")
    pid = owner.post("/api/v1/projects", project_body()).json()["project"]["id"]
    assert bind_folder(owner, pid, folder).ok
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    Image.new("RGB", (16, 16)).save(folder / "new.png")

    page = sign_in(new_context(), server, owner, f"#/p/{pid}")
    expect(page.locator("[data-testid=project-summary]")).to_have_text(re.compile(r"2 images$"))
    page.get_by_role("button", name="Refresh data now").click()
    expect(page.locator("[data-testid=refresh-note]")).to_have_text("Done: 1 new, 0 gone, 0 back.")
    expect(page.locator("[data-testid=project-summary]")).to_have_text(re.compile(r"3 images$"))

    # The monitoring page lists the project's jobs, and follows new ones live.
    page.goto(f"{server}/#/p/{pid}/monitor")
    jobs = page.locator("[data-testid=jobs]")
    expect(jobs.locator("tr")).to_have_count(2)  # the binding's and the refresh
    expect(jobs.locator("tr").first).to_contain_text("Refresh")
    expect(jobs.locator("tr").first).to_contain_text("1 added")
    (folder / "0.png").unlink()
    job = owner.post(f"/api/v1/projects/{pid}/refresh").json()["job"]
    assert wait_job(owner, job)["result"]["missing"] == 1
    row = jobs.locator(f"[data-testid=job-{job['id']}]")
    expect(row).to_have_attribute("data-status", "done")
    expect(row).to_contain_text("0 added, 1 missing")
    shot(page, "monitor-jobs")
    page.reload()
    expect(page.locator(f"[data-testid=job-{job['id']}]")).to_have_attribute("data-status", "done")
    expect(page.locator("[data-testid=jobs] tr")).to_have_count(3)
