"""The Redis dispatcher: who labels what, with every step one atomic Lua script.

Redis holds the live queue and a little state per item. The queue is two sorted sets by
priority: `fresh`, items nobody has held yet (any labeler can take the head, so a lease
costs the same however far one labeler is ahead of the others), and `ready`, items some
labeler has held that can take another one (walked from the head, skipping the caller's
own; a lease looks at its first few, then takes fresh work, then walks further). Per
item: its target number of labelers `t`, active leases `a`, submitted annotations `d`,
whether it is closed `st=x` (decided or in review), and the labelers it is kept from: those
who hold it now and those who submitted or skipped it (a lease that expires or is released
takes its labeler off that set, so the item may come back to them).
Postgres is the truth: leases and annotations are recorded there, submits are decided
there, and everything in Redis is rebuilt from it when the epoch key is missing (a flush,
a new Redis, a restart, or items changed by an ingest or import).

Invariants (each tested):
1. a labeler never gets an item they have submitted or skipped, nor one they hold; an item
   whose lease expired or was released without a submission may come back to them;
2. active leases + submissions never exceed the item's current target;
3. a closed item is never leased again;
4. expired and released leases return their slot;
5. after `max` labelers without agreement the item needs review (decided in Postgres);
6. after Redis loses everything, a rebuild from Postgres restores 1-5.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from server.work.keys import DispatchKeys

# Items a lease call looks at in `ready` (items someone has held) before it takes a fresh
# one: finishing started items first keeps work in progress small, but the head of `ready`
# may be all the caller's own items waiting for other labelers, so the first look is short.
HELD_FIRST_SCAN = 32
# The most items of `ready` a call examines in all (when nothing fresh is left); bounds the
# script's time for a labeler far ahead of the others.
SCAN_LIMIT = 2000
REBUILD_BATCH = 5000

_EXPIRE_FN = """
local function expire(base, lid, ready, leases, deft)
  local lk = base .. 'l:' .. lid
  local l = redis.call('HMGET', lk, 'i', 'st', 'p', 'u')
  redis.call('ZREM', leases, lid)
  if l[2] ~= 'a' then return end
  redis.call('HSET', lk, 'st', 'e')
  -- Not submitted, not skipped: the item may come back to this labeler.
  if l[4] then redis.call('SREM', base .. 's:' .. l[1], l[4]) end
  local ik = base .. 'i:' .. l[1]
  local a = redis.call('HINCRBY', ik, 'a', -1)
  local s = redis.call('HMGET', ik, 't', 'd', 'st')
  local t = tonumber(s[1]) or deft
  local d = tonumber(s[2]) or 0
  if s[3] ~= 'x' and a + d < t then redis.call('ZADD', ready, l[3], l[1]) end
