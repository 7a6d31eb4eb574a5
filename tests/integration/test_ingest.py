"""Registering files as items: listing order, patterns, the cap, refresh, the lock."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from server.data import ingest, refresh
from server.data.datastores.base import ACCEPTED_EXTENSIONS, DatastoreError
from server.data.datastores.keys import LOWERS_TO_ASCII, accepted, compile_pattern, select
from server.data.datastores.local import LocalDatastore
from server.services import Services
from tests.conftest import bind_folder, project_body
from tests.infra import Api, unique, wait_job

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]
ACCEPTED = ["a.jpg", "b.JPEG", "c.png", "d.jpe", "e.jfif", "f.bmp", "g.tif", "h.TIFF",
            "scan.dcm", "scan2.DICOM", "sub/deep/x.png", "sub/y.jpg"]
IGNORED = ["notes.txt", "anim.gif", "noext", "sub/readme.md"]


def make_files(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def folder(data_dir: Path) -> Path:
    path = data_dir / "datasets" / unique("ingest")
    path.mkdir(parents=True)
    return path


def bind(owner: Api, pid: int, path: Path, pattern: str = "**/*.*", **refresh: Any) -> Any:
    return bind_folder(owner, pid, path, pattern, **({"refresh": refresh} if refresh else {}))


def all_items(api: Api, pid: int, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get(f"/api/v1/projects/{pid}/items", params={**params, "after": after,
                                                                 "limit": 1000}).json()
        out += page["items"]
        if page["next_after"] is None:
            return out
        after = page["next_after"]


def test_bind_registers_accepted_files_in_key_order(make_project: MakeProject, data_dir: Path) -> None:
    owner, p = make_project()
    root = folder(data_dir)
    make_files(root, ACCEPTED + IGNORED)
    r = bind(owner, p["id"], root)
    assert r.status_code == 202 and r.ok, r.text
    result = r.ingest
    assert result["added"] == result["listed"] == len(ACCEPTED)
    assert result["skipped"] == len(IGNORED) and result["over_cap"] == 0
    items = all_items(owner, p["id"])
    assert [i["key"] for i in items] == sorted(ACCEPTED)
    kinds = {i["key"]: i["media_kind"] for i in items}
    assert kinds["scan.dcm"] == kinds["scan2.DICOM"] == "dicom" and kinds["a.jpg"] == "image"
    detail = owner.get(f"/api/v1/projects/{p['id']}").json()["project"]
    assert detail["items"]["total"] == len(ACCEPTED) and detail["ingest"]["added"] == len(ACCEPTED)


def test_pattern_selects_a_folder(make_project: MakeProject, data_dir: Path) -> None:
    owner, p = make_project()
    root = folder(data_dir)
    make_files(root, ACCEPTED)
    r = bind(owner, p["id"], root, pattern="sub/**")
    assert r.ingest["added"] == 2
    assert sorted(i["key"] for i in all_items(owner, p["id"])) == ["sub/deep/x.png", "sub/y.jpg"]
    # Rebinding before the start replaces the items.
    r = bind(owner, p["id"], root, pattern="*.png")
    assert [i["key"] for i in all_items(owner, p["id"])] == ["c.png"]


def test_symlinks_leaving_the_root_are_not_listed(make_project: MakeProject, data_dir: Path,
                                                  tmp_path: Path) -> None:
    owner, p = make_project()
    root = folder(data_dir)
    make_files(root, ["in.png"])
    make_files(tmp_path, ["secret.png"])
    os.symlink(tmp_path / "secret.png", root / "leak.png")
    os.symlink(tmp_path, root / "leakdir")
    os.symlink(root / "in.png", root / "alias.png")
    bind(owner, p["id"], root)
    assert [i["key"] for i in all_items(owner, p["id"])] == ["alias.png", "in.png"]


async def test_cap_takes_the_first_n_in_listing_order(services: Services, tmp_path: Path,
                                                      make_project: MakeProject) -> None:
    _, p = make_project()
    root = tmp_path / "capped"
    make_files(root, [f"img{i:03d}.png" for i in range(30)])
    async with services.db.acquire() as conn, conn.transaction():
        res = await ingest.ingest_binding(conn, p["id"], 20, LocalDatastore(root), "**/*.*",
                                          kind="bind", detect_missing=False)
        keys = [r["key"] for r in await conn.fetch(
            "SELECT key FROM items WHERE project_id = $1 ORDER BY key", p["id"])]
    assert (res.added, res.over_cap, res.total_items) == (20, 10, 20)
    assert keys == [f"img{i:03d}.png" for i in range(20)]
    # A later refresh adds nothing while the project is full, but still reports the rest.
    async with services.db.acquire() as conn, conn.transaction():
        again = await ingest.ingest_binding(conn, p["id"], 20, LocalDatastore(root), "**/*.*",
                                            kind="refresh", detect_missing=True)
    assert (again.added, again.over_cap, again.missing) == (0, 10, 0)


def test_refresh_finds_new_and_missing_files_and_restores_returning_ones(
    make_project: MakeProject, data_dir: Path,
) -> None:
    owner, p = make_project()
    pid = p["id"]
    root = folder(data_dir)
    make_files(root, ["a.png", "b.png", "c.png"])
    bind(owner, pid, root)
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    make_files(root, ["d.png", "e/f.png"])
    (root / "b.png").unlink()
    r = owner.post(f"/api/v1/projects/{pid}/refresh")
    assert r.status_code == 202, r.text
    res = wait_job(owner, r)["result"]
    assert (res["added"], res["missing"], res["restored"], res["total_items"]) == (2, 1, 0, 5)
    missing = all_items(owner, pid, status="missing")
    assert [i["key"] for i in missing] == ["b.png"] and missing[0]["missing_since"]
    detail = owner.get(f"/api/v1/projects/{pid}").json()["project"]
    assert detail["refresh"]["last_refresh_at"] is not None
    assert detail["items"] == {"total": 5, "unlabeled": 4, "missing": 1}
    # The project keeps working: the item comes back when its file does.
    make_files(root, ["b.png"])
    res = wait_job(owner, owner.post(f"/api/v1/projects/{pid}/refresh"))["result"]
    assert (res["added"], res["missing"], res["restored"]) == (0, 0, 1)
    assert all_items(owner, pid, status="missing") == []


async def test_a_rebind_while_a_registration_runs_is_409_and_a_refresh_waits_its_turn(
    make_project: MakeProject, data_dir: Path, database_url: str,
) -> None:
    owner, p = make_project()
    root = folder(data_dir)
    make_files(root, ["a.png"])
    bind(owner, p["id"], root)
    other = folder(data_dir)
    make_files(other, ["b.png", "c.png"])
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await ingest.lock_project(holder, p["id"], wait=False)
            r = await asyncio.to_thread(bind_folder, owner, p["id"], other)
            assert r.status_code == 409 and r.json()["error"]["code"] == "ingest_running"
            asked = await asyncio.to_thread(owner.post, f"/api/v1/projects/{p['id']}/refresh")
            assert asked.status_code == 202
            await asyncio.sleep(0.5)
            job = owner.get(asked.json()["job"]["url"]).json()["job"]
            assert job["status"] in ("queued", "running") and job["finished_at"] is None
    finally:
        await holder.close()
    done = await asyncio.to_thread(wait_job, owner, asked)
    assert done["status"] == "done" and done["result"]["listed"] == 1


async def test_scheduled_refresh_runs_once_across_processes(
    services: Services, make_project: MakeProject, data_dir: Path,
) -> None:
    owner, p = make_project()
    pid = p["id"]
    root = folder(data_dir)
    make_files(root, ["a.png"])
    bind(owner, pid, root, enabled=True, interval_s=3600)
    owner.post(f"/api/v1/projects/{pid}/start")
    make_files(root, ["b.png", "c.png"])
    assert await refresh.refresh_project(services, pid) is None  # listed at bind: not due yet
    await services.db.execute("UPDATE projects SET last_refresh_at = now() - interval '2 hours' "
                              "WHERE id = $1", pid)
    # Two "processes" race for the same due project: exactly one refreshes it.
    first, second = await asyncio.gather(refresh.refresh_project(services, pid),
                                         refresh.refresh_project(services, pid))
    ran = [r for r in (first, second) if r is not None]
    assert len(ran) == 1 and ran[0].added == 2
    # Not due again until the interval has passed.
    assert await refresh.refresh_project(services, pid) is None
    detail = owner.get(f"/api/v1/projects/{pid}").json()["project"]
    assert detail["ingest"]["kind"] == "scheduled_refresh"


def test_refresh_needs_a_dataset_and_an_owner(make_project: MakeProject,
                                              make_user: Callable[..., Api]) -> None:
    owner, p = make_project()
    r = owner.post(f"/api/v1/projects/{p['id']}/refresh")
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_dataset"


@pytest.mark.parametrize("bad", ["bogus", "labeled,unlabeled"])
def test_item_status_filter_validated(make_project: MakeProject, bad: str) -> None:
    owner, p = make_project()
    r = owner.get(f"/api/v1/projects/{p['id']}/items", params={"status": bad})
    assert r.status_code == 422


def test_project_body_helper_still_valid() -> None:
    assert project_body()["task_type"] == "multiclass"


class Listing:
    """A datastore that lists the given keys one at a time and can break part way."""

    def __init__(self, keys: list[str], fail_after: int | None = None) -> None:
        self.keys, self.fail_after = keys, fail_after

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        for i, key in enumerate(self.keys):
            if i == self.fail_after:
                raise DatastoreError("the listing broke")
            yield key


async def run_ingest(services: Services, pid: int, store: Any, *, detect_missing: bool,
                     cap: int = 1000) -> ingest.IngestResult:
    async with services.db.acquire() as conn, conn.transaction():
        return await ingest.ingest_binding(conn, pid, cap, store, "**/*.*", kind="test",
                                           detect_missing=detect_missing)


async def item_rows(services: Services, pid: int) -> list[tuple[str, str, str]]:
    rows = await services.db.fetch("SELECT key, media_kind, status FROM items WHERE project_id = $1 "
                                   "ORDER BY id", pid)
    return [(r["key"], r["media_kind"], r["status"]) for r in rows]


async def test_refresh_sees_a_file_replaced_by_another_when_the_count_stays(
    services: Services, tmp_path: Path, make_project: MakeProject,
) -> None:
    _, p = make_project()
    root = tmp_path / "swap"
    make_files(root, ["a.png", "b.png", "c.png"])
    store = LocalDatastore(root)
    await run_ingest(services, p["id"], store, detect_missing=False)
    unchanged = await run_ingest(services, p["id"], store, detect_missing=True)
    assert (unchanged.listed, unchanged.added, unchanged.missing, unchanged.restored) == (3, 0, 0, 0)
    (root / "b.png").rename(root / "d.png")
    res = await run_ingest(services, p["id"], store, detect_missing=True)
    assert (res.listed, res.added, res.missing, res.restored, res.total_items) == (3, 1, 1, 0, 4)
    assert await item_rows(services, p["id"]) == [
        ("a.png", "image", "unlabeled"), ("b.png", "image", "missing"),
        ("c.png", "image", "unlabeled"), ("d.png", "image", "unlabeled")]
    # A file that stays away leaves the project unchanged; when it comes back it is restored.
    again = await run_ingest(services, p["id"], store, detect_missing=True)
    assert (again.added, again.missing, again.restored, again.total_items) == (0, 0, 0, 4)
    (root / "d.png").rename(root / "b.png")
    back = await run_ingest(services, p["id"], store, detect_missing=True)
    assert (back.added, back.missing, back.restored) == (0, 1, 1)
    assert [r[2] for r in await item_rows(services, p["id"])] == [
        "unlabeled", "unlabeled", "unlabeled", "missing"]


async def test_unusual_file_names_register_and_refresh_unchanged(
    services: Services, make_project: MakeProject,
) -> None:
    _, p = make_project()
    # COPY's text format escapes these; a newline also rules out the digest of sorted lines.
    keys = ["a\\b.png", "tab\there.JPG", "line\nbreak.dcm", "cr\r.png", "\\.", "x/y.DICOM",
            "\u00e9t\u00e9.tif", "z.txt"]
    store = Listing(keys)
    first = await run_ingest(services, p["id"], store, detect_missing=False)
    assert (first.listed, first.skipped, first.added) == (6, 2, 6)
    want = [(k, "dicom" if k.lower().endswith((".dcm", ".dicom")) else "image", "unlabeled")
            for k in keys if accepted(k)]
    assert await item_rows(services, p["id"]) == want
    again = await run_ingest(services, p["id"], store, detect_missing=True)
    assert (again.added, again.missing, again.restored, again.total_items) == (0, 0, 0, 6)
    assert await item_rows(services, p["id"]) == want


@pytest.mark.parametrize("existing", [False, True])
async def test_a_listing_that_breaks_part_way_changes_nothing(
    services: Services, make_project: MakeProject, existing: bool,
) -> None:
    _, p = make_project()
    keys = [f"k{i:05d}.png" for i in range(25_000)]
    if existing:
        await run_ingest(services, p["id"], Listing(keys[:10]), detect_missing=False)
    before = await item_rows(services, p["id"])
    with pytest.raises(DatastoreError):
        await run_ingest(services, p["id"], Listing(keys, fail_after=20_000),
                         detect_missing=existing)
    assert await item_rows(services, p["id"]) == before
    # The connection the failed run used is fine for the next run.
    res = await run_ingest(services, p["id"], Listing(keys), detect_missing=existing, cap=30_000)
    assert (res.added, res.total_items) == (25_000 - len(before), 25_000)


def test_batch_selection_agrees_with_the_per_key_rules() -> None:
    rnd = random.Random(7)
    parts = ["a", "b", "/", ".", ".", "jpg", "JPG", "dcm", "DiCoM", "tif", "TIFF", "x", "\u212a",
             "\u0131", "\u0130", "\n", "\t", "*", "\u00e9", "png", "jpe", "jfif", "bmp"]
    patterns = ["**/*.*", "**", "a/**", "a", "*.png", "a/*/b*.jpg", "**/b/*", "?/*.jpg", "a.b/**/*.dcm"]
    for _ in range(2000):
        keys = ["".join(rnd.choice(parts) for _ in range(rnd.randint(1, 8))) for _ in range(10)]
        assert select(keys) == [k for k in keys if accepted(k)]
        for source in patterns:
            pattern = compile_pattern(source)
            assert select(keys, pattern) == [k for k in keys if pattern.matches(k) and accepted(k)]
    # Every character that lower-cases into a letter of an accepted extension is known.
    letters = {ch for ext in ACCEPTED_EXTENSIONS for ch in ext if ch.isalpha()}
    for code in range(sys.maxunicode + 1):
        lower = chr(code).lower()
        if lower in letters and not chr(code).isascii():
            assert LOWERS_TO_ASCII.get(chr(code)) == lower
