"""The data manager's API: the filtered, sorted, keyset-paged item listing, an item's
neighbours and detail, and actions on a selection (the dispatcher's invariants hold after)."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from server.data import item_query, listing
from server.services import Services
from server.work.queue import Dispatcher
from tests.export_setup import wait_export
from tests.infra import Api
from tests.work_setup import MakeUser, Proj, next_, setup_project, submit

CONSENSUS = {"enabled": True, "min": 2, "max": 3}


def _list(api: Api, pid: int, query: str = "") -> dict[str, Any]:
    r = api.get(f"/api/v1/projects/{pid}/items?{query}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _count(api: Api, pid: int, query: str = "") -> int:
    r = api.get(f"/api/v1/projects/{pid}/items/count?{query}")
    assert r.status_code == 200, r.text
    assert r.json()["capped"] is False
    n: int = r.json()["matching"]
    return n


def _keys(page: dict[str, Any]) -> list[str]:
    return [i["key"] for i in page["items"]]


def _act(api: Api, pid: int, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = api.post(f"/api/v1/projects/{pid}/items/actions", body)
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.fixture(scope="module")
def labeled(make_user: MakeUser, data_dir: Path) -> tuple[Proj, dict[str, int]]:
    """12 items: two agreed (consensus), one where a and b disagreed (target raised), one
    that a holds, the rest untouched. Returns the project and item id by file name."""
    p = setup_project(make_user, data_dir, items=12, labelers=3, consensus=CONSENSUS)
    a, b, _ = p.labelers
    la, lb = next_(a, p.pid, 4), next_(b, p.pid, 4)
    by_item = {x["item"]["id"]: x for x in lb}
    cat, dog = p.labels["cat"], p.labels["dog"]
    for n, lease in enumerate(la[:3]):
        assert submit(a, lease, {"classes": [cat]}).status_code == 200
        other = by_item[lease["item"]["id"]]
        assert submit(b, other, {"classes": [dog if n == 2 else cat]}).status_code == 200
    ids = {i["key"]: i["id"] for i in _list(p.owner, p.pid, "limit=100")["items"]}
    return p, ids


def test_filters_and_sorts(labeled: tuple[Proj, dict[str, int]]) -> None:
    p, ids = labeled
    owner, pid = p.owner, p.pid
    a = p.labelers[0]
    everything = _list(owner, pid)
    assert _count(owner, pid) == 12 and everything["partial"] is False
    assert [i["id"] for i in everything["items"]] == sorted(ids.values())
    assert _count(owner, pid, "status=labeled") == 2
    assert _count(owner, pid, "status=labeled&status=in_progress") == 4
    assert _count(owner, pid, "agreement=consensus") == 2
    raised = _list(owner, pid, "agreement=raised")
    assert len(raised["items"]) == 1 and raised["items"][0]["target"] == 3
    assert _count(owner, pid, "agreement=disagreement") == 1
    me = a.get("/api/v1/me").json()["user"]["id"]
    # a submitted 3 and holds 1.
    assert _count(owner, pid, f"labeler={me}") == 4
    assert _count(owner, pid, "labeler=999999") == 0
    assert _keys(_list(owner, pid, "name=007")) == ["007.png"]
    assert _count(owner, pid, "name=.PNG") == 12  # case-insensitive
    assert _count(owner, pid, "name=%25") == 0    # "%" is a character, not a wildcard
    assert _count(owner, pid, "has_prelabel=true") == 0
    assert _count(owner, pid, "needs_review=false") == 12
    desc = _keys(_list(owner, pid, "sort=-key"))
    assert desc == sorted(ids, reverse=True)
    by_status = [i["status"] for i in _list(owner, pid, "sort=status")["items"]]
    assert by_status == sorted(by_status)
    recent = _list(owner, pid, "sort=-updated_at")["items"]
    assert recent[0]["updated_at"] >= recent[-1]["updated_at"]
    agreed = _list(owner, pid, "agreement=consensus")["items"][0]
    assert agreed["final"] == {"classes": [p.labels["cat"]]} and agreed["agreement"] == 1.0


@pytest.mark.parametrize("sort", ["id", "-key", "updated_at", "-status"])
def test_cursor_pages_forward_and_back_without_gaps(labeled: tuple[Proj, dict[str, int]],
                                                    sort: str) -> None:
    p, ids = labeled
    whole = _keys(_list(p.owner, p.pid, f"sort={sort}&limit=100"))
    pages, page = [], _list(p.owner, p.pid, f"sort={sort}&limit=5")
    assert page["prev_cursor"] is None
    while True:
        pages.append(page)
        if page["next_cursor"] is None:
            break
        page = _list(p.owner, p.pid, f"sort={sort}&limit=5&cursor={page['next_cursor']}")
    assert [k for pg in pages for k in _keys(pg)] == whole and len(pages) == 3
    # Back from the last page: the same pages, in the same order.
    back = _list(p.owner, p.pid, f"sort={sort}&limit=5&cursor={pages[-1]['prev_cursor']}")
    assert _keys(back) == _keys(pages[1])
    first = _list(p.owner, p.pid, f"sort={sort}&limit=5&cursor={back['prev_cursor']}")
    assert _keys(first) == _keys(pages[0]) and first["prev_cursor"] is None


async def test_a_name_search_answers_in_stretches(services: Services, monkeypatch: pytest.MonkeyPatch,
                                                  labeled: tuple[Proj, dict[str, int]]) -> None:
    """A file-name search examines a bounded stretch of the order per page: a short page says
    so (partial) and its cursor goes on where the stretch ended, so nothing is skipped."""
    p, ids = labeled
    monkeypatch.setattr(item_query, "NAME_SCAN", 4)
    f, order = item_query.ItemFilter(name="1"), item_query.Order("key", desc=True)
    seen: list[str] = []
    partial = 0
    cursor = None
    while True:
        got = await listing.page(services.db, p.pid, f, 2, order, cursor, 2)
        seen += [i["key"] for i in got["items"]]
        partial += got["partial"]
        if got["next_cursor"] is None:
            break
        cursor = item_query.Cursor.decode(got["next_cursor"], order)
    assert seen == ["011.png", "010.png", "001.png"] and partial >= 1
    near = await listing.neighbours(services.db, p.pid, ids["011.png"], f, 2, order)
    assert near is not None and near["previous"] is None and near["next"]["key"] == "010.png"
    near = await listing.neighbours(services.db, p.pid, ids["010.png"], f, 2, order)
    assert near is not None and near["next"]["key"] == "001.png"


def test_the_id_cursor_of_the_older_listing_still_pages(labeled: tuple[Proj, dict[str, int]]) -> None:
    p, ids = labeled
    first = _list(p.owner, p.pid, "limit=5")
    assert first["next_after"] == first["items"][-1]["id"]
    second = _list(p.owner, p.pid, f"limit=5&after={first['next_after']}")
    assert [i["id"] for i in second["items"]] == sorted(ids.values())[5:10]
    assert _list(p.owner, p.pid, "limit=100")["next_after"] is None


def test_bad_queries_are_refused(labeled: tuple[Proj, dict[str, int]]) -> None:
    p, _ = labeled
    by_key = _list(p.owner, p.pid, "sort=key&limit=2")["next_cursor"]
    for query in ("status=nope", "status=labeled,in_progress", "sort=size", "agreement=most", "labeler=abc",
                  "has_prelabel=maybe",
                  "needs_review=2", "cursor=%21%21", "cursor=bm90IGpzb24", f"cursor={by_key}",
                  "sort=key&after=3", "name=" + "x" * 201, "ids=1,a", "labeler=1&labeler=2"):
        r = p.owner.get(f"/api/v1/projects/{p.pid}/items?{query}")
        assert r.status_code == 422, (query, r.text)
        assert r.json()["error"]["details"], query


def test_labelers_may_not_list_or_act(labeled: tuple[Proj, dict[str, int]]) -> None:
    p, ids = labeled
    a = p.labelers[0]
    assert a.get(f"/api/v1/projects/{p.pid}/items").status_code == 403
    assert a.get(f"/api/v1/projects/{p.pid}/items/{ids['000.png']}/neighbours").status_code == 403
    r = a.post(f"/api/v1/projects/{p.pid}/items/actions",
               {"action": "skip", "ids": [ids["011.png"]], "filter": {}})
    assert r.status_code == 403


def test_neighbours_and_detail(labeled: tuple[Proj, dict[str, int]]) -> None:
    p, ids = labeled
    agreed = _list(p.owner, p.pid, "agreement=consensus")["items"]
    first, second = agreed
    r = p.owner.get(f"/api/v1/projects/{p.pid}/items/{first['id']}/neighbours?agreement=consensus")
    assert r.json() == {"previous": None, "next": second} or (
        r.json()["previous"] is None and r.json()["next"]["id"] == second["id"])
    r = p.owner.get(f"/api/v1/projects/{p.pid}/items/{ids['005.png']}/neighbours?sort=-key")
    assert (r.json()["previous"]["key"], r.json()["next"]["key"]) == ("006.png", "004.png")
    item = p.owner.get(f"/api/v1/projects/{p.pid}/items/{first['id']}").json()["item"]
    assert item["final"] == {"classes": [p.labels["cat"]]} and item["decided_by"] == "consensus"
    assert [a["annotation"] for a in item["annotations"]] == [{"classes": [p.labels["cat"]]}] * 2
    assert {a["user"]["name"] for a in item["annotations"]} == {"labeler0", "labeler1"}
    assert p.owner.get(f"/api/v1/projects/{p.pid}/items/999999999/neighbours").status_code == 404


async def test_actions_keep_the_dispatcher_invariants(services: Services, make_user: MakeUser,
                                                      data_dir: Path) -> None:
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=6, labelers=3,
                                consensus=CONSENSUS)
    owner, pid = p.owner, p.pid
    a, b, c = p.labelers
    cat = p.labels["cat"]
    ids = {i["key"]: i["id"] for i in (await asyncio.to_thread(_list, owner, pid))["items"]}
    la = await asyncio.to_thread(next_, a, pid, 6)
    lb = await asyncio.to_thread(next_, b, pid, 6)
    by_item_b = {x["item"]["id"]: x for x in lb}
    done = la[0]["item"]["id"]
    for lease in (la[0], by_item_b[done]):
        assert (await asyncio.to_thread(submit, a if lease is la[0] else b, lease,
                                        {"classes": [cat]})).status_code == 200
    held = la[1]["item"]["id"]  # a and b hold it
    # Skip the item a and b hold: their leases are released, nobody gets it any more.
    out = await asyncio.to_thread(_act, owner, pid, {"action": "skip", "ids": [held, done], "filter": {}})
    assert out == {"action": "skip", "changed": 1, "unchanged": 1, "project_completed": False}
    r = await asyncio.to_thread(submit, a, la[1], {"classes": [cat]})
    assert r.status_code in (404, 409), r.text
    got_c = await asyncio.to_thread(next_, c, pid, 6)
    assert held not in {x["item"]["id"] for x in got_c}
    # Send the decided item to review; it is in the review queue with no final label.
    out = await asyncio.to_thread(_act, owner, pid, {"action": "review", "ids": [done], "filter": {}})
    assert out["changed"] == 1
    review = (await asyncio.to_thread(owner.get, f"/api/v1/projects/{pid}/review")).json()["items"]
    assert [i["id"] for i in review] == [done]
    # Re-open everything in review or skipped (by filter): back in the queue, each needing
    # one labeler more than it has, never to a labeler who submitted it.
    out = await asyncio.to_thread(_act, owner, pid, {"action": "reopen",
                                                      "filter": {"status": ["needs_review", "skipped"]}})
    assert out["changed"] == 2
    rows = {r["id"]: r for r in await services.db.fetch(
        "SELECT id, status, target FROM items WHERE id = ANY($1::bigint[])", [done, held])}
    assert (rows[done]["status"], rows[done]["target"]) == ("in_progress", 3)
    assert (rows[held]["status"], rows[held]["target"]) == ("unlabeled", 2)
    # Redis forgets everything: the rebuilt queue agrees with what the actions did.
    await Dispatcher(services.redis, services.settings.redis_prefix, ttl_s=600).drop(pid)
    again_a = await asyncio.to_thread(next_, a, pid, 6)
    got = {x["item"]["id"] for x in again_a}
    assert done not in got and held in got
    got_c2 = await asyncio.to_thread(next_, c, pid, 6)
    assert done in {x["item"]["id"] for x in got_c2 + got_c}
    counts = await services.db.fetch(
        "SELECT i.id, i.target, (SELECT count(*) FROM annotations a WHERE a.item_id = i.id) + "
        "(SELECT count(*) FROM leases l WHERE l.item_id = i.id AND l.state = 'active') AS used "
        "FROM items i WHERE i.project_id = $1", pid)
    assert all(r["used"] <= (r["target"] or 2) for r in counts)  # invariant 2 (NULL target: min)
    # Delete one item: gone from the listing, its leases and annotations with it.
    gone = ids["005.png"]
    out = await asyncio.to_thread(_act, owner, pid, {"action": "delete", "ids": [gone], "filter": {}})
    assert out["changed"] == 1
    assert (await asyncio.to_thread(owner.get, f"/api/v1/projects/{pid}/items/{gone}")).status_code == 404
    assert await services.db.fetchval("SELECT count(*) FROM leases WHERE item_id = $1", gone) == 0
    assert await asyncio.to_thread(_count, owner, pid) == 5


def test_export_of_a_selection_and_bad_bodies(labeled: tuple[Proj, dict[str, int]]) -> None:
    p, ids = labeled
    agreed = [i["id"] for i in _list(p.owner, p.pid, "agreement=consensus")["items"]]
    untouched = _list(p.owner, p.pid, "status=unlabeled")["items"][0]["id"]
    out = _act(p.owner, p.pid, {"action": "export", "ids": [agreed[0], untouched], "filter": {},
                                "export": {"format": "jsonl"}})
    done = wait_export(p.owner, out["export"]["id"])
    assert done["status"] == "done" and done["total"] == 1, done
    body = p.owner.get(f"/api/v1/exports/{done['id']}/download").content
    if body[:2] == b"PK":
        body = zipfile.ZipFile(io.BytesIO(body)).read(zipfile.ZipFile(io.BytesIO(body)).namelist()[0])
    lines = [json.loads(x) for x in body.splitlines() if x.strip()]
    assert len(lines) == 1 and json.dumps(lines[0]).count(str(agreed[0])) >= 1
    bodies: list[dict[str, Any]] = [
        {"action": "skip"}, {"action": "skip", "ids": [1]}, {"action": "burn", "filter": {}},
        {"action": "skip", "ids": [], "filter": {}}, {"action": "skip", "filter": {"status": ["nope"]}},
        {"action": "skip", "ids": [0], "filter": {}}, {"action": "skip", "ids": [2**64], "filter": {}},
        {"action": "skip", "filter": {"sort": "key"}},
        {"action": "export", "filter": {}, "export": {"format": "tiff"}}]
    for bad in bodies:
        r = p.owner.post(f"/api/v1/projects/{p.pid}/items/actions", bad)
        assert r.status_code == 422, (bad, r.text)
    # Ids of another project's items change nothing here.
    out = _act(p.owner, p.pid, {"action": "skip", "ids": [10**12], "filter": {}})
    assert out["changed"] == 0 and out["unchanged"] == 0
