"""A stateful property test of work distribution: the Redis dispatcher and its Postgres side.

A Hypothesis state machine drives one fresh consensus project (min 2, max 3 labelers) per
example through random `next` (after a reload, or leasing a page ahead), `submit`, `skip`,
`release`, lease expiries and Redis losing every key, keeps a model of what each step must
do, and checks the dispatcher's invariants 1-6 (server/work/queue.py) against Postgres and
Redis after every step.

The machine owns its event loop, connection pool and Redis client (never the pytest-asyncio
loop), and a model clock: the dispatcher is given the clock's `now_ms` for leases and
rebuilds, and a lease the model expires gets an `expires_at` in the past in Postgres, where
`decisions.record_submit` compares it with the real `now()`. The TTL is an hour, so a lease the model
calls live is also live for Postgres for as long as the test runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from migrations.runner import migrate
from server.database import Database
from server.services import init_connection
from server.settings import Settings
from server.work import decisions
from server.work import leases as work
from server.work.errors import WorkError
from server.work.leases import _SKIP
from server.work.queue import Dispatcher, LeaseBatch, Transition

T = TypeVar("T")

N_ITEMS = 4
N_LABELERS = 4
LABELS = ("cat", "dog", "bird")
LOW, HIGH = 2, 3
TTL_S = 3600
TTL_MS = TTL_S * 1000
CLOSED = ("labeled", "needs_review")

_PAST = """
UPDATE leases SET expires_at = now() - interval '1 day' WHERE id = ANY($1::text[]) AND state = 'active'
"""


async def open_pool(url: str) -> Database:
    """The server's own pool (its deadlines, and bulk connections for rebuilds)."""
    defaults = Settings()
    return await Database.open(url, timeout_s=defaults.db_timeout_s,
                               bulk_timeout_s=defaults.db_bulk_timeout_s, min_size=1, max_size=2,
                               init=init_connection)


