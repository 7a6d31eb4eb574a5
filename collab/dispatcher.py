"""The Redis dispatcher: who labels what, with every step one atomic Lua script.

Redis holds the live queue (a sorted set of items that can take another labeler) and a
little state per item: its target number of labelers `t`, active leases `a`, submitted
annotations `d`, whether it is closed `st=x` (decided or in review), and the labelers
who have held it. Postgres is the truth: leases and annotations are recorded there,
submits are decided there, and everything in Redis is rebuilt from it when the epoch key
is missing (a flush, a new Redis, a restart).

Invariants (each tested):
1. a labeler never gets an item they have already leased or submitted;
2. active leases + submissions never exceed the item's current target;
3. a closed item is never leased again;
4. expired leases return their slot;
5. after `max` labelers without agreement the item needs review (decided in Postgres);
6. after Redis loses everything, a rebuild from Postgres restores 1-5.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from .dispatch_keys import DispatchKeys

# Items a lease call looks at before giving up; bounds the cost for a labeler who is far
# ahead of the others (the items they hold wait at the front for other labelers).
SCAN_LIMIT = 2000
REBUILD_BATCH = 5000

_EXPIRE_FN = """
local function expire(base, lid, ready, leases, deft)
  local lk = base .. 'l:' .. lid
  local l = redis.call('HMGET', lk, 'i', 'st', 'p')
  redis.call('ZREM', leases, lid)
  if l[2] ~= 'a' then return end
  redis.call('HSET', lk, 'st', 'e')
  local ik = base .. 'i:' .. l[1]
  local a = redis.call('HINCRBY', ik, 'a', -1)
  local s = redis.call('HMGET', ik, 't', 'd', 'st')
  local t = tonumber(s[1]) or deft
  local d = tonumber(s[2]) or 0
  if s[3] ~= 'x' and a + d < t then redis.call('ZADD', ready, l[3], l[1]) end
end
"""

# KEYS: epoch, ready, leases, conf. ARGV: base, user, count, now, ttl, scan, lease ids...
# Returns {status, n_expired, expired ids..., lease id, item id, ...}; status -1 = rebuild.
LEASE = _EXPIRE_FN + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local base, user = ARGV[1], ARGV[2]
local want, now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local deft = tonumber(redis.call('HGET', KEYS[4], 't')) or 1
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 200)
for _, lid in ipairs(expired) do expire(base, lid, KEYS[2], KEYS[3], deft) end
local out = {0, #expired}
for _, lid in ipairs(expired) do table.insert(out, lid) end
local got = 0
local scan = tonumber(ARGV[6])
local offset, scanned = 0, 0
-- The head is read in small chunks without scores: most calls need one item, and items
-- the caller already held can pile up at the front while they wait for other labelers.
while got < want and scanned < scan do
  local head = redis.call('ZRANGE', KEYS[2], offset, offset + 63)
  if #head == 0 then break end
  local removed = 0
  for _, iid in ipairs(head) do
    if got >= want then break end
    scanned = scanned + 1
    local sk = base .. 's:' .. iid
    if redis.call('SISMEMBER', sk, user) == 0 then
      local ik = base .. 'i:' .. iid
      local s = redis.call('HMGET', ik, 't', 'a', 'd', 'st')
      local t, a, d = tonumber(s[1]) or deft, tonumber(s[2]) or 0, tonumber(s[3]) or 0
      if s[4] == 'x' then
        redis.call('ZREM', KEYS[2], iid)
        removed = removed + 1
      elseif a + d < t then
        got = got + 1
        local lid = ARGV[6 + got]
        local prio = redis.call('ZSCORE', KEYS[2], iid)
        redis.call('HSET', ik, 'a', a + 1)
        redis.call('SADD', sk, user)
        redis.call('HSET', base .. 'l:' .. lid, 'i', iid, 'u', user, 'st', 'a', 'p', prio)
        redis.call('PEXPIRE', base .. 'l:' .. lid, ttl * 4 + 86400000)
        redis.call('ZADD', KEYS[3], now + ttl, lid)
        if a + 1 + d >= t then
          redis.call('ZREM', KEYS[2], iid)
          removed = removed + 1
        end
        table.insert(out, lid)
        table.insert(out, iid)
      else
        redis.call('ZREM', KEYS[2], iid)
        removed = removed + 1
      end
    end
  end
  offset = offset + #head - removed
end
return out
"""

# KEYS: epoch, ready, leases, conf. ARGV: base, lease id, outcome (s|k|x), target or '',
# closed ('1'|'0'). Applies a transition Postgres has already committed.
FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local base, lid, outcome = ARGV[1], ARGV[2], ARGV[3]
local lk = base .. 'l:' .. lid
local l = redis.call('HMGET', lk, 'i', 'st', 'p')
if not l[1] then return 0 end
redis.call('ZREM', KEYS[3], lid)
local ik = base .. 'i:' .. l[1]
if l[2] == 'a' then redis.call('HINCRBY', ik, 'a', -1) end
if outcome == 's' and l[2] ~= 's' then redis.call('HINCRBY', ik, 'd', 1) end
redis.call('HSET', lk, 'st', outcome)
local deft = tonumber(redis.call('HGET', KEYS[4], 't')) or 1
if ARGV[4] ~= '' then
  -- Targets only rise: a submit that committed earlier but arrives here later must not
  -- undo the rise a later disagreement made.
  local cur = tonumber(redis.call('HGET', ik, 't')) or deft
  if tonumber(ARGV[4]) > cur then redis.call('HSET', ik, 't', ARGV[4]) end