end
"""

# KEYS: epoch, ready, fresh, leases, conf.
# ARGV: base, user, count, now, ttl, held-first scan, scan limit, lease ids...
# Returns {status, n_expired, expired ids..., lease id, item id, ...}; status -1 = rebuild.
LEASE = _EXPIRE_FN + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local ready, fresh, leases = KEYS[2], KEYS[3], KEYS[4]
local base, user = ARGV[1], ARGV[2]
local want, now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local first_scan, scan_limit = tonumber(ARGV[6]), tonumber(ARGV[7])
local deft = tonumber(redis.call('HGET', KEYS[5], 't')) or 1
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 200)
for _, lid in ipairs(expired) do expire(base, lid, ready, leases, deft) end
local out = {0, #expired}
for _, lid in ipairs(expired) do table.insert(out, lid) end
local got = 0

-- Lease `iid` to the caller if they may take it. Returns (granted, full): full means the
-- item can take nobody else now (closed, or every slot held or done) and leaves the queue.
local function take(iid, prio)
  local sk = base .. 's:' .. iid
  if redis.call('SISMEMBER', sk, user) == 1 then return false, false end
  local ik = base .. 'i:' .. iid
  local s = redis.call('HMGET', ik, 't', 'a', 'd', 'st')
  local t, a, d = tonumber(s[1]) or deft, tonumber(s[2]) or 0, tonumber(s[3]) or 0
  if s[4] == 'x' or a + d >= t then return false, true end
  got = got + 1
  local lid = ARGV[7 + got]
  redis.call('HSET', ik, 'a', a + 1)
  redis.call('SADD', sk, user)
  redis.call('HSET', base .. 'l:' .. lid, 'i', iid, 'u', user, 'st', 'a', 'p', prio)
  redis.call('PEXPIRE', base .. 'l:' .. lid, ttl * 4 + 86400000)
  redis.call('ZADD', leases, now + ttl, lid)
  table.insert(out, lid)
  table.insert(out, iid)
  return true, a + 1 + d >= t
end

-- Walk `ready` from its head in small chunks (most calls need one item), resuming where
-- the previous walk stopped; items that are full are dropped from it on the way.
local offset, scanned = 0, 0
local function walk_ready(limit)
  while got < want and scanned < limit do
    local head = redis.call('ZRANGE', ready, offset, offset + 63, 'WITHSCORES')
    if #head == 0 then return end
    local examined, removed = 0, 0
    for j = 1, #head, 2 do
      if got >= want or scanned >= limit then break end
      scanned = scanned + 1
      examined = examined + 1
      local _, full = take(head[j], head[j + 1])
      if full then
        redis.call('ZREM', ready, head[j])
        removed = removed + 1
      end
    end
    offset = offset + examined - removed
  end
end

walk_ready(first_scan)
-- Fresh items: nobody has held them, so the head is always the caller's to take.
while got < want do
  local head = redis.call('ZRANGE', fresh, 0, want - got - 1, 'WITHSCORES')
  if #head == 0 then break end
  for j = 1, #head, 2 do
    redis.call('ZREM', fresh, head[j])
    local _, full = take(head[j], head[j + 1])
    if not full then redis.call('ZADD', ready, head[j + 1], head[j]) end
  end
end
walk_ready(scan_limit)
return out
"""

# KEYS: epoch, ready, fresh, leases, conf. ARGV: base, then for each transition: lease id,
# outcome (s|k|r), target or '', closed ('1'|'0'). Applies transitions Postgres has already
# committed, in order; returns how many leases it knew (-1 = rebuild).
FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local base = ARGV[1]
local deft = tonumber(redis.call('HGET', KEYS[5], 't')) or 1
local function finish(lid, outcome, target, closed)
  local lk = base .. 'l:' .. lid
  local l = redis.call('HMGET', lk, 'i', 'st', 'p', 'u')
  if not l[1] then return 0 end
  -- Only an active lease can be released (an expired one already gave its slot back).
  if outcome == 'r' and l[2] ~= 'a' then return 0 end
  redis.call('ZREM', KEYS[4], lid)
  local ik = base .. 'i:' .. l[1]
  if l[2] == 'a' then redis.call('HINCRBY', ik, 'a', -1) end
  if outcome == 's' and l[2] ~= 's' then redis.call('HINCRBY', ik, 'd', 1) end
  if l[4] then
    -- Submitted or skipped: never again for this labeler (a late submit after an expiry or
    -- a release puts them back). Released: the item may come back to them.
    if outcome == 'r' then redis.call('SREM', base .. 's:' .. l[1], l[4])
    else redis.call('SADD', base .. 's:' .. l[1], l[4]) end
  end
  redis.call('HSET', lk, 'st', outcome)
  if target ~= '' then
    -- Targets only rise: a submit that committed earlier but arrives here later must not
    -- undo the rise a later disagreement made.
    local cur = tonumber(redis.call('HGET', ik, 't')) or deft
    if tonumber(target) > cur then redis.call('HSET', ik, 't', target) end
  end
  if closed == '1' then
    redis.call('HSET', ik, 'st', 'x')
    redis.call('ZREM', KEYS[2], l[1])
    redis.call('ZREM', KEYS[3], l[1])
    return 1
  end
  local s = redis.call('HMGET', ik, 't', 'a', 'd')
  local t, a, d = tonumber(s[1]) or deft, tonumber(s[2]) or 0, tonumber(s[3]) or 0
  if a + d < t then redis.call('ZADD', KEYS[2], l[3], l[1]) else redis.call('ZREM', KEYS[2], l[1]) end
  return 1
