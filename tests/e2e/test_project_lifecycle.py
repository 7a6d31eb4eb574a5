"""A project's page speaks plainly, and its owner archives, unarchives and deletes it from
there, told that a deleted project's name stays taken."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import expect

from tests.conftest import bind_folder, project_body
from tests.e2e.conftest import shot, sign_in
from tests.infra import Api, unique

# Settings' field names and values that once leaked onto the page.
RAW_WORDS = ("media_type", "task_type", "consensus", "dataset", "bbox", "multiclass",
             "needs_review", "in_progress", "initializing")


def test_archive_unarchive_and_delete_a_project(server: str, make_user: Callable[..., Api],
                                                data_dir: Path, new_context: Any) -> None:
    owner, labeler = make_user("owner"), make_user("labeler")
    folder = data_dir / "datasets" / unique("lifecycle")
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 60, 0, 0)).save(folder / f"{i}.png")
    body = project_body(task_type="bbox", consensus={"enabled": True, "min": 2, "max": 3})
    project = owner.post("/api/v1/projects", body).json()["project"]
    pid, name = project["id"], project["name"]
    assert bind_folder(owner, pid, folder).ok
    owner.put(f"/api/v1/projects/{pid}/members", {"email": labeler.email, "role": "labeler"})

    page = sign_in(new_context(), server, owner, f"#/p/{pid}")
    expect(page.locator("[data-testid=project-summary]")).to_have_text(re.compile(r"^Draw boxes.*3 images$"))
    how = page.locator("[data-testid=how-it-works]")
    expect(how).to_contain_text("Each item is labeled by 2–3 people until they agree")
    expect(page.locator("[data-testid=data-summary]")).to_contain_text(
        f"Images from the server folder {folder}, 3 files")
    expect(page.locator("[data-testid=project-status]")).to_have_text("Setting up")
    page.get_by_role("button", name="Start labeling").click()
    expect(page.locator("[data-testid=project-status]")).to_have_text("Running")
    expect(page.locator("[data-testid=fixed-settings]")).to_have_text(
        "Fixed since labeling started: what labelers do, how many people label each item, "
        "where the images come from.")
    text = page.locator("main").inner_text().replace(str(folder), "FOLDER")
    assert not [w for w in RAW_WORDS if w in text], text
    shot(page, "project-home-words")

    # Archive, after a confirmation that says what it does.
    page.get_by_role("button", name="Archive project…").click()
    dialog = page.locator("[data-testid=confirm-archive]")
    expect(dialog).to_contain_text("labelers no longer see the project")
    dialog.get_by_role("button", name="Archive").click()
    expect(page.locator("[data-testid=archived-note]")).to_be_visible()
    expect(page.locator("[data-testid=project-status]")).to_have_text("Archived (paused)")
    expect(page.locator("[data-testid=settings]")).to_have_count(0)
    expect(page.locator("[data-testid=add-member]")).to_have_count(0)

    page.goto(f"{server}/#/")
    expect(page.locator("[data-testid=archived-projects]")).to_contain_text(name)
    expect(page.locator("[data-testid=projects]", has_text=name)).to_have_count(0)
    theirs = sign_in(new_context(), server, labeler)
    expect(theirs.locator("h1")).to_have_text("Projects")
    expect(theirs.locator("main")).not_to_contain_text(name)
    expect(theirs.locator("[data-testid=archived-projects]")).to_have_count(0)

    page.locator("[data-testid=archived-projects]").get_by_role("link", name=name).click()
    page.get_by_role("button", name="Unarchive").click()
    expect(page.locator("[data-testid=archived-note]")).to_have_count(0)
    expect(page.locator("[data-testid=project-status]")).to_have_text("Paused")
    theirs.reload()
    expect(theirs.locator("[data-testid=projects]")).to_contain_text(name)

    # Delete: the confirmation explains that the name stays taken, and asks for the name.
    page.get_by_role("button", name="Delete project…").click()
    dialog = page.locator("[data-testid=confirm-delete]")
    expect(dialog.locator("[data-testid=name-rule]")).to_contain_text(
        f"Its name stays taken for ever. No project can be called “{name}” again")
    shot(page, "project-delete")
    confirm = dialog.get_by_role("button", name="Delete for good")
    expect(confirm).to_be_disabled()
    dialog.locator("input[name=confirm-name]").fill(name + "x")
    expect(confirm).to_be_disabled()
    dialog.locator("input[name=confirm-name]").fill(name)
    confirm.click()
    expect(page.locator("h1")).to_have_text("Projects")
    expect(page.locator("main")).not_to_contain_text(name)
    assert owner.get(f"/api/v1/projects/{pid}").status_code == 404
    again = owner.post("/api/v1/projects", project_body(name=name))
    assert again.status_code == 409 and again.json()["error"]["code"] == "name_taken"
