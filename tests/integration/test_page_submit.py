"""A page of work in one request: several leases submitted together, in one transaction,
each lease answered on its own; and submits of concurrent requests committed together."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from collab import schema
from collab.names import document_name, final_document
from server.services import Services
from server.work import decisions
from server.work.submits import Entry
from tests.infra import Api, unique
from tests.work_setup import MakeUser, item, next_, setup_project
from tests.yclient import py_client


def page(api: Api, entries: list[dict[str, Any]]) -> Any:
    return api.post("/api/v1/leases/submit", {"submissions": entries})


def vote(lease: dict[str, Any], label: int, **extra: Any) -> dict[str, Any]:
    return {"lease_id": lease["lease_id"], "annotation": {"classes": [label]}, **extra}


async def _document(server: str, api: Api, room: str) -> dict[str, Any]:
    token = (await asyncio.to_thread(api.post, "/api/v1/tokens", {"name": unique("doc")})).json()["token"]
    async with py_client(server.replace("http://", "ws://"), room, token) as py:
        return schema.read_annotation(py.doc, "multiclass")


async def test_a_page_is_submitted_in_one_request_and_written_into_its_documents(
        server: str, make_user: MakeUser, data_dir: Path) -> None:
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=6, labelers=1)
    labeler = p.labelers[0]
    leases = await asyncio.to_thread(next_, labeler, p.pid, 4)
    assert len(leases) == 4
    labels = [p.labels["cat"], p.labels["dog"], p.labels["bird"], p.labels["cat"]]
    r = await asyncio.to_thread(page, labeler, [vote(x, lab, duration_ms=1500)
                                                for x, lab in zip(leases, labels, strict=True)])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["submitted"], body["failed"]) == (4, 0)
    assert [x["lease_id"] for x in body["results"]] == [x["lease_id"] for x in leases]
    assert all(x["ok"] and x["item_status"] == "labeled" and x["annotation_id"] for x in body["results"])
    for lease, label in zip(leases, labels, strict=True):
        iid = lease["item"]["id"]
        got = await asyncio.to_thread(item, p.owner, p.pid, iid)
        assert got["status"] == "labeled" and got["final"]["classes"] == [label]
        # The plain JSON went into the labeler's document and the decision into the final one,
        # in the same transaction, so whoever opens them sees what was submitted.
        mine = await _document(server, labeler, document_name(p.pid, iid, labeler.id))
        final = await _document(server, p.owner, final_document(p.pid, iid))
        assert mine["classes"] == [label] and final["classes"] == [label]


def test_each_lease_has_its_own_outcome_and_a_refused_one_changes_nothing(
        make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=8, labelers=2)
    me, other = p.labelers
    mine = next_(me, p.pid, 4)
    theirs = next_(other, p.pid, 1)
    assert me.post(f"/api/v1/leases/{mine[1]['lease_id']}/skip").status_code == 200
    cat = p.labels["cat"]
    entries = [vote(mine[0], cat), vote(mine[1], cat), vote(theirs[0], cat),
               vote(mine[2], 987654321), {"lease_id": "no-such-lease", "annotation": {"classes": [cat]}},
               vote(mine[3], p.labels["dog"])]
    r = page(me, entries)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    outcome = [(x["ok"], x.get("status"), x.get("error", {}).get("code")) for x in results]
    assert outcome == [(True, None, None), (False, 409, "lease_skipped"), (False, 404, "not_found"),
                       (False, 422, "invalid_annotation"), (False, 404, "not_found"),
                       (True, None, None)], outcome
    assert (r.json()["submitted"], r.json()["failed"]) == (2, 4)
    # Nothing was stored for the refused ones: the other labeler's item and the invalid one
    # are still waiting for their labelers.
    assert item(p.owner, p.pid, theirs[0]["item"]["id"])["status"] == "in_progress"
    assert item(p.owner, p.pid, mine[2]["item"]["id"])["status"] == "in_progress"
    # The same page again, corrected: what was stored answers "repeated", the rest goes in.
    entries[3] = vote(mine[2], cat)
    again = page(me, [entries[0], entries[3], entries[5]]).json()["results"]
    assert [(x["ok"], x["repeated"]) for x in again] == [(True, True), (True, False), (True, True)]
    assert item(p.owner, p.pid, mine[2]["item"]["id"])["status"] == "labeled"
    theirs_page = other.post("/api/v1/leases/submit", {"submissions": [vote(theirs[0], cat)]})
    assert theirs_page.json()["submitted"] == 1


def test_a_malformed_page_is_refused_whole(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=3, labelers=1)
    me = p.labelers[0]
    [lease] = next_(me, p.pid, 1)
    cat = p.labels["cat"]
    bad = [
        [vote(lease, cat), vote(lease, cat)],                                    # one lease twice
        [{**vote(lease, cat), "state_vector": "AA=="}],                          # two sources
        [{"lease_id": lease["lease_id"], "state_vector": "not base64!"}],         # no state vector
        [],                                                                      # nothing
        [vote(lease, cat)] * 65,                                                 # too many
        [{"annotation": {"classes": [cat]}}],                                    # no lease
    ]
    for entries in bad:
        r = page(me, entries)
        assert r.status_code == 422, (entries[:1], r.text)
        assert r.json()["error"]["code"] == "validation_error"
    r = page(me, [{"lease_id": lease["lease_id"], "state_vector": "not base64!"}])
    assert r.json()["error"]["details"][0]["loc"] == ["submissions", "0", "state_vector"]
    # Nothing was stored: the lease is still the labeler's to submit.
    assert item(p.owner, p.pid, lease["item"]["id"])["status"] == "in_progress"
    assert page(me, [vote(lease, cat)]).json()["results"][0]["repeated"] is False


class _CountingDb:
    """The work service's pool, counting the connections (so transactions) it hands out."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.acquired = 0

    def acquire(self) -> Any:
        self.acquired += 1
        return self.db.acquire()


