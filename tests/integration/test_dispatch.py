"""Leasing, submitting and deciding items through the API, and the dispatcher's invariants."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from server.database import Database
from server.services import Services
from server.work import decisions, queue
from server.work import leases as work
from server.work.queue import SCAN_LIMIT, Dispatcher
from tests.infra import unique, wait_job
from tests.work_setup import MakeUser, item, next_, setup_project, submit


def test_single_labeler_decides_and_items_are_never_repeated(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=3)
    a, b = p.labelers[0], p.labelers[1]
    leases = next_(a, p.pid, 4)
    assert len(leases) == 3 and len({x["item"]["id"] for x in leases}) == 3
    assert not any(x["resumed"] for x in leases)
    assert next_(a, p.pid, 1, holding=leases) == []  # invariant 1: nothing a holds, twice
    assert next_(b, p.pid, 1) == []  # without consensus one labeler is the target
    r = submit(a, leases[0], {"classes": [p.labels["cat"]]})
    assert r.status_code == 200 and r.json()["item_status"] == "labeled"
    assert r.json()["decided"] is True
    got = item(p.owner, p.pid, leases[0]["item"]["id"])
    assert got["final"] == {"classes": [p.labels["cat"]]} and got["decided_by"] == "single"
    again = submit(a, leases[0], {"classes": [p.labels["dog"]]})
    assert again.status_code == 200 and again.json()["repeated"] is True
    assert again.json()["annotation_id"] == r.json()["annotation_id"]
    assert item(p.owner, p.pid, leases[0]["item"]["id"])["final"] == {"classes": [p.labels["cat"]]}


def test_consensus_agreement_disagreement_and_review(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=2, labelers=4,
                      consensus={"enabled": True, "min": 2, "max": 3})
    a, b, c, d = p.labelers
    cat, dog, bird = p.labels["cat"], p.labels["dog"], p.labels["bird"]
    la, lb = next_(a, p.pid, 1)[0], next_(b, p.pid, 1)[0]
    assert la["item"]["id"] == lb["item"]["id"]  # the head of the queue takes two labelers
    lc = next_(c, p.pid, 1)[0]
    assert lc["item"]["id"] != la["item"]["id"]  # invariant 2: the first item is full
    first = la["item"]["id"]
    assert submit(a, la, {"classes": [cat]}).json()["item_status"] == "in_progress"
    r = submit(b, lb, {"classes": [dog]}).json()
    assert (r["item_status"], r["target"], r["decided"]) == ("in_progress", 3, False)
    ld = next_(d, p.pid, 1)[0]
    assert ld["item"]["id"] == first  # the target rose: a third labeler is asked
    r = submit(d, ld, {"classes": [cat]}).json()
    assert r["item_status"] == "labeled" and r["decided"] is True
    decided = item(p.owner, p.pid, first)
    assert decided["final"] == {"classes": [cat]} and decided["decided_by"] == "consensus"
    # The second item: three different answers -> needs review after max labelers.
    second = lc["item"]["id"]
    assert submit(c, lc, {"classes": [cat]}).status_code == 200
    l2a = next_(a, p.pid, 1)
    assert l2a and l2a[0]["item"]["id"] == second
    assert next_(b, p.pid, 1) == []  # full again: c submitted, a holds the other slot
    r = submit(a, l2a[0], {"classes": [dog]}).json()
    assert (r["item_status"], r["target"]) == ("in_progress", 3)
    l2b = next_(b, p.pid, 1)
    assert l2b and l2b[0]["item"]["id"] == second
    r = submit(b, l2b[0], {"classes": [bird]}).json()
    assert r["item_status"] == "needs_review" and r["decided"] is False
    assert item(p.owner, p.pid, second)["status"] == "needs_review"
    for person in p.labelers:
        assert next_(person, p.pid, 1) == []  # invariant 3: decided items are never leased


def test_skip_returns_the_slot_and_is_never_offered_again(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=1)
    a, b = p.labelers[0], p.labelers[1]
    la = next_(a, p.pid, 1)[0]
    assert next_(b, p.pid, 1) == []
    r = a.post(f"/api/v1/leases/{la['lease_id']}/skip")
    assert r.status_code == 200 and r.json()["state"] == "skipped"
    assert a.post(f"/api/v1/leases/{la['lease_id']}/skip").status_code == 409
    assert submit(a, la, {"classes": [p.labels["cat"]]}).status_code == 409
    assert next_(a, p.pid, 1) == []
    lb = next_(b, p.pid, 1)
    assert lb and lb[0]["item"]["id"] == la["item"]["id"]


def test_extend_and_foreign_leases(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=1)
    a, b = p.labelers[0], p.labelers[1]
    la = next_(a, p.pid, 1)[0]
    r = a.post(f"/api/v1/leases/{la['lease_id']}/extend")
    assert r.status_code == 200 and r.json()["expires_at"] >= la["expires_at"]
    assert b.post(f"/api/v1/leases/{la['lease_id']}/extend").status_code == 404
    assert b.post(f"/api/v1/leases/{la['lease_id']}/submit", {}).status_code == 404
    assert a.post("/api/v1/leases/nope/extend").status_code == 404


def test_submit_is_validated_and_grid_sizes_checked(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=2)
    a = p.labelers[0]
    la = next_(a, p.pid, 1)[0]
    r = submit(a, la, {"classes": [p.labels["cat"], p.labels["dog"]]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_annotation"
    r = submit(a, la, {"classes": [999999]})
    assert r.status_code == 422
    r = a.post(f"/api/v1/projects/{p.pid}/tasks/next", {"count": 5})
    assert r.status_code == 422
    assert item(p.owner, p.pid, la["item"]["id"])["status"] == "in_progress"


def test_submitting_the_live_document(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=1, task_type="bbox")
    a = p.labelers[0]
    la = next_(a, p.pid, 1)[0]
    box = {"shapes": [{"id": "s1", "kind": "box", "label": p.labels["dog"],
                       "x": 0.1, "y": 0.1, "w": 0.3, "h": 0.2}]}
    r = submit(a, la, box)
    assert r.status_code == 200 and r.json()["item_status"] == "labeled"
    final = item(p.owner, p.pid, la["item"]["id"])["final"]
    assert final["shapes"][0]["label"] == p.labels["dog"] and final["shapes"][0]["w"] == 0.3


def test_paused_projects_lease_nothing_and_projects_complete(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=1)
    a = p.labelers[0]
    p.owner.post(f"/api/v1/projects/{p.pid}/pause")
    r = a.post(f"/api/v1/projects/{p.pid}/tasks/next", {"count": 1})
    assert r.status_code == 409 and r.json()["error"]["code"] == "project_not_running"
    p.owner.post(f"/api/v1/projects/{p.pid}/resume")
    la = next_(a, p.pid, 1)[0]
    r = submit(a, la, {"classes": [p.labels["bird"]]}).json()
    assert r["project_completed"] is True
    assert p.owner.get(f"/api/v1/projects/{p.pid}").json()["project"]["status"] == "completed"


async def test_expired_leases_return_their_slot_and_late_submits(
    services: Services, make_user: MakeUser, data_dir: Path,
) -> None:
    p = setup_project(make_user, data_dir, items=1)
    a, b = p.labelers[0], p.labelers[1]
    project = await services.db.fetchrow(
        "SELECT id, task_type, consensus FROM projects WHERE id = $1", p.pid)
    dispatcher = Dispatcher(services.redis, services.settings.redis_prefix, ttl_s=0.2)
    handed = await work.lease(dispatcher, services.db, project, a.id, 1)
    assert len(handed.granted) == 1
    await asyncio.sleep(0.3)
    # b asks: a's lease has expired, so its slot goes to b (invariant 4).
    handed_b = await work.lease(dispatcher, services.db, project, b.id, 1)
    assert handed_b.expired == [handed.granted[0].lease_id] and len(handed_b.granted) == 1
    late = a.post(f"/api/v1/leases/{handed.granted[0].lease_id}/submit",
                  {"annotation": {"classes": [p.labels["cat"]]}})
    assert late.status_code == 409 and late.json()["error"]["code"] == "slot_taken"
    ok = b.post(f"/api/v1/leases/{handed_b.granted[0].lease_id}/submit",
                {"annotation": {"classes": [p.labels["dog"]]}})
    assert ok.status_code == 409 or ok.json()["item_status"] == "labeled"


async def test_late_submit_is_accepted_while_the_slot_is_free(
    services: Services, make_user: MakeUser, data_dir: Path,
) -> None:
    p = setup_project(make_user, data_dir, items=1)
    a = p.labelers[0]
    project = await services.db.fetchrow(
        "SELECT id, task_type, consensus FROM projects WHERE id = $1", p.pid)
    dispatcher = Dispatcher(services.redis, services.settings.redis_prefix, ttl_s=0.2)
    handed = await work.lease(dispatcher, services.db, project, a.id, 1)
    await asyncio.sleep(0.3)
    late = a.post(f"/api/v1/leases/{handed.granted[0].lease_id}/submit",
                  {"annotation": {"classes": [p.labels["cat"]]}})
    assert late.status_code == 200 and late.json()["item_status"] == "labeled"


@pytest.mark.reliability(
    area='Faults',
    attack='Flushed all of Redis while labelers held leases.',
    promise='The queue is rebuilt from Postgres on the next request; held leases, submissions and '
            'invariants survive.')
@pytest.mark.parametrize("lost_at", ["after_leases", "after_submits"])
async def test_redis_losing_everything_is_rebuilt_from_postgres(
    services: Services, make_user: MakeUser, data_dir: Path, lost_at: str,
) -> None:
    p = setup_project(make_user, data_dir, items=4, labelers=3,
                      consensus={"enabled": True, "min": 2, "max": 2})
    a, b, c = p.labelers
    cat = p.labels["cat"]
    la = await asyncio.to_thread(next_, a, p.pid, 4)
    lb = await asyncio.to_thread(next_, b, p.pid, 1)
    dispatcher = Dispatcher(services.redis, services.settings.redis_prefix, ttl_s=600)
    if lost_at == "after_submits":
        for lease in la[:2]:
            assert (await asyncio.to_thread(submit, a, lease, {"classes": [cat]})).status_code == 200
    await dispatcher.drop(p.pid)  # Redis forgets everything about the project
    still = la[2:] if lost_at == "after_submits" else la
    again_a = await asyncio.to_thread(next_, a, p.pid, 4)
    # a already holds or did every item: what a holds comes back, nothing new.
    assert [x["lease_id"] for x in again_a] == [x["lease_id"] for x in still]
    assert all(x["resumed"] for x in again_a)
    got_c = await asyncio.to_thread(next_, c, p.pid, 4)
    b_item = lb[0]["item"]["id"]
    # b's item is full (a + b), so c gets only the other three.
    assert b_item not in {x["item"]["id"] for x in got_c} and len(got_c) == 3
    for lease in la[2:] if lost_at == "after_submits" else la:
        assert (await asyncio.to_thread(submit, a, lease, {"classes": [cat]})).status_code == 200
    r = await asyncio.to_thread(submit, b, lb[0], {"classes": [cat]})
    assert r.status_code == 200 and r.json()["item_status"] == "labeled"
    counts = await services.db.fetch(
        "SELECT item_id, count(*) AS n FROM annotations WHERE project_id = $1 GROUP BY item_id", p.pid)
    assert all(row["n"] <= 2 for row in counts)  # invariant 2 held throughout


async def _consensus_project(db: Database, tag: str, users: int) -> tuple[int, list[int]]:
    """A running multiclass project (consensus min 2, max 3) made straight in Postgres, and
    `users` users (the first created it); returns (project id, user ids)."""
    uids = [await db.fetchval("INSERT INTO users (email, name, password_hash) VALUES ($1, 'x', 'x') "
                              "RETURNING id", f"{unique(tag)}@colabel.test") for _ in range(users)]
    pid = await db.fetchval(
        "INSERT INTO projects (name, task_type, consensus, ml_assist, created_by, status) "
        "VALUES ($1, 'multiclass', '{\"enabled\": true, \"min\": 2, \"max\": 3}', "
        "'{\"enabled\": false}', $2, 'running') RETURNING id", unique(tag), uids[0])
    return pid, uids


async def test_a_labeler_far_ahead_still_gets_work_and_targets_only_rise(services: Services,
                                                                          server: str) -> None:
    """Regressions: items a labeler holds pile up at the queue's front while they wait for a
    second labeler (more of them than one lease call may examine); and a submit applied late
    must not lower a target a later one raised."""
    db = services.db
    pid, (uid,) = await _consensus_project(db, "far", 1)
    n = SCAN_LIMIT + 500
    await db.copy_records_to_table("items", records=[(pid, f"{i:05d}.png", "image") for i in range(n)],
                                   columns=["project_id", "key", "media_kind"])
    dispatcher = Dispatcher(services.redis, services.settings.redis_prefix, ttl_s=600)
    async with db.acquire() as conn:
        await dispatcher.rebuild(conn, pid, 2)
    mine: dict[int, str] = {}
    for _ in range(n):
        batch = await dispatcher.lease(pid, uid, 1)
        mine.update((x.item_id, x.lease_id) for x in batch.leases)
    assert len(mine) == n  # not stuck behind the items it holds
    assert (await dispatcher.lease(pid, uid, 1)).leases == []  # and never given one twice
    other = await dispatcher.lease(pid, uid + 1, 1)
    lease_id, iid = other.leases[0].lease_id, other.leases[0].item_id
    await dispatcher.finish(pid, lease_id, "s", target=3)  # committed second, applied first
    await dispatcher.finish(pid, mine[iid], "s", target=2)  # committed first, applied late
    state = await services.redis.hgetall(dispatcher.keys(pid).item(iid))
    assert int(state[b"t"]) == 3


async def _redis_state(client: Any, prefix: str) -> dict[str, Any]:
    """Every key under `prefix` (named without it) and its value, and whether it expires."""
    state: dict[str, Any] = {}
    async for raw in client.scan_iter(match=prefix + "*", count=1000):
        key = raw.decode()
        kind = (await client.type(key)).decode()
        if kind == "hash":
            value: Any = await client.hgetall(key)
        elif kind == "set":
            value = await client.smembers(key)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1, withscores=True)
        else:
            value = await client.get(key)
        state[key.removeprefix(prefix)] = (kind, value, await client.pttl(key) > 0)
    return state


async def test_a_rebuild_sent_in_batches_leaves_the_state_of_one_sent_at_once(
        services: Services, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large project's queue is rebuilt in many pipelines so the process keeps serving
    meanwhile: cut into batches of 7 commands, it must leave exactly what one pipeline does."""
    db = services.db
    pid, users = await _consensus_project(db, "batch", 3)
    await db.copy_records_to_table(
        "items", records=[(pid, f"{i:04d}.png", "image", 3 if i % 5 == 0 else None) for i in range(300)],
        columns=["project_id", "key", "media_kind", "target"])
    ids = [r["id"] for r in await db.fetch("SELECT id FROM items WHERE project_id = $1 ORDER BY id", pid)]
    states = ("active", "active", "expired", "submitted", "skipped")
    leases = [(f"{unique('l')}", pid, iid, users[n % 3], states[n % 5])
              for n, iid in enumerate(ids[:200])]
    await db.executemany("INSERT INTO leases (id, project_id, item_id, user_id, state, expires_at) "
                         "VALUES ($1, $2, $3, $4, $5, now() + interval '10 minutes')", leases)
    await db.executemany("INSERT INTO annotations (project_id, item_id, user_id, lease_id, data) "
                         "VALUES ($1, $2, $3, $4, '{}')",
                         [(pid, iid, uid, lid) for lid, _, iid, uid, st in leases if st == "submitted"])
    whole = Dispatcher(services.redis, unique("whole") + ":", ttl_s=600)
    batched = Dispatcher(services.redis, unique("batched") + ":", ttl_s=600)
    now = 1_700_000_000_000
    async with db.acquire() as conn:
        queued = await whole.rebuild(conn, pid, 2, now_ms=now)
        monkeypatch.setattr(queue, "REBUILD_BATCH", 7)
        assert await batched.rebuild(conn, pid, 2, now_ms=now) == queued
    try:
        one = await _redis_state(services.redis, whole.prefix)
        many = await _redis_state(services.redis, batched.prefix)
        assert len(one) > 300 and many == one
    finally:
        for d in (whole, batched):
            async for key in services.redis.scan_iter(match=d.prefix + "*", count=1000):
                await services.redis.unlink(key)
    assert queued == 300  # one lease (or annotation) per item at most: none is full


