"""The create-project wizard: details, uploaded images, a label tree, and start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import Page, expect

from tests.e2e.conftest import shot, sign_in
from tests.export_setup import MakeUser
from tests.infra import unique


def next_step(page: Page) -> str:
    """Click Next and wait until the server has checked the step and the next one shows."""
    wizard = page.locator("[data-testid=wizard]")
    before = wizard.get_attribute("data-step") or ""
    page.click("[data-testid=wizard-next]")
    expect(wizard).not_to_have_attribute("data-step", before, timeout=15_000)
    return wizard.get_attribute("data-step") or ""


def to_review(page: Page) -> None:
    while page.get_attribute("[data-testid=wizard]", "data-step") != "review":
        next_step(page)


def test_wizard_creates_a_project_from_uploaded_images(make_user: MakeUser, server: str, new_context: Any,
                                                       tmp_path: Path) -> None:
    files = []
    for i in range(3):
        path = tmp_path / f"photo{i}.png"
        Image.new("RGB", (32 + i, 24), (40 * i, 90, 160)).save(path)
        files.append(str(path))
    owner = make_user("owner")
    page = sign_in(new_context(), server, owner)
    page.click("[data-testid=new-project]")
    name = unique("wizard")
    page.fill("[data-testid=wizard-name]", name)
    page.check("[data-testid=task-type-bbox]")
    page.click("[data-testid=wizard-next]")

    page.check("[data-testid=data-source-upload]")
    page.set_input_files("[data-testid=wizard-upload-input]", files)
    expect(page.locator("[data-testid=upload-count]")).to_contain_text("3 files")
    shot(page, "wizard-data")
    page.click("[data-testid=wizard-next]")

    for label in ("Cat", "Dog"):
        page.click("[data-testid=label-add-root]")
        page.locator("[data-testid=label-name]").last.fill(label)
    page.locator("[data-testid=label-row]").last.locator("[data-testid=label-add-child]").click()
    page.locator("[data-testid=label-name]").last.fill("Puppy")
    expect(page.locator("[data-testid=label-row][data-path='Dog/Puppy']")).to_have_count(1)
    shot(page, "wizard-labels")
    page.click("[data-testid=wizard-next]")
    to_review(page)
    expect(page.locator("[data-testid=wizard-summary]")).to_contain_text(name)
    page.click("[data-testid=wizard-create]")
    done = page.locator("[data-testid=wizard-done]")
    expect(done).to_be_visible(timeout=30_000)
    expect(page.locator("[data-testid=wizard-item-count]")).to_contain_text("3")
    pid = int(done.get_attribute("data-project-id") or 0)
    page.click("[data-testid=wizard-start]")
    expect(page.locator("[data-testid=project-status]")).to_have_attribute("data-status", "running")
    shot(page, "project-home")

    project = owner.get(f"/api/v1/projects/{pid}").json()
    assert project["project"]["name"] == name and project["project"]["task_type"] == "bbox"
    assert project["project"]["items"]["total"] == 3
    assert [(n["name"], [c["name"] for c in n["children"]]) for n in project["labels"]] == [
        ("Cat", []), ("Dog", ["Puppy"])]
    keys = {i["key"] for i in owner.get(f"/api/v1/projects/{pid}/items").json()["items"]}
    assert keys == {"photo0.png", "photo1.png", "photo2.png"}

    # Afterwards the labels can still change (the settings say what cannot).
    expect(page.locator("[data-testid=settings]")).to_contain_text("fixed since the project started")
    editor = page.locator("[data-testid=labels-editor]")
    editor.locator("[data-testid=label-add-root]").click()
    editor.locator("[data-testid=label-name]").last.fill("Bird")
    editor.locator("[data-testid=labels-save]").click()
    expect(editor).to_contain_text("Saved.")
    after = owner.get(f"/api/v1/projects/{pid}/labels").json()["labels"]
    assert [n["name"] for n in after] == ["Cat", "Dog", "Bird"]
    assert after[0]["id"] == project["labels"][0]["id"]  # existing labels keep their ids


def test_only_admins_are_offered_a_folder_on_the_server(make_user: MakeUser, server: str, new_context: Any,
                                                         data_dir: Path) -> None:
    folder = data_dir / "datasets" / unique("wizard-folder")
    folder.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (16, 12), (30 * i, 60, 90)).save(folder / f"img{i}.png")

    admin = make_user("admin", is_admin=True)
    page = sign_in(new_context(), server, admin)
    page.click("[data-testid=new-project]")
    name = unique("folder")
    page.fill("[data-testid=wizard-name]", name)
    next_step(page)
    expect(page.locator("[data-testid=data-source-local-admin-only]")).to_have_count(0)
    page.check("[data-testid=data-source-local]")
    page.fill("[data-testid=data-local-path]", str(folder))
    page.click("[data-testid=wizard-next]")
    page.click("[data-testid=label-add-root]")
    page.locator("[data-testid=label-name]").last.fill("Cat")
    to_review(page)
    page.click("[data-testid=wizard-create]")
    expect(page.locator("[data-testid=wizard-done]")).to_be_visible(timeout=30_000)
    expect(page.locator("[data-testid=wizard-item-count]")).to_contain_text("2")

    # Anyone else sees the choice, switched off, and why.
    owner = make_user("owner")
    page = sign_in(new_context(), server, owner)
    page.click("[data-testid=new-project]")
    page.fill("[data-testid=wizard-name]", unique("folder"))
    page.click("[data-testid=wizard-next]")
    expect(page.locator("[data-testid=data-source-local]")).to_be_disabled()
    expect(page.locator("[data-testid=data-source-local-admin-only]")).to_have_text(
        "Only an instance admin can bind a folder on the server.")
    expect(page.locator("[data-testid=data-source-upload]")).to_be_checked()
    shot(page, "wizard-data-not-admin")
