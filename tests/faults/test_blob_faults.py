"""The blob store stalls while a project refreshes from it: the refresh fails within its
time budget with a clear error, marks nothing missing, and works again once the store is
back. Real processes: an Azurite of the test's own (stopped with SIGSTOP, which keeps its
in-memory blobs), and a server process with a short Azure read timeout."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.azurite import AzuriteInfo, make_container, run_azurite
from tests.conftest import OWN_ADMIN, PASSWORD, bind_folder, run_sync
from tests.infra import Api, bound, run_server, unique, wait_job
from tests.integration.test_uploads import png
from tests.reliability import Measured

READ_TIMEOUT_S = 2
BLOBS = 40


def _azurite_pid(info: AzuriteInfo) -> int:
    """The emulator's process, found by the port it serves."""
    port = info.account_url.split(":")[2].split("/")[0]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"azurite" in a for a in args) and port.encode() in args:
            return int(entry.name)
    raise AssertionError(f"no azurite process on port {port}")


def _items(api: Api, pid: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.get(f"/api/v1/projects/{pid}/items?limit=1000").json()["items"]
    return items


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.reliability(
    area="Faults",
    attack="Stopped the blob store (SIGSTOP of the Azure emulator) as a refresh of a running "
           "project began, then let it go on.",
    promise="The refresh is answered at once; its job fails within its time budget with a clear "
            "datastore_error, marks no item missing, and the next refresh after the store is "
            "back finds the new file.")
def test_a_stalled_blob_store_fails_the_refresh_and_marks_nothing_missing(
        own_engines: Callable[..., dict[str, str]], tmp_path: Path, measured: Measured) -> None:
    # A database of its own: the refresh job is run by this server's worker, with its timeout.
    env = own_engines(COLABEL_AZURE_READ_TIMEOUT_S=str(READ_TIMEOUT_S),
                      COLABEL_AZURE_ALLOW_EMULATOR="true")
    with run_azurite(tmp_path / "azurite") as info, \
            run_server(env, [], tmp_path / "server.log") as (base, _proc, _took):
        container = unique("stall").replace("-", "")[:20]
        run_sync(lambda: make_container(info, container, {f"set1/{i:03d}.png": png() for i in range(BLOBS)}))
        owner = Api(base).login(OWN_ADMIN, PASSWORD)
        pid = owner.post("/api/v1/projects", {"name": unique("stall"), "task_type": "multiclass",
                                              "labels": [{"name": "a"}]}).json()["project"]["id"]
        r = bound(owner, owner.put(f"/api/v1/projects/{pid}/dataset", {
            "datastore": {"kind": "azure_blob", "account_url": info.account_url, "container": container,
                          "prefix": "set1/", "connection_string": info.connection_string},
            "pattern": "**/*.*"}))
        assert r.ok and r.ingest["added"] == BLOBS, r.text
        assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
        # The worker's prober reads every image's header once; let it finish first, so
        # that the stall below meets only the refresh.
        deadline = time.monotonic() + 30
        while any(i["width"] is None for i in _items(owner, pid)):
            assert time.monotonic() < deadline, "images never probed"
            time.sleep(0.2)
        run_sync(lambda: make_container_blob(info, container, "set1/new.png"))

        emulator = _azurite_pid(info)
        started = time.monotonic()
        os.kill(emulator, signal.SIGSTOP)
        try:
            asked = owner.post(f"/api/v1/projects/{pid}/refresh")
            assert asked.status_code == 202, asked.text  # the request does not wait on the store
            answered = time.monotonic() - started
            stalled = wait_job(owner, asked, timeout_s=120)
            took = time.monotonic() - started
        finally:
            os.kill(emulator, signal.SIGCONT)
        assert stalled["status"] == "failed", stalled
        error = stalled["error"]
        assert error["code"] == "datastore_error" and "127.0.0.1" not in error["message"]
        # Three attempts of READ_TIMEOUT_S each, plus the retry waits (1 s, 3 s), plus slack.
        assert took < 3 * READ_TIMEOUT_S + 4 + 10, took
        items = _items(owner, pid)
        assert len(items) == BLOBS and not [i for i in items if i["status"] == "missing"]
        assert owner.get(f"/api/v1/projects/{pid}").json()["project"]["status"] == "running"

        back = wait_job(owner, owner.post(f"/api/v1/projects/{pid}/refresh"))
        assert back["status"] == "done", back
        assert (back["result"]["added"], back["result"]["missing"]) == (1, 0)
        assert len(_items(owner, pid)) == BLOBS + 1
    measured(f"refresh asked in {answered * 1000:.0f} ms (202); its job failed datastore_error "
             f"after {took:.1f} s (read timeout {READ_TIMEOUT_S} s, 3 attempts); 0 of {BLOBS} "
             "items marked missing; after SIGCONT the next refresh added the new file")


async def make_container_blob(info: AzuriteInfo, container: str, name: str) -> None:
    from azure.storage.blob.aio import ContainerClient

    async with ContainerClient.from_connection_string(info.connection_string, container) as cc:
        await cc.upload_blob(name, png())


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.reliability(
    area="Faults",
    attack="Stopped the blob store (SIGSTOP of the Azure emulator) while the server's prober "
           "was reading its files' headers, in the same batch as another project's new items, "
           "and asked for work on that other project.",
    promise="Leasing and submitting in the other project answer at once: a stalled datastore "
            "holds up its own probing only, never the items' rows.")
def test_a_stalled_blob_store_does_not_hold_up_other_projects_work(
        env: dict[str, str], make_user: Callable[..., Api], data_dir: Path, tmp_path: Path,
        measured: Measured) -> None:
    with run_azurite(tmp_path / "azurite") as info, \
            run_server({**env, "COLABEL_AZURE_READ_TIMEOUT_S": "5", "COLABEL_PROBE_POLL_S": "1"}, [],
                       tmp_path / "server.log") as (base, _proc, _took):
        container = unique("stall").replace("-", "")[:20]
        run_sync(lambda: make_container(info, container, {f"set1/{i:03d}.png": png() for i in range(BLOBS)}))
        owner = Api(base).login(make_user("owner").email, PASSWORD)
        labeler = Api(base).login(make_user("labeler").email, PASSWORD)
        blobs = owner.post("/api/v1/projects", {"name": unique("stall"), "task_type": "multiclass",
                                                "labels": [{"name": "a"}]}).json()["project"]["id"]
        emulator = _azurite_pid(info)
        r = bound(owner, owner.put(f"/api/v1/projects/{blobs}/dataset", {
            "datastore": {"kind": "azure_blob", "account_url": info.account_url, "container": container,
                          "prefix": "set1/", "connection_string": info.connection_string},
            "pattern": "**/*.*"}))
        os.kill(emulator, signal.SIGSTOP)  # before the prober has read the headers
        try:
            assert r.ok, r.text
            folder = data_dir / "datasets" / unique("beside")
            folder.mkdir(parents=True)
            for i in range(4):
                (folder / f"{i}.png").write_bytes(png())
            created = owner.post("/api/v1/projects", {"name": unique("beside"), "task_type": "multiclass",
                                                      "labels": [{"name": "a"}]}).json()
            pid, label = created["project"]["id"], created["labels"][0]["id"]
            assert bind_folder(owner, pid, folder).ok
            owner.put(f"/api/v1/projects/{pid}/members", {"email": labeler.email, "role": "labeler"})
            assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
            time.sleep(2.5)  # the prober has claimed both projects' items and waits on the store
            started = time.monotonic()
            leased = labeler.post(f"/api/v1/projects/{pid}/tasks/next", {"count": 4})
            lease_s = time.monotonic() - started
            assert leased.status_code == 200, leased.text
            page = [{"lease_id": x["lease_id"], "annotation": {"classes": [label]}}
                    for x in leased.json()["leases"]]
            started = time.monotonic()
            submitted = labeler.post("/api/v1/leases/submit", {"submissions": page})
            submit_s = time.monotonic() - started
            assert submitted.status_code == 200 and submitted.json()["submitted"] == 4, submitted.text
            assert lease_s < 2 and submit_s < 2, (lease_s, submit_s)
        finally:
            os.kill(emulator, signal.SIGCONT)
        assert owner.delete(f"/api/v1/projects/{blobs}").status_code == 204
    measured(f"with the blob store stopped mid-probe, a page of 4 in another project was leased in "
             f"{lease_s * 1000:.0f} ms and submitted in {submit_s * 1000:.0f} ms")