end
if ARGV[5] == '1' then
  redis.call('HSET', ik, 'st', 'x')
  redis.call('ZREM', KEYS[2], l[1])
  return 1
end
local s = redis.call('HMGET', ik, 't', 'a', 'd')
local t, a, d = tonumber(s[1]) or deft, tonumber(s[2]) or 0, tonumber(s[3]) or 0
if a + d < t then redis.call('ZADD', KEYS[2], l[3], l[1]) else redis.call('ZREM', KEYS[2], l[1]) end
return 1
"""

# KEYS: epoch, leases. ARGV: lease id, new expiry. 1 if extended, 0 if not active.
EXTEND = """
if redis.call('ZSCORE', KEYS[2], ARGV[1]) == false then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

_PG_ITEMS = """
SELECT id, shuffle_key, coalesce(target, $2) AS target FROM items
WHERE project_id = $1 AND status IN ('unlabeled', 'in_progress')
"""
_PG_LEASES = """
SELECT id, item_id, user_id, state, expires_at FROM leases WHERE project_id = $1
"""
_PG_DONE = """
SELECT item_id, count(*) AS n FROM annotations WHERE project_id = $1 GROUP BY item_id
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

    def keys(self, project_id: int) -> DispatchKeys:
        return DispatchKeys(self.prefix, project_id)

    async def lease(self, project_id: int, user_id: int, count: int,
                    now_ms: int | None = None) -> LeaseBatch:
        """Lease up to `count` items to `user_id`; NeedsRebuild if Redis lost the state."""
        k = self.keys(project_id)
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        ids = [secrets.token_hex(12) for _ in range(count)]
        raw = await self._lease(
            keys=[k.epoch, k.ready, k.leases, k.conf],
            args=[k.item_prefix, user_id, count, now, self.ttl_ms, SCAN_LIMIT, *ids],
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
        """Apply a committed transition: 's' submitted, 'k' skipped, 'e' expired."""
        k = self.keys(project_id)
        result: int = await self._finish(
            keys=[k.epoch, k.ready, k.leases, k.conf],
            args=[k.item_prefix, lease_id, outcome, "" if target is None else target,
                  "1" if closed else "0"],
        )
        return result

    async def extend(self, project_id: int, lease_id: str, now_ms: int | None = None) -> int | None:
        """Push an active lease's expiry out by the TTL; None if it is not active."""
        k = self.keys(project_id)
        expires = (now_ms if now_ms is not None else int(time.time() * 1000)) + self.ttl_ms
        ok = await self._extend(keys=[k.epoch, k.leases], args=[lease_id, expires])
        return expires if int(ok) == 1 else None

    async def reopen(self, project_id: int, item_id: int, priority: float, target: int) -> None:
        """Put a re-opened item back in the queue with a fresh target."""
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
            await pipe.execute()

    async def drop(self, project_id: int) -> None:
        """Forget a project's state (it will be rebuilt on the next lease)."""
        k = self.keys(project_id)
        async for key in self.client.scan_iter(match=k.base + "*", count=5000):
            await self.client.unlink(key)

    async def rebuild(self, conn: asyncpg.Connection, project_id: int, default_target: int,
                      now_ms: int | None = None) -> int:
        """Recreate the project's Redis state from Postgres; return queued items."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        k = self.keys(project_id)
        await self.drop(project_id)
        items = await conn.fetch(_PG_ITEMS, project_id, default_target)
        leases = await conn.fetch(_PG_LEASES, project_id)
        done = {r["item_id"]: r["n"] for r in await conn.fetch(_PG_DONE, project_id)}
        active: dict[int, int] = {}
        seen: dict[int, list[int]] = {}
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(k.conf, "t", default_target)
        for lease in leases:
            seen.setdefault(lease["item_id"], []).append(lease["user_id"])
            live = lease["state"] == "active" and lease["expires_at"].timestamp() * 1000 > now
            if live:
                active[lease["item_id"]] = active.get(lease["item_id"], 0) + 1
                pipe.zadd(k.leases, {lease["id"]: lease["expires_at"].timestamp() * 1000})
            if lease["state"] in ("active", "expired"):
                # Expired leases are kept too: a late submit Postgres accepts must still
                # reach the item's counts here (FINISH ignores leases it does not know).
                pipe.hset(k.lease(lease["id"]), mapping={
                    "i": lease["item_id"], "u": lease["user_id"], "st": "a" if live else "e",
                    "p": 0})
                pipe.pexpire(k.lease(lease["id"]), self.ttl_ms * 4 + 86_400_000)
        for item_id, users in seen.items():
            pipe.sadd(k.seen(item_id), *users)
        queued: dict[str, float] = {}
        for row in items:
            iid, target = row["id"], row["target"]
            a, d = active.get(iid, 0), done.get(iid, 0)
            if target != default_target or a or d:
                pipe.hset(k.item(iid), mapping={"t": target, "a": a, "d": d, "st": "o"})
            if a + d < target:
                queued[str(iid)] = row["shuffle_key"]
            if len(queued) >= REBUILD_BATCH:
                pipe.zadd(k.ready, queued)
                queued = {}
                await pipe.execute()
        if queued:
            pipe.zadd(k.ready, queued)
        # Priorities of rebuilt leases: their items' shuffle keys.
        keys_by_item = {r["id"]: r["shuffle_key"] for r in items}
        for lease in leases:
            if lease["state"] in ("active", "expired"):
                pipe.hset(k.lease(lease["id"]), "p", keys_by_item.get(lease["item_id"], 0))
        pipe.set(k.epoch, now)
        await pipe.execute()
        return sum(1 for r in items if active.get(r["id"], 0) + done.get(r["id"], 0) < r["target"])


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