async def test_submits_of_concurrent_requests_share_one_commit(
        services: Services, make_user: MakeUser, data_dir: Path) -> None:
    """Eight labelers' pages arrive at once: one transaction records them all, each caller
    gets its own leases' outcomes, and items two of them labeled are decided by consensus."""
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=16, labelers=8,
                                consensus={"enabled": True, "min": 2, "max": 3, "threshold": 0.5})
    project = await services.db.fetchrow("SELECT * FROM projects WHERE id = $1", p.pid)
    pages = [await asyncio.to_thread(next_, who, p.pid, 4) for who in p.labelers]
    cat = p.labels["cat"]
    log = services.work.submit_log
    counting = _CountingDb(log.db)
    log.db = counting  # type: ignore[assignment]
    try:
        groups = [[Entry(decisions.Submit(project, x["lease_id"], {"classes": [cat]}, 1000))
                   for x in leases] for leases in pages]
        results = await asyncio.gather(*(log.record(g) for g in groups))
    finally:
        log.db = counting.db
    assert counting.acquired == 1, f"{counting.acquired} transactions for 8 concurrent pages"
    for leases, outcomes in zip(pages, results, strict=True):
        assert [o.lease["id"] for o in outcomes if isinstance(o, decisions.Recorded)] == \
            [x["lease_id"] for x in leases]
    by_item: dict[int, int] = {}
    for leases in pages:
        for x in leases:
            by_item[x["item"]["id"]] = by_item.get(x["item"]["id"], 0) + 1
    statuses = {r["id"]: r["status"] for r in await services.db.fetch(
        "SELECT id, status FROM items WHERE project_id = $1", p.pid)}
    for iid, n in by_item.items():
        assert statuses[iid] == ("labeled" if n >= 2 else "in_progress"), (iid, n, statuses[iid])
    assert any(n >= 2 for n in by_item.values())