def test_refresh_of_a_running_project_feeds_the_queue(make_user: MakeUser, data_dir: Path) -> None:
    """Files added to (or gone from) a running project's datastore reach the work queue."""
    p = setup_project(make_user, data_dir, items=2)
    a = p.labelers[0]
    first = next_(a, p.pid, 4)
    assert len(first) == 2 and next_(a, p.pid, 1, holding=first) == []
    folder = Path(p.owner.get(f"/api/v1/projects/{p.pid}").json()["project"]["dataset"]["datastore"]["path"])
    (folder / "001.png").rename(folder / "later.png")  # one file gone, one new
    r = p.owner.post(f"/api/v1/projects/{p.pid}/refresh")
    assert r.status_code == 202
    found = wait_job(p.owner, r)["result"]
    assert found["added"] == 1 and found["missing"] == 1
    fresh = next_(p.labelers[1], p.pid, 4)
    keys = {x["item"]["key"] for x in fresh}
    assert keys == {"later.png"}, keys  # the new file, and never the missing one
    assert next_(a, p.pid, 4, holding=first) == []  # the rebuilt queue still knows what a holds


async def test_concurrent_submits_on_one_item_still_decide_it(services: Services, server: str) -> None:
    """Two labelers submit the same item at once: the one that waits for the other's item
    lock must see its annotation, so the item is decided rather than left waiting."""
    db = services.db
    pid, uids = await _consensus_project(db, "race", 2)
    iid = await db.fetchval("INSERT INTO items (project_id, key, media_kind) VALUES ($1, 'a.png', "
                            "'image') RETURNING id", pid)
    lids = [unique("lease") for _ in uids]
    for lid, uid in zip(lids, uids, strict=True):
        await db.execute("INSERT INTO leases (id, project_id, item_id, user_id, state, expires_at) "
                         "VALUES ($1, $2, $3, $4, 'active', now() + interval '1 hour')", lid, pid, iid, uid)
    project = await db.fetchrow("SELECT * FROM projects WHERE id = $1", pid)
    vote = {"classes": [1]}
    first = await db.acquire()
    try:
        tx = first.transaction()
        await tx.start()
        early = (await decisions.record_submit(first, project, lids[0], vote, 100)).decision
        assert early.item_status == "in_progress"

        async def second() -> decisions.Decision:
            async with db.acquire() as conn, conn.transaction():
                return (await decisions.record_submit(conn, project, lids[1], vote, 100)).decision

        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # blocked on the item's lock
        await tx.commit()
        late = await asyncio.wait_for(waiting, 10)
    finally:
        await db.release(first)
    assert late.item_status == "labeled" and late.decided
    assert await db.fetchval("SELECT status FROM items WHERE id = $1", iid) == "labeled"