end
local known = 0
for j = 2, #ARGV, 4 do known = known + finish(ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3]) end
return known
"""

# KEYS: epoch, leases. ARGV: lease id, new expiry. 1 if extended, 0 if not active, -1 = rebuild.
EXTEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) == false then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS: epoch, leases. ARGV: lease id, expiry. Brings an active lease's expiry forward (never
# later). 1 if done, 0 if not active, -1 = rebuild.
SHORTEN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local cur = redis.call('ZSCORE', KEYS[2], ARGV[1])
if cur == false then return 0 end
if tonumber(ARGV[2]) < tonumber(cur) then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
return 1
"""

# A rebuild reads the project in one snapshot, streamed in batches (see `rebuild`).
# Per open item: its priority, target, live leases, submitted annotations, and whether
# anyone ever held it.
_PG_OPEN_ITEMS = """
WITH held AS (
    SELECT item_id, count(*) FILTER (WHERE state = 'active' AND expires_at > $3) AS active
    FROM leases WHERE project_id = $1 GROUP BY item_id
), done AS (
    SELECT item_id, count(*) AS n FROM annotations WHERE project_id = $1 GROUP BY item_id
)
SELECT i.id, coalesce(i.cluster_rank, i.shuffle_key) AS priority, coalesce(i.target, $2) AS target,
       coalesce(held.active, 0) AS active, coalesce(done.n, 0) AS done,
       held.item_id IS NOT NULL AS held_before
FROM items i LEFT JOIN held ON held.item_id = i.id LEFT JOIN done ON done.item_id = i.id
WHERE i.project_id = $1 AND i.status IN ('unlabeled', 'in_progress')
"""
# Who has had each item (a live lease, a submit or a skip): never given it again.
_PG_SEEN = """
SELECT item_id, array_agg(user_id) AS users FROM leases
WHERE project_id = $1 AND (state IN ('submitted', 'skipped') OR (state = 'active' AND expires_at > $2))
GROUP BY item_id
"""
# Leases the dispatcher keeps a hash of; priority: their item's, when it is open.
_PG_LEASES = """
SELECT l.id, l.item_id, l.user_id, l.state, l.expires_at,
       CASE WHEN i.status IN ('unlabeled', 'in_progress')
            THEN coalesce(i.cluster_rank, i.shuffle_key) END AS priority
FROM leases l LEFT JOIN items i ON i.id = l.item_id
WHERE l.project_id = $1 AND l.state IN ('active', 'expired', 'released')
"""


@dataclass(frozen=True)
class Lease:
    lease_id: str
    item_id: int
    expires_ms: int


@dataclass(frozen=True)
class LeaseBatch:
    leases: list[Lease]
    expired: list[str]


@dataclass(frozen=True)
class Transition:
    """A lease's committed change for FINISH: 's' submitted, 'k' skipped, 'r' released;
    the item's target after it, if known, and whether the item is now closed."""

    lease_id: str
    outcome: str
    target: int | None = None
    closed: bool = False


class NeedsRebuild(Exception):
    """The project's state is missing from Redis."""


