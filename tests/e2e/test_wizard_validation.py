"""The wizard checks each step on the server: a refused folder stops the Data step itself and
no project is made; a good one shows its count and first files; a project left without data
is bound from its page; markdown tables in instructions render as tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import shot, sign_in
from tests.e2e.test_wizard import next_step, to_review
from tests.export_setup import MakeUser
from tests.infra import Api, unique

TABLE = "Classes:\n\n| Label | When |\n| --- | :-: |\n| Cat | whiskers |\n| Dog | **barks** |\n"


def folder_of(root: Path, count: int) -> Path:
    folder = root / "datasets" / unique("wizard-check")
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (16, 12), (30 * i, 60, 90)).save(folder / f"img{i}.png")
    (folder / "readme.txt").write_text("not an image")
    return folder


def project_names(api: Api) -> set[str]:
    return {p["name"] for p in api.get("/api/v1/projects", params={"limit": 500}).json()["projects"]}


def test_a_refused_folder_stops_the_data_step_and_a_good_one_shows_what_it_holds(
    make_user: MakeUser, server: str, new_context: Any, data_dir: Path
) -> None:
    folder = folder_of(data_dir, 3)
    admin = make_user("admin", is_admin=True)
    page = sign_in(new_context(), server, admin)
    page.click("[data-testid=new-project]")
    name = unique("checked")
    page.fill("[data-testid=wizard-name]", name)
    next_step(page)

    page.check("[data-testid=data-source-local]")
    page.fill("[data-testid=data-local-path]", "/etc")
    page.click("[data-testid=wizard-next]")
    error = page.locator("[data-testid=data-check-error]")
    expect(error).to_contain_text("outside the allowed roots")
    expect(page.locator("[data-testid=wizard]")).to_have_attribute("data-step", "data")
    expect(page.locator("[data-testid=data-local-path]")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("[data-testid=wizard-create]")).to_have_count(0)
    shot(page, "wizard-data-refused")
    assert name not in project_names(admin)

    page.fill("[data-testid=data-local-path]", str(folder))
    expect(error).to_have_count(0)  # the refusal was about the other folder
    page.click("[data-testid=data-check]")
    result = page.locator("[data-testid=data-check-result]")
    expect(result.locator("[data-testid=data-check-count]")).to_have_text("3")
    expect(result).to_contain_text("1 other files skipped")
    expect(result.locator("[data-testid=data-check-sample] li")).to_have_text(
        ["img0.png", "img1.png", "img2.png"])
    shot(page, "wizard-data-checked")
    assert name not in project_names(admin)  # a dry run creates nothing
    assert next_step(page) == "labels"

    page.click("[data-testid=label-add-root]")
    page.locator("[data-testid=label-name]").last.fill("Cat")
    assert next_step(page) == "instructions"
    page.fill("[data-testid=instructions-text]", TABLE)
    preview = page.locator("[data-testid=instructions-preview] table")
    expect(preview.locator("th")).to_have_text(["Label", "When"])
    expect(preview.locator("tbody tr")).to_have_count(2)
    expect(preview.locator("tbody tr").last.locator("td strong")).to_have_text("barks")
    to_review(page)
    page.click("[data-testid=wizard-create]")
    expect(page.locator("[data-testid=wizard-done]")).to_be_visible(timeout=30_000)
    expect(page.locator("[data-testid=wizard-item-count]")).to_contain_text("3")
    created = [p for p in admin.get("/api/v1/projects", params={"limit": 500}).json()["projects"]
               if p["name"] == name]
    assert len(created) == 1 and created[0]["dataset"]["datastore"]["path"] == str(folder.resolve())

    # The instructions' table renders as a table on the project's page too (server-rendered).
    page.click("[data-testid=wizard-open-project]")
    page.locator("details:has(.instructions) summary").click()
    table = page.locator(".instructions table")
    expect(table.locator("td")).to_have_text(["Cat", "whiskers", "Dog", "barks"])


def test_a_project_without_data_is_bound_from_its_page(
    make_user: MakeUser, server: str, new_context: Any, data_dir: Path
) -> None:
    folder = folder_of(data_dir, 2)
    admin = make_user("admin", is_admin=True)
    # Created without data, as an older wizard left a project whose binding was refused.
    pid = admin.post("/api/v1/projects", {"name": unique("stuck"), "task_type": "multiclass",
                                          "labels": [{"name": "Cat"}]}).json()["project"]["id"]
    page = sign_in(new_context(), server, admin, f"#/p/{pid}")
    card = page.locator("[data-testid=project-data]")
    expect(card).to_contain_text("This project has no images yet")
    card.locator("[data-testid=data-source-local]").check()
    card.locator("[data-testid=data-local-path]").fill("/etc")
    card.locator("[data-testid=project-data-bind]").click()
    expect(card.locator("[data-testid=data-check-error]")).to_contain_text("outside the allowed roots")
    assert admin.get(f"/api/v1/projects/{pid}").json()["project"]["dataset"] is None

    card.locator("[data-testid=data-local-path]").fill(str(folder))
    card.locator("[data-testid=data-check]").click()
    expect(card.locator("[data-testid=data-check-count]")).to_have_text("2")
    card.locator("[data-testid=project-data-bind]").click()
    expect(card.locator("[data-testid=project-data-done]")).to_contain_text("2 images registered")
    shot(page, "project-data-bound")
    project = admin.get(f"/api/v1/projects/{pid}").json()["project"]
    assert project["items"]["total"] == 2 and project["status"] == "initializing"

    page.get_by_role("button", name="Start labeling").click()
    expect(page.locator("[data-testid=project-status]")).to_have_attribute("data-status", "running")
    expect(page.locator("[data-testid=project-data]")).to_have_count(0)  # fixed from now on