def test_reviewers_see_who_works_on_an_item(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=1)
    a = p.labelers[0]
    lease = next_(a, p.pid)[0]
    iid = lease["item"]["id"]
    seen = p.owner.get(f"/api/v1/projects/{p.pid}/items/{iid}").json()["item"]["labelers"]
    assert seen == [{"user": {"id": a.id, "name": a.user["name"]}, "state": "active"}]  # type: ignore[index]
    assert "labelers" not in a.get(f"/api/v1/projects/{p.pid}/items/{iid}").json()["item"]


def test_boxes_on_one_place_with_three_labels_go_to_review(make_user: MakeUser, data_dir: Path) -> None:
    """The trial that failed: min 2 / max 3 on boxes, three labelers put a box on the same
    place with three different labels; the item was "labeled by consensus" with no box."""
    p = setup_project(make_user, data_dir, items=1, task_type="bbox", labelers=3,
                      consensus={"enabled": True, "min": 2, "max": 3})
    a, b, c = p.labelers

    def drawn(label: str, x: float) -> dict[str, object]:
        return {"shapes": [{"id": "s1", "kind": "box", "label": p.labels[label],
                            "x": x, "y": 0.2, "w": 0.3, "h": 0.3}]}

    la, lb = next_(a, p.pid)[0], next_(b, p.pid)[0]
    assert submit(a, la, drawn("cat", 0.10)).json()["item_status"] == "in_progress"
    r = submit(b, lb, drawn("dog", 0.11)).json()
    assert (r["item_status"], r["target"], r["decided"]) == ("in_progress", 3, False)
    assert "no label has a majority" in r["detail"]
    r = submit(c, next_(c, p.pid)[0], drawn("bird", 0.12)).json()
    assert (r["item_status"], r["decided"]) == ("needs_review", False)
    assert r["agreement"] == pytest.approx(1 / 3)
    got = item(p.owner, p.pid, la["item"]["id"])
    assert got["status"] == "needs_review" and got["final"] is None


class _Unreachable:
    """A pool whose every connection attempt fails, as Postgres going away would."""

    def acquire(self) -> object:
        raise ConnectionRefusedError("postgres is gone")

    async def fetch(self, *args: object) -> object:
        raise ConnectionRefusedError("postgres is gone")


async def test_leases_postgres_did_not_record_go_back_to_the_queue(
        services: Services, make_user: MakeUser, data_dir: Path) -> None:
    """Redis hands out a page, then Postgres fails to record it: the slots go back at once
    rather than stay held until the leases' TTL runs out."""
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=4, labelers=1)
    project = await services.db.fetchrow("SELECT * FROM projects WHERE id = $1", p.pid)
    uid = p.labelers[0].id
    broken = work.LeaseLog(_Unreachable())  # type: ignore[arg-type]
    with pytest.raises(ConnectionRefusedError):
        await work.lease(services.dispatcher, services.db, project, uid, 4, broken)
    keys = services.dispatcher.keys(p.pid)
    assert await services.redis.zcard(keys.leases) == 0
    # Everything can be handed out again, to the same labeler, and recorded this time.
    handed = await work.lease(services.dispatcher, services.db, project, uid, 4)
    assert len(handed.granted) == 4
    assert await services.redis.zcard(keys.leases) == 4