class Dispatcher:
    """Leases, releases and rebuilds for every project, against one Redis."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_s: float) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_ms = int(ttl_s * 1000)
        self._lease = client.register_script(LEASE)
        self._finish = client.register_script(FINISH)
        self._extend = client.register_script(EXTEND)
        self._shorten = client.register_script(SHORTEN)

    def keys(self, project_id: int) -> DispatchKeys:
        return DispatchKeys(self.prefix, project_id)

    async def lease(self, project_id: int, user_id: int, count: int,
                    now_ms: int | None = None) -> LeaseBatch:
        """Lease up to `count` items to `user_id`; NeedsRebuild if Redis lost the state."""
        k = self.keys(project_id)
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        ids = [secrets.token_hex(12) for _ in range(count)]
        raw = await self._lease(
            keys=[k.epoch, k.ready, k.fresh, k.leases, k.conf],
            args=[k.item_prefix, user_id, count, now, self.ttl_ms, HELD_FIRST_SCAN, SCAN_LIMIT,
                  *ids],
        )
        if int(raw[0]) == -1:
            raise NeedsRebuild(project_id)
        n_expired = int(raw[1])
        expired = [_s(x) for x in raw[2:2 + n_expired]]
        rest = raw[2 + n_expired:]
        leases = [Lease(_s(rest[i]), int(rest[i + 1]), now + self.ttl_ms)
                  for i in range(0, len(rest), 2)]
        return LeaseBatch(leases, expired)

    async def finish(self, project_id: int, lease_id: str, outcome: str, *,
                     target: int | None = None, closed: bool = False) -> int:
        """Apply a committed transition: 's' submitted, 'k' skipped, 'r' released."""
        return await self.finish_many(project_id, [Transition(lease_id, outcome, target, closed)])

    async def finish_many(self, project_id: int, transitions: Sequence[Transition]) -> int:
        """Apply committed transitions of one project in one round trip, in order; return
        how many leases Redis knew (-1 if it lost the project's state)."""
        k = self.keys(project_id)
        args: list[str | int] = [k.item_prefix]
        for t in transitions:
            args += [t.lease_id, t.outcome, "" if t.target is None else t.target,
                     "1" if t.closed else "0"]
        result: int = await self._finish(keys=[k.epoch, k.ready, k.fresh, k.leases, k.conf], args=args)
        return result

    async def extend(self, project_id: int, lease_id: str, now_ms: int | None = None) -> int | None:
        """Push an active lease's expiry out by the TTL; None if it is not active,
        NeedsRebuild if Redis lost the project's state."""
        k = self.keys(project_id)
        expires = (now_ms if now_ms is not None else int(time.time() * 1000)) + self.ttl_ms
        ok = int(await self._extend(keys=[k.epoch, k.leases], args=[lease_id, expires]))
        if ok == -1:
            raise NeedsRebuild(project_id)
        return expires if ok == 1 else None

    async def shorten(self, project_id: int, lease_id: str, expires_ms: int) -> bool:
        """Let an active lease expire at `expires_ms` if that is sooner; False if it is not
        active, NeedsRebuild if Redis lost the project's state."""
        k = self.keys(project_id)
        ok = int(await self._shorten(keys=[k.epoch, k.leases], args=[lease_id, expires_ms]))
        if ok == -1:
            raise NeedsRebuild(project_id)
        return ok == 1

    async def reopen(self, project_id: int, item_id: int, priority: float, target: int) -> None:
        """Put a re-opened item back in the queue with a fresh target (in `ready`: its
        earlier labelers are in its labeler set, which the walk there checks)."""
        k = self.keys(project_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(k.item(item_id), mapping={"t": target, "st": "o"})
            pipe.zadd(k.ready, {str(item_id): priority})
            await pipe.execute()

    async def close(self, project_id: int, item_id: int) -> None:
        """Take a decided item out of the queue for good (until re-opened)."""
        k = self.keys(project_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(k.item(item_id), "st", "x")
            pipe.zrem(k.ready, str(item_id))
            pipe.zrem(k.fresh, str(item_id))
            await pipe.execute()

    async def drop(self, project_id: int) -> None:
        """Forget a project's state (it will be rebuilt on the next lease)."""
        k = self.keys(project_id)
        async for key in self.client.scan_iter(match=k.base + "*", count=5000):
            await self.client.unlink(key)

    async def rebuild(self, conn: asyncpg.Connection, project_id: int, default_target: int,
                      now_ms: int | None = None) -> int:
        """Recreate the project's Redis state from Postgres; return queued items.

        A large project (500,000 items, a million leases) is read in one snapshot but
        streamed: rows are turned into Redis commands REBUILD_BATCH at a time, sent, and
        dropped. Fetched whole, they held the event loop for over a second (decoding, and
        the full garbage collections a million new objects set off), stalling every request
        the process serves; the counting is done in Postgres for the same reason."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        at = datetime.fromtimestamp(now / 1000, UTC)
        k = self.keys(project_id)
        await self.drop(project_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(k.conf, "t", default_target)
        queued = 0
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            async for n, lease in _stream(conn, _PG_LEASES, project_id):
                live = lease["state"] == "active" and lease["expires_at"] > at
                if live:
                    pipe.zadd(k.leases, {lease["id"]: lease["expires_at"].timestamp() * 1000})
                # Expired and released leases are kept too: a late submit Postgres accepts
                # must still reach the item's counts here (FINISH ignores unknown leases).
                pipe.hset(k.lease(lease["id"]), mapping={
                    "i": lease["item_id"], "u": lease["user_id"],
                    "p": 0 if lease["priority"] is None else lease["priority"],
                    "st": "a" if live else ("r" if lease["state"] == "released" else "e")})
                pipe.pexpire(k.lease(lease["id"]), self.ttl_ms * 4 + 86_400_000)
                await _pace(pipe, n)
            async for n, row in _stream(conn, _PG_SEEN, project_id, at):
                pipe.sadd(k.seen(row["item_id"]), *row["users"])
                await _pace(pipe, n)
            held: dict[str, float] = {}
            fresh: dict[str, float] = {}
            async for n, row in _stream(conn, _PG_OPEN_ITEMS, project_id, default_target, at):
                iid, target, a, d = row["id"], row["target"], row["active"], row["done"]
                if target != default_target or a or d:
                    pipe.hset(k.item(iid), mapping={"t": target, "a": a, "d": d, "st": "o"})
                if a + d < target:
                    (held if row["held_before"] or d else fresh)[str(iid)] = row["priority"]
                    queued += 1
                if len(held) + len(fresh) >= REBUILD_BATCH:
                    self._queue_batch(pipe, k, held, fresh)
                await _pace(pipe, n)
            self._queue_batch(pipe, k, held, fresh)
        pipe.set(k.epoch, now)
        await pipe.execute()
        return queued

    @staticmethod
    def _queue_batch(pipe: Pipeline, k: DispatchKeys, held: dict[str, float],
                     fresh: dict[str, float]) -> None:
        """Add one rebuild batch of queued items to the pipeline and empty the buffers."""
        if held:
            pipe.zadd(k.ready, held)
        if fresh:
            pipe.zadd(k.fresh, fresh)
        held.clear()
        fresh.clear()


async def _stream(conn: asyncpg.Connection, sql: str, *args: object,
                  ) -> AsyncIterator[tuple[int, asyncpg.Record]]:
    """The rows of `sql`, numbered, fetched REBUILD_BATCH at a time (in a transaction)."""
    n = 0
    async for row in conn.cursor(sql, *args, prefetch=REBUILD_BATCH):
        yield n, row
        n += 1


async def _pace(pipe: Pipeline, n: int) -> None:
    """Send a rebuild's pipeline every REBUILD_BATCH commands, and let other work run every
    REBUILD_BATCH rows (a batch of rows already fetched is worked through without waiting)."""
    if len(pipe) >= REBUILD_BATCH:
        await pipe.execute()
    elif n % REBUILD_BATCH == REBUILD_BATCH - 1:
        await asyncio.sleep(0)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