class ClockedDispatcher(Dispatcher):
    """The real dispatcher, reading the model's clock where `work` does not pass one."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_s: float, clock: Callable[[], int]) -> None:
        super().__init__(client, prefix, ttl_s)
        self.clock = clock
        self.rebuilds = 0

    async def lease(self, project_id: int, user_id: int, count: int,
                    now_ms: int | None = None) -> LeaseBatch:
        return await super().lease(project_id, user_id, count,
                                   self.clock() if now_ms is None else now_ms)

    async def extend(self, project_id: int, lease_id: str, now_ms: int | None = None) -> int | None:
        return await super().extend(project_id, lease_id, self.clock() if now_ms is None else now_ms)

    async def rebuild(self, conn: asyncpg.Connection, project_id: int, default_target: int,
                      now_ms: int | None = None) -> int:
        self.rebuilds += 1
        return await super().rebuild(conn, project_id, default_target,
                                     self.clock() if now_ms is None else now_ms)


@dataclass
class MItem:
    id: int
    truth: int  # index into LABELS
    status: str = "unlabeled"
    target: int = LOW
    votes: tuple[int, ...] = ()


@dataclass
class MLease:
    id: str
    item: int
    user: int
    expires_ms: int
    # When it was handed out: (request number, place in that request's page).
    order: tuple[int, int] = (0, 0)
    # Postgres' state: active, expired (the dispatcher reported it, or the labeler got the
    # item again), submitted, skipped, released.
    state: str = "active"
    # Redis tracks the lease; False once a rebuild ran while it was already expired.
    known: bool = True


def majority(votes: tuple[int, ...]) -> int | None:
    """The multiclass consensus rule with threshold 0.5: a strict majority."""
    if not votes:
        return None
    label, n = Counter(votes).most_common(1)[0]
    return label if n / len(votes) > 0.5 else None


class DispatchMachine(RuleBasedStateMachine):
    database_url = ""
    redis_url = ""

    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db: Database | None = None
        self.redis: aioredis.Redis | None = None
        self.prefix = f"colabel-prop-{uuid.uuid4().hex[:10]}:"
        self.now = int(time.time() * 1000)
        self.items: dict[int, MItem] = {}
        self.model_leases: dict[str, MLease] = {}
        self.users: list[int] = []
        self.label_ids: list[int] = []
        self.accepted = 0
        self.requests = 0
        # Nothing is in Redis before the first lease: it builds the state like after a flush.
        self.needs_rebuild = True
        try:
            self._run(self._open())
        except BaseException:
            self._close()
            raise

    # -- plumbing ------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @property
    def pool(self) -> asyncpg.Pool:
        assert self.db is not None
        return self.db

    @property
    def client(self) -> aioredis.Redis:
        assert self.redis is not None
        return self.redis

    async def _open(self) -> None:
        self.db = await open_pool(self.database_url)
        self.redis = aioredis.Redis.from_url(self.redis_url)
        self.dispatcher = ClockedDispatcher(self.redis, self.prefix, TTL_S, lambda: self.now)
        tag = uuid.uuid4().hex[:12]
        async with self.pool.acquire() as conn, conn.transaction():
            for k in range(N_LABELERS):
                self.users.append(await conn.fetchval(
                    "INSERT INTO users (email, name, password_hash) VALUES ($1, $2, 'x') RETURNING id",
                    f"prop-{tag}-{k}@colabel.test", f"labeler {k}"))
            pid = await conn.fetchval(
                "INSERT INTO projects (name, task_type, status, consensus, ml_assist, started_at) "
                "VALUES ($1, 'multiclass', 'running', $2, $3, now()) RETURNING id",
                f"prop-{tag}", {"enabled": True, "min": LOW, "max": HIGH, "threshold": 0.5},
                {"enabled": False})
            for pos, name in enumerate(LABELS):
                self.label_ids.append(await conn.fetchval(
                    "INSERT INTO labels (project_id, parent_key, name, name_key, position, depth) "
                    "VALUES ($1, 0, $2, $2, $3, 1) RETURNING id", pid, name, pos))
            for user in self.users:
                await conn.execute("INSERT INTO memberships (project_id, user_id, role) "
                                   "VALUES ($1, $2, 'labeler')", pid, user)
            for k in range(N_ITEMS):
                iid = await conn.fetchval(
                    "INSERT INTO items (project_id, key, media_kind, width, height) "
                    "VALUES ($1, $2, 'image', 8, 8) RETURNING id", pid, f"{k:03d}.png")
                self.items[iid] = MItem(iid, k % len(LABELS))
            self.project = await conn.fetchrow("SELECT * FROM projects WHERE id = $1", pid)
        self.pid: int = pid

    async def _drop_keys(self) -> None:
        async for key in self.client.scan_iter(match=self.prefix + "*", count=1000):
            await self.client.unlink(key)

    def _close(self) -> None:
        try:
            if self.redis is not None:
                self._run(self._drop_keys())
                self._run(self.redis.aclose())
            if self.db is not None:
                self._run(self.db.close())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def teardown(self) -> None:
        self._close()

    # -- the model -----------------------------------------------------------------------

    def _advance(self, now_ms: int) -> None:
        """Move the model clock; leases due by then expire for Postgres too."""
        self.now = now_ms
        due = [x.id for x in self.model_leases.values() if x.state == "active" and x.expires_ms <= now_ms]
        if due:
            self._run(self.pool.execute(_PAST, due))

    def _live(self, lease: MLease) -> bool:
        return lease.state == "active" and lease.expires_ms > self.now

    def _of_item(self, iid: int) -> list[MLease]:
        return [x for x in self.model_leases.values() if x.item == iid]

    def _occupied(self, iid: int, but: str | None = None) -> int:
        """Live leases plus annotations: the slots of the item in use."""
        live = sum(1 for x in self._of_item(iid) if x.id != but and self._live(x))
        return live + len(self.items[iid].votes)

    def _kept_from(self, user: int, iid: int) -> bool:
        """Invariant 1: the labeler holds the item, or submitted or skipped it."""
        return any(x.user == user and (x.state in ("submitted", "skipped") or self._live(x))
                   for x in self._of_item(iid))

    def _eligible(self, user: int) -> list[int]:
        return [i.id for i in self.items.values()
                if i.status not in CLOSED and self._occupied(i.id) < i.target
                and not self._kept_from(user, i.id)]

    def _own_live(self, user: int) -> list[MLease]:
        """The labeler's live leases on open items, in the order they were handed out."""
        return sorted((x for x in self.model_leases.values() if x.user == user and self._live(x)
                       and self.items[x.item].status not in CLOSED), key=lambda x: x.order)

    def _predict_submit(self, lease: MLease) -> str | None:
        """The WorkError code decisions.record_submit must raise, or None when it must accept."""
        item = self.items[lease.item]
        if lease.state == "skipped":
            return "lease_skipped"
        if item.status in CLOSED:
            return "item_closed"
        expired = lease.state in ("expired", "released") or lease.expires_ms <= self.now
        if expired and any(x.id != lease.id and x.user == lease.user
                           and x.state in ("active", "submitted", "skipped") for x in self._of_item(item.id)):
            return "lease_superseded"  # the labeler got the item again since
        # Invariant 4: a late submit takes its slot back only while nobody else holds it.
        if expired and self._occupied(item.id, but=lease.id) >= item.target:
            return "slot_taken"
        return None

    # -- rules ---------------------------------------------------------------------------

    @rule(target=leases, who=st.integers(0, N_LABELERS - 1), count=st.integers(1, 2), ahead=st.booleans())
    def next_(self, who: int, count: int, ahead: bool = False) -> Any:
        """A labeler asks for `count` items: after a reload (holding nothing), or for the page
        ahead (holding every live lease they have)."""
        self._advance(self.now + 1000)
        user = self.users[who]
        own = self._own_live(user)
        holding = [x.id for x in own] if ahead else []
        resumable = [x for x in own if x.id not in holding][:count]
        wanted = min(count - len(resumable), work.HELD_PAGES * count - len(own))
        # The first call into the dispatcher (an extend of a resumed lease, or a lease)
        # rebuilds a lost state.
        rebuild_due = self.needs_rebuild and (bool(resumable) or wanted > 0)
        rebuilds = self.dispatcher.rebuilds
        self.requests += 1
        handed = self._run(work.lease(self.dispatcher, self.pool, self.project, user, count,
                                      holding=holding))
        assert self.dispatcher.rebuilds == rebuilds + (1 if rebuild_due else 0)
        if rebuild_due:
            # The rebuild (at this clock) loads only live leases; Redis forgets the others.
            for x in self.model_leases.values():
                if x.state == "active" and x.expires_ms <= self.now:
                    x.known = False
            self.needs_rebuild = False
        # A reload resumes the labeler's own live leases first, in order, extended.
        resumed = [g for g in handed.granted if g.resumed]
        assert [g.lease_id for g in resumed] == [x.id for x in resumable], (resumed, resumable)
        for g in resumed:
            assert g.expires_ms == self.now + TTL_MS
            self.model_leases[g.lease_id].expires_ms = g.expires_ms
        new = [g for g in handed.granted if not g.resumed]
        assert handed.granted[:len(resumed)] == resumed  # resumed come first
        if wanted <= 0:
            assert new == [] and handed.expired == []
            return multiple()
        expected_expired = {x.id for x in self.model_leases.values()
                            if x.state == "active" and x.known and x.expires_ms <= self.now}
        assert set(handed.expired) == expected_expired, (handed.expired, expected_expired)
        for lid in handed.expired:
            self.model_leases[lid].state = "expired"
        eligible = self._eligible(user)
        granted = [g.item_id for g in new]
        assert len(set(granted)) == len(granted), f"one request leased an item twice: {granted}"
        for g in new:
            item = self.items[g.item_id]
            # Invariant 1: never an item the labeler holds, submitted or skipped.
            assert not self._kept_from(user, item.id), f"user {user} was given item {item.id} again"
            # Invariant 3: a closed item is never leased.
            assert item.status not in CLOSED, f"item {item.id} was leased while {item.status}"
            # Invariant 2: a lease only goes to an item with a free slot.
            assert self._occupied(item.id) < item.target, \
                f"item {item.id} leased with {self._occupied(item.id)} of {item.target} slots in use"
        # Expired and released leases return their slot: everything that can be handed out is.
        assert len(granted) == min(wanted, len(eligible)), (granted, eligible, wanted)
        for position, g in enumerate(new):
            # An old lease of this labeler on the item that Postgres still calls active (Redis
            # forgot it in a rebuild) is expired as the new one is recorded.
            for x in self._of_item(g.item_id):
                if x.user == user and x.state == "active":
                    assert x.expires_ms <= self.now, (x, g)
                    x.state = "expired"
            self.model_leases[g.lease_id] = MLease(g.lease_id, g.item_id, user, g.expires_ms,
                                                   (self.requests, position))
            assert g.expires_ms == self.now + TTL_MS
            if self.items[g.item_id].status == "unlabeled":
                self.items[g.item_id].status = "in_progress"
        return multiple(*(g.lease_id for g in new))

    async def _submit(self, lease_id: str, vote: int) -> decisions.Decision:
        """The work service's submit sequence (server/work/service.py) without the live document."""
        annotation = {"classes": [self.label_ids[vote]]}
        async with self.pool.acquire() as conn, conn.transaction():
            decision = (await decisions.record_submit(conn, self.project, lease_id, annotation,
                                                      1000)).decision
        if decision.decided:
            await decisions.complete_if_done(self.pool, self.pid)
        await self.dispatcher.finish(self.pid, lease_id, "s", target=decision.target,
                                     closed=decision.item_status in CLOSED)
        return decision

    def _vote(self, m: MLease, agree: bool, other: int) -> int:
        item = self.items[m.item]
        return item.truth if agree else [k for k in range(len(LABELS)) if k != item.truth][other]

    def _accept(self, m: MLease, vote: int) -> tuple[str, int]:
        """The model after an accepted submit: the item's (status, target)."""
        item = self.items[m.item]
        m.state = "submitted"
        self.accepted += 1
        item.votes = (*item.votes, vote)
        if len(item.votes) >= item.target:
            if majority(item.votes) is not None:
                item.status = "labeled"
            elif item.target < HIGH:
                item.target += 1
            else:
                item.status = "needs_review"
        return item.status, item.target

    @rule(lease=leases, agree=st.booleans(), other=st.integers(0, 1))
    def submit(self, lease: str, agree: bool, other: int) -> None:
        m = self.model_leases[lease]
        if m.state == "submitted":
            return  # the API answers with the first submit ("repeated") and changes nothing
        vote = self._vote(m, agree, other)
        expected = self._predict_submit(m)
        try:
            decision = self._run(self._submit(lease, vote))
        except WorkError as exc:
            assert exc.code == expected, f"submit of {lease} refused with {exc.code}, expected {expected}"
            return
        assert expected is None, f"submit of {lease} accepted, expected {expected}"
        assert (decision.item_status, decision.target) == self._accept(m, vote), (decision, m)

    async def _submit_batch(self, submits: list[decisions.Submit]) -> list[decisions.Recorded | WorkError]:
        """A page (or several labelers' submits group-committed together) in one transaction,
        then the queue told in one round trip, as the work service does."""
        async with self.pool.acquire() as conn, conn.transaction():
            outcomes = await decisions.record_submits(conn, submits)
        done = [o for o in outcomes if isinstance(o, decisions.Recorded)]
        if any(o.decision.decided for o in done):
            await decisions.complete_if_done(self.pool, self.pid)
        if done:
            await self.dispatcher.finish_many(self.pid, [
                Transition(o.lease["id"], "s", o.decision.target, o.decision.item_status in CLOSED)
                for o in done])
        return outcomes

    @rule(chosen=st.lists(leases, min_size=2, max_size=4, unique=True),
          agree=st.lists(st.booleans(), min_size=4, max_size=4), other=st.integers(0, 1))
    def submit_batch(self, chosen: list[str], agree: list[bool], other: int) -> None:
        """Several leases in one batch, maybe of several labelers and of one item: each is
        decided as if they had come one after another, and a refused one changes nothing."""
        self._advance(self.now + 1000)
        ms = [self.model_leases[lid] for lid in chosen]
        votes = [self._vote(m, a, other) for m, a in zip(ms, agree, strict=False)]
        outcomes = self._run(self._submit_batch([
            decisions.Submit(self.project, m.id, {"classes": [self.label_ids[v]]}, 1000)
            for m, v in zip(ms, votes, strict=True)]))
        for m, vote, outcome in zip(ms, votes, outcomes, strict=True):
            expected = "already_submitted" if m.state == "submitted" else self._predict_submit(m)
            if isinstance(outcome, WorkError):
                assert outcome.code == expected, f"{m.id} refused with {outcome.code}, expected {expected}"
                continue
            assert expected is None, f"{m.id} accepted in a batch, expected {expected}"
            got = (outcome.decision.item_status, outcome.decision.target)
            assert got == self._accept(m, vote), (outcome.decision, m)

    @rule(lease=leases)
    def skip(self, lease: str) -> None:
        m = self.model_leases[lease]
        status = self._run(self.pool.execute(_SKIP, lease))
        assert status.endswith(" 1") == (m.state == "active"), (status, m)
        if m.state == "active":
            m.state = "skipped"
            self._run(self.dispatcher.finish(self.pid, lease, "k"))

    @rule(lease=leases)
    def release(self, lease: str) -> None:
        """The labeler walks away from the item (leaves the page, changes the grid)."""
        m = self.model_leases[lease]
        user = m.user
        out = self._run(work.release(self.dispatcher, self.pool, user, [lease]))
        assert (out == {self.pid: [lease]}) == self._live(m), (out, m)
        if self._live(m):
            m.state = "released"

    @rule(lease=leases)
    def expire(self, lease: str) -> None:
        """Move the clock to the lease's expiry; every lease due by then expires with it."""
        m = self.model_leases[lease]
        if not self._live(m):
            return
        self._advance(m.expires_ms)

    @rule()
    def flush(self) -> None:
        """Redis loses everything under the dispatcher's prefix; the next lease rebuilds."""
        self._run(self._drop_keys())
        self.needs_rebuild = True

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def postgres_holds_the_invariants(self) -> None:
        self._run(self._check_postgres())

    @invariant()
    def redis_mirrors_postgres(self) -> None:
        self._run(self._check_redis())

    async def _check_postgres(self) -> None:
        items = {r["id"]: r for r in await self.pool.fetch(
            "SELECT id, status, coalesce(target, $2) AS target, final FROM items WHERE project_id = $1",
            self.pid, LOW)}
        leases = await self.pool.fetch(
            "SELECT id, item_id, user_id, state, expires_at > now() AS live FROM leases "
            "WHERE project_id = $1", self.pid)
        anns = await self.pool.fetch(
            "SELECT a.item_id, a.user_id, a.data, l.item_id AS lease_item, l.user_id AS lease_user "
            "FROM annotations a LEFT JOIN leases l ON l.id = a.lease_id WHERE a.project_id = $1", self.pid)
        # Submitted annotations are never lost (nor invented).
        assert len(anns) == self.accepted, (len(anns), self.accepted)
        # Invariant 1 in Postgres: one open or finished lease and at most one annotation per
        # (item, labeler); expired and released ones may be many.
        pairs = [(r["item_id"], r["user_id"]) for r in leases
                 if r["state"] in ("active", "submitted", "skipped")]
        assert len(pairs) == len(set(pairs))
        ann_pairs = [(r["item_id"], r["user_id"]) for r in anns]
        assert len(ann_pairs) == len(set(ann_pairs))
        assert all((r["lease_item"], r["lease_user"]) == (r["item_id"], r["user_id"]) for r in anns)
        by_id = {r["id"]: r for r in leases}
        assert set(by_id) == set(self.model_leases)
        for lid, m in self.model_leases.items():
            row = by_id[lid]
            assert (row["item_id"], row["user_id"], row["state"]) == (m.item, m.user, m.state), (row, m)
            if m.state == "active":  # the model clock and Postgres' now() agree on expiry
                assert row["live"] == self._live(m), (row, m, self.now)
        label_of = {lid: k for k, lid in enumerate(self.label_ids)}
        for iid, m_item in self.items.items():
            row = items[iid]
            votes = sorted(label_of[a["data"]["classes"][0]] for a in anns if a["item_id"] == iid)
            assert votes == sorted(m_item.votes), (iid, votes, m_item)
            assert (row["status"], row["target"]) == (m_item.status, m_item.target), (dict(row), m_item)
            live = sum(1 for r in leases if r["item_id"] == iid and r["state"] == "active" and r["live"])
            # Invariant 2: live leases + annotations never exceed the current target, at most max.
            assert live + len(votes) <= row["target"] <= HIGH, (iid, live, votes, row["target"])
            top = majority(tuple(votes))
            # Invariant 5: max labelers without agreement means review; agreement means labeled.
            if len(votes) == HIGH and top is None:
                assert row["status"] == "needs_review", (iid, votes, row["status"])
            if row["status"] == "labeled":
                assert top is not None and row["final"] == {"classes": [self.label_ids[top]]}
            if row["status"] == "needs_review":
                assert len(votes) == HIGH and top is None

    async def _check_redis(self) -> None:
        keys = self.dispatcher.keys(self.pid)
        client: Any = self.client  # replies are bytes (no decode_responses), as in the server
        if not await client.exists(keys.epoch):
            assert self.needs_rebuild, "the dispatcher's state vanished without a flush"
            return  # invariant 6 is checked by the next lease's rebuild and the steps after it
        deft = int(await client.hget(keys.conf, "t") or 1)
        held = {int(x) for x in await client.zrange(keys.ready, 0, -1)}
        fresh = {int(x) for x in await client.zrange(keys.fresh, 0, -1)}
        assert not held & fresh, (held, fresh)
        ready = held | fresh  # the queue
        tracked = {k.decode(): v for k, v in await client.zrange(keys.leases, 0, -1, withscores=True)}
        known = {x.id: x.expires_ms for x in self.model_leases.values() if x.state == "active" and x.known}
        assert set(tracked) == set(known), (tracked, known)
        assert all(abs(tracked[k] - known[k]) < 1 for k in known), (tracked, known)
        for iid, m_item in self.items.items():
            seen = {int(x) for x in await client.smembers(keys.seen(iid))}
            # Kept from the item: who holds it (as far as Redis knows) and who submitted or
            # skipped it; an expired or released lease lets it come back to its labeler.
            kept = {x.user for x in self._of_item(iid)
                    if x.state in ("submitted", "skipped") or (x.state == "active" and x.known)}
            if m_item.status not in CLOSED:
                assert seen == kept, (iid, seen, kept)
            if iid in fresh:  # fresh means nobody has held it: anyone may take the head
                assert not seen and not self._of_item(iid), (iid, seen)
            raw = await client.hgetall(keys.item(iid))
            state = {k.decode(): v.decode() for k, v in raw.items()}
            t = int(state.get("t", deft))
            a, d = int(state.get("a", 0)), int(state.get("d", 0))
            if state.get("st") == "x" or (m_item.status in CLOSED and iid not in ready):
                record: tuple[Any, ...] = ("closed",)  # a rebuild leaves closed items out entirely
            else:
                record = ("open", t, d)
            expected = ("closed",) if m_item.status in CLOSED else ("open", m_item.target, len(m_item.votes))
            # A late submit of a lease that expired before a rebuild must still reach Redis
            # (the rebuild keeps expired leases for that). Minimal case:
            # test_late_submit_after_a_rebuild_reaches_redis.
            assert record == expected, (iid, state, iid in ready, m_item)
            if m_item.status not in CLOSED:
                active = sum(1 for x in self._of_item(iid) if x.state == "active" and x.known)
                assert a == active, (iid, state, m_item, active)
                assert (iid in ready) == (a + d < t), (iid, state, ready)


