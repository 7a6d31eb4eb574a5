"""A labeler's leases over a session: resumed after a reload, one page leased ahead at most,
released when walked away from, and an item whose lease expired or was released may come
back to the same labeler (only a submit or a skip keeps it from them)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import asyncpg

from server.services import Services
from server.work import leases as work
from server.work.queue import Dispatcher
from tests.work_setup import MakeUser, item, next_, release, setup_project, submit


def test_a_reload_resumes_the_same_page_and_one_page_is_leased_ahead(
        make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=20, labelers=2)
    a, b = p.labelers
    page = next_(a, p.pid, 4)
    assert len(page) == 4 and not any(x["resumed"] for x in page)
    ahead = next_(a, p.pid, 4, holding=page)
    assert len(ahead) == 4 and not {x["item"]["id"] for x in ahead} & {x["item"]["id"] for x in page}
    # Two pages held: asking further ahead gets nothing new.
    assert next_(a, p.pid, 4, holding=page + ahead) == []
    # A reload (the client holds nothing): the same page, in the same order, then the one ahead.
    again = next_(a, p.pid, 4)
    assert [x["lease_id"] for x in again] == [x["lease_id"] for x in page]
    assert all(x["resumed"] for x in again)
    assert all(x["expires_at"] >= y["expires_at"] for x, y in zip(again, page, strict=True))
    assert [x["lease_id"] for x in next_(a, p.pid, 4, holding=again)] == [x["lease_id"] for x in ahead]
    # b never sees what a holds.
    theirs = next_(b, p.pid, 9)
    assert not {x["item"]["id"] for x in theirs} & {x["item"]["id"] for x in page + ahead}


def test_released_leases_give_their_items_back_and_may_come_back(
        make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=2, labelers=2)
    a, b = p.labelers
    mine = next_(a, p.pid, 4)
    assert len(mine) == 2 and next_(b, p.pid, 1) == []
    out = release(a, mine[:1])
    assert out == {"released": [mine[0]["lease_id"]], "inactive": []}
    # The slot is free again: the next one to ask gets the item, a included.
    again = next_(a, p.pid, 4, holding=mine[1:])
    assert [x["item"]["id"] for x in again] == [mine[0]["item"]["id"]]
    assert again[0]["lease_id"] != mine[0]["lease_id"] and not again[0]["resumed"]
    # Releasing twice, someone else's lease, or an unknown one changes nothing.
    assert release(a, mine[:1]) == {"released": [], "inactive": [mine[0]["lease_id"]]}
    assert release(b, again) == {"released": [], "inactive": [again[0]["lease_id"]]}
    assert release(a, [{"lease_id": "nope"}]) == {"released": [], "inactive": ["nope"]}
    assert next_(b, p.pid, 1) == []  # a still holds both
    # A released lease cannot be skipped; the new one is submitted as usual.
    assert a.post(f"/api/v1/leases/{mine[0]['lease_id']}/skip").status_code == 409
    r = submit(a, again[0], {"classes": [p.labels["cat"]]})
    assert r.status_code == 200 and r.json()["item_status"] == "labeled"
    # Bad bodies are refused and release nothing.
    for body in ({"lease_ids": []}, {"lease_ids": "x"}, {}, {"lease_ids": ["x" * 65]}):
        r = a.post("/api/v1/leases/release", body)
        assert r.status_code == 422, (body, r.text)
    assert a.post("/api/v1/leases/release", {"lease_ids": [mine[1]["lease_id"]]}).json()["released"]


def test_a_release_returns_the_slot_on_a_consensus_item(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=1, labelers=3,
                      consensus={"enabled": True, "min": 2, "max": 2})
    a, b, c = p.labelers
    la, lb = next_(a, p.pid)[0], next_(b, p.pid)[0]
    assert next_(c, p.pid) == []  # both slots held
    release(b, [lb])
    lc = next_(c, p.pid)
    assert [x["item"]["id"] for x in lc] == [la["item"]["id"]]
    assert next_(b, p.pid) == []  # full again, for b too
    assert submit(a, la, {"classes": [p.labels["dog"]]}).json()["item_status"] == "in_progress"
    r = submit(c, lc[0], {"classes": [p.labels["dog"]]}).json()
    assert r["item_status"] == "labeled"
    # The released lease cannot sneak a third annotation in.
    late = submit(b, lb, {"classes": [p.labels["cat"]]})
    assert late.status_code == 409 and late.json()["error"]["code"] == "item_closed"


async def test_a_solo_labeler_who_lets_every_lease_expire_still_finishes(
        services: Services, make_user: MakeUser, data_dir: Path) -> None:
    """The regression: expired leases kept their items from their labeler for ever, so an
    owner labeling alone could not finish their own project."""
    p = setup_project(make_user, data_dir, items=3, labelers=1)
    (a,) = p.labelers
    project = await services.db.fetchrow("SELECT * FROM projects WHERE id = $1", p.pid)
    dispatcher = Dispatcher(services.redis, services.settings.redis_prefix, ttl_s=0.2)
    first = await work.lease(dispatcher, services.db, project, a.id, 4)
    assert len(first.granted) == 3
    await asyncio.sleep(0.3)
    # Every lease expired: asking again hands the same items back (new leases).
    again = await work.lease(dispatcher, services.db, project, a.id, 4)
    assert sorted(x.lease_id for x in first.granted) == sorted(again.expired)
    assert sorted(g.item_id for g in again.granted) == sorted(g.item_id for g in first.granted)
    assert not any(g.resumed for g in again.granted)
    # A late submit of an old lease is refused while the same labeler holds a newer one.
    late = await asyncio.to_thread(a.post, f"/api/v1/leases/{first.granted[0].lease_id}/submit",
                                   {"annotation": {"classes": [p.labels["cat"]]}})
    assert late.status_code == 409 and late.json()["error"]["code"] == "lease_superseded"
    for g in again.granted:
        r = await asyncio.to_thread(a.post, f"/api/v1/leases/{g.lease_id}/submit",
                                    {"annotation": {"classes": [p.labels["cat"]]}})
        assert r.status_code == 200, r.text
    assert r.json()["project_completed"] is True
    for g in again.granted:
        assert (await asyncio.to_thread(item, p.owner, p.pid, g.item_id))["status"] == "labeled"


def test_held_leases_are_submitted_while_the_project_is_paused(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=2)
    a = p.labelers[0]
    la = next_(a, p.pid)[0]
    assert p.owner.post(f"/api/v1/projects/{p.pid}/pause").status_code == 200
    r = a.post(f"/api/v1/projects/{p.pid}/tasks/next", {"count": 1})
    assert r.status_code == 409 and r.json()["error"]["code"] == "project_not_running"
    assert "paused" in r.json()["error"]["message"]
    done = submit(a, la, {"classes": [p.labels["cat"]]})
    assert done.status_code == 200 and done.json()["item_status"] == "labeled"


async def test_a_delayed_release_waits_for_a_reload_then_gives_the_items_back(
        services: Services, make_user: MakeUser, data_dir: Path) -> None:
    """A closing tab releases its leases after a grace period: a reload within it resumes them
    all (and the grace is forgotten), a tab that stays closed gives them back."""
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=8, labelers=2)
    a, b = p.labelers
    page = await asyncio.to_thread(next_, a, p.pid, 4)
    ahead = await asyncio.to_thread(next_, a, p.pid, 4, page)

    async def expiry_s() -> list[float]:
        """Seconds each lease of both pages has left."""
        rows = await services.db.fetch(
            "SELECT id, extract(epoch FROM expires_at - now())::float8 AS left FROM leases "
            "WHERE id = ANY($1::text[])", [x["lease_id"] for x in page + ahead])
        return [r["left"] for r in rows]

    def leave(after_s: int) -> dict[str, list[str]]:
        r = a.post("/api/v1/leases/release", {"lease_ids": [x["lease_id"] for x in page + ahead],
                                              "after_s": after_s})
        assert r.status_code == 200, r.text
        out: dict[str, list[str]] = r.json()
        return out

    out = await asyncio.to_thread(leave, 30)
    assert out["released"] == [x["lease_id"] for x in page + ahead] and out["inactive"] == []
    assert all(0 < left <= 30 for left in await expiry_s())
    assert await asyncio.to_thread(next_, b, p.pid, 9) == []  # still a's during the grace
    # A reload within the grace resumes the same two pages, with their full lifetime back.
    again = await asyncio.to_thread(next_, a, p.pid, 4)
    assert [x["lease_id"] for x in again] == [x["lease_id"] for x in page]
    assert [x["lease_id"] for x in await asyncio.to_thread(next_, a, p.pid, 4, again)] == \
        [x["lease_id"] for x in ahead]
    assert all(left > 30 for left in await expiry_s())
    # The tab closes for good: once the grace is over the items go to whoever asks.
    await asyncio.to_thread(leave, 1)
    await asyncio.sleep(1.2)
    theirs = await asyncio.to_thread(next_, b, p.pid, 9)
    assert sorted(x["item"]["id"] for x in theirs) == sorted(x["item"]["id"] for x in page + ahead)
    r = await asyncio.to_thread(a.post, "/api/v1/leases/release", {"lease_ids": ["x"], "after_s": 3601})
    assert r.status_code == 422


class _ReleasesWhileAsking:
    """A pool whose first read of the labeler's live leases is followed, before the caller
    goes on, by a release of all of them: another tab of the same labeler giving its page
    back at the moment this one asks for work."""

    def __init__(self, pool: Any, dispatcher: Dispatcher, user_id: int) -> None:
        self.pool, self.dispatcher, self.user_id = pool, dispatcher, user_id
        self.released: list[str] = []

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self.pool.fetch(query, *args)
        if query == work._OWN_ACTIVE and not self.released:
            self.released = [r["id"] for r in rows]
            await work.release(self.dispatcher, self.pool, self.user_id, self.released)
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


async def test_leases_released_while_asking_do_not_hold_back_new_work(
        services: Services, make_user: MakeUser, data_dir: Path) -> None:
    """Asking for one item while two pages of four were being released used to count the
    eight as still held and answer with nothing, as if no work were left."""
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=12, labelers=1)
    (a,) = p.labelers
    page = await asyncio.to_thread(next_, a, p.pid, 4)
    await asyncio.to_thread(next_, a, p.pid, 4, page)
    project = await services.db.fetchrow("SELECT * FROM projects WHERE id = $1", p.pid)
    dispatcher = Dispatcher(services.redis, services.settings.redis_prefix, ttl_s=600)
    pool = _ReleasesWhileAsking(services.db, dispatcher, a.id)
    got = await work.lease(dispatcher, cast(asyncpg.Pool, pool), project, a.id, 1)
    assert len(pool.released) == 8
    assert len(got.granted) == 1 and not got.granted[0].resumed
    assert got.granted[0].lease_id not in pool.released