async def test_a_refused_lease_writes_nothing_into_its_document(
        server: str, make_user: MakeUser, data_dir: Path) -> None:
    """The documents a page writes are written with its decisions: a lease the rules refuse
    (skipped) or whose annotation is invalid leaves its document as it was."""
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=3, labelers=1)
    me = p.labelers[0]
    ok, skipped, invalid = await asyncio.to_thread(next_, me, p.pid, 4)
    assert (await asyncio.to_thread(me.post, f"/api/v1/leases/{skipped['lease_id']}/skip")).status_code == 200
    cat = p.labels["cat"]
    r = await asyncio.to_thread(page, me, [vote(ok, cat), vote(skipped, cat), vote(invalid, 987654321)])
    assert [x["ok"] for x in r.json()["results"]] == [True, False, False]
    docs = {name: await _document(server, me, document_name(p.pid, x["item"]["id"], me.id))
            for name, x in (("ok", ok), ("skipped", skipped), ("invalid", invalid))}
    assert docs == {"ok": {"classes": [cat]}, "skipped": {"classes": []}, "invalid": {"classes": []}}


def test_a_label_tree_edited_while_labelers_work_applies_to_the_next_submit(
        make_user: MakeUser, data_dir: Path) -> None:
    """Submits validate against the labels a process has read once per version of the tree:
    an owner's edit must reach the very next submit, a new label accepted, a deleted one
    refused."""
    p = setup_project(make_user, data_dir, items=4, labelers=1)
    labeler = p.labelers[0]
    leases = next_(labeler, p.pid, 4)
    assert page(labeler, [vote(leases[0], p.labels["cat"])]).json()["submitted"] == 1
    edited = [{"id": p.labels["cat"], "name": "cat"}, {"id": p.labels["dog"], "name": "dog"},
              {"name": "fish"}]
    r = p.owner.patch(f"/api/v1/projects/{p.pid}/labels", {"labels": edited})
    assert r.status_code == 200, r.text
    fish = next(x["id"] for x in r.json()["labels"] if x["name"] == "fish")
    body = page(labeler, [vote(leases[1], fish), vote(leases[2], p.labels["bird"])]).json()
    assert body["results"][0]["ok"], body
    assert not body["results"][1]["ok"] and body["results"][1]["status"] == 422, body
    assert item(p.owner, p.pid, leases[1]["item"]["id"])["final"]["classes"] == [fish]
    assert item(p.owner, p.pid, leases[2]["item"]["id"])["status"] == "in_progress"


def test_two_given_back_leases_of_one_item_in_one_page_store_one_annotation(
        make_user: MakeUser, data_dir: Path) -> None:
    """A labeler gets an item, gives it back, gets it again and gives it back again (a reload
    and a grid size change), then a late page carries both leases: the first is stored and the
    second refused as superseded, as if they had come one after another, rather than the page
    failing whole on the second annotation of one labeler."""
    p = setup_project(make_user, data_dir, items=1, labelers=2,
                      consensus={"enabled": True, "min": 2, "max": 2})
    me = p.labelers[0]
    leases = []
    for _ in range(2):
        got = next_(me, p.pid, 1)
        assert len(got) == 1
        leases.append(got[0])
        assert me.post("/api/v1/leases/release", {"lease_ids": [got[0]["lease_id"]]}).status_code == 200
    assert leases[0]["item"]["id"] == leases[1]["item"]["id"]
    r = page(me, [vote(x, p.labels["cat"]) for x in leases])
    assert r.status_code == 200, r.text
    outcome = [(x["ok"], x.get("error", {}).get("code")) for x in r.json()["results"]]
    assert outcome == [(True, None), (False, "lease_superseded")], outcome
    # One annotation of theirs: the item still waits for the second labeler.
    assert item(p.owner, p.pid, leases[0]["item"]["id"])["status"] == "in_progress"