def _prepare(database_url: str, redis_url: str) -> None:
    """Migrate the run's database (the `server` fixture would too) and point the machine at it."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(migrate(database_url))
    finally:
        loop.close()
    DispatchMachine.database_url = database_url
    DispatchMachine.redis_url = redis_url


def test_dispatch_state_machine(database_url: str, redis_url: str) -> None:
    _prepare(database_url, redis_url)
    # No shrink phase: one example costs a fresh project and ~30 steps of database checks, so
    # shrinking a failure runs for minutes, past the 120 s test timeout. A failure prints its
    # whole (at most 30-step) sequence instead.
    run_state_machine_as_test(DispatchMachine, settings=settings(
        max_examples=40, stateful_step_count=30, deadline=None,
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target)))


def test_late_submit_after_a_rebuild_reaches_redis(database_url: str, redis_url: str) -> None:
    """The smallest sequence the state machine found for a bug, now fixed.

    Labeler 0 leases the head item; the lease expires; Redis loses everything; labeler 1's lease
    rebuilds it and takes the same item; labeler 0's late submit is accepted (one live lease + no
    annotation < target 2) and Redis must count it, or labeler 2 would be given the item too:
    2 live leases + 1 annotation on an item with target 2.
    """
    _prepare(database_url, redis_url)
    machine = DispatchMachine()
    try:
        def check() -> None:
            machine.postgres_holds_the_invariants()
            machine.redis_mirrors_postgres()

        check()
        (first,) = machine.next_(who=0, count=1).values
        check()
        machine.expire(lease=first)
        check()
        machine.flush()
        check()
        (second,) = machine.next_(who=1, count=1).values
        check()
        assert machine.model_leases[second].item == machine.model_leases[first].item
        machine.submit(lease=first, agree=True, other=0)
        check()  # Redis counts the late annotation
        machine.next_(who=2, count=1)  # must not hand the full item to a third labeler
        check()
    finally:
        machine.teardown()


SOLO_ITEMS = 5


async def _solo_project(pool: asyncpg.Pool) -> tuple[asyncpg.Record, int, int]:
    """A running project without consensus, one labeler, SOLO_ITEMS items: (project, user, label)."""
    tag = uuid.uuid4().hex[:12]
    async with pool.acquire() as conn, conn.transaction():
        user = await conn.fetchval("INSERT INTO users (email, name, password_hash) "
                                   "VALUES ($1, 'solo', 'x') RETURNING id", f"solo-{tag}@colabel.test")
        pid = await conn.fetchval(
            "INSERT INTO projects (name, task_type, status, consensus, ml_assist, started_at) "
            "VALUES ($1, 'multiclass', 'running', '{\"enabled\": false}', '{\"enabled\": false}', now()) "
            "RETURNING id", f"solo-{tag}")
        label = await conn.fetchval("INSERT INTO labels (project_id, parent_key, name, name_key, position, "
                                    "depth) VALUES ($1, 0, 'cat', 'cat', 0, 1) RETURNING id", pid)
        await conn.execute("INSERT INTO memberships (project_id, user_id, role) VALUES ($1, $2, 'labeler')",
                           pid, user)
        for k in range(SOLO_ITEMS):
            await conn.execute("INSERT INTO items (project_id, key, media_kind) VALUES ($1, $2, 'image')",
                               pid, f"{k:03d}.png")
        project = await conn.fetchrow("SELECT * FROM projects WHERE id = $1", pid)
    return project, user, label


async def _abandon_then_finish(database_url: str, redis_url: str, page: int, plan: list[str]) -> None:
    pool = await open_pool(database_url)
    client = aioredis.Redis.from_url(redis_url)
    prefix = f"colabel-solo-{uuid.uuid4().hex[:10]}:"
    now = [int(time.time() * 1000)]
    dispatcher = ClockedDispatcher(client, prefix, TTL_S, lambda: now[0])
    try:
        project, user, label = await _solo_project(pool)
        pid = project["id"]
        for step in plan:
            handed = await work.lease(dispatcher, pool, project, user, page)
            assert handed.granted, f"nothing handed out at {step!r} with items left"
            ids = [g.lease_id for g in handed.granted]
            if step == "release":
                released = await work.release(dispatcher, pool, user, ids)
                # In the order Postgres returns them (an index scan sorts them by id).
                assert {p: sorted(x) for p, x in released.items()} == {pid: sorted(ids)}
            elif step == "expire":
                now[0] += TTL_MS + 1
                await pool.execute(_PAST, ids)
            else:  # a reload: the same leases come back, resumed
                again = await work.lease(dispatcher, pool, project, user, page)
                assert [g.lease_id for g in again.granted] == ids and all(g.resumed for g in again.granted)
        # Then the labeler works: every item is still theirs to finish, alone.
        for _ in range(SOLO_ITEMS + 1):
            handed = await work.lease(dispatcher, pool, project, user, page)
            if not handed.granted:
                break
            for g in handed.granted:
                async with pool.acquire() as conn, conn.transaction():
                    decision = (await decisions.record_submit(conn, project, g.lease_id,
                                                              {"classes": [label]}, 1000)).decision
                await decisions.complete_if_done(pool, pid)
                await dispatcher.finish(pid, g.lease_id, "s", target=decision.target, closed=decision.decided)
        rows = await pool.fetch("SELECT status FROM items WHERE project_id = $1", pid)
        statuses = [r["status"] for r in rows]
        assert statuses == ["labeled"] * SOLO_ITEMS, statuses
        assert await pool.fetchval("SELECT status FROM projects WHERE id = $1", pid) == "completed"
    finally:
        async for key in client.scan_iter(match=prefix + "*", count=1000):
            await client.unlink(key)
        await client.aclose()
        await pool.close()


def test_a_labeler_who_abandons_every_lease_still_finishes_alone(database_url: str, redis_url: str) -> None:
    """Whatever mix of releases, expiries and reloads came first, a labeler alone on a
    project can finish it: only a submit or a skip keeps an item from its labeler."""
    _prepare(database_url, redis_url)

    @settings(max_examples=15, deadline=None, phases=(Phase.explicit, Phase.generate))
    @given(page=st.sampled_from([1, 2, 4]),
           plan=st.lists(st.sampled_from(["release", "expire", "reload"]), min_size=1, max_size=6))
    def run(page: int, plan: list[str]) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(_abandon_then_finish(database_url, redis_url, page, plan))
        finally:
            loop.close()

    run()
