"""Login throttling: failed attempts are counted per account and per client address.

An attempt takes its place in both counters before the password is checked, in one Lua
script that refuses it when either counter is at its limit: concurrent attempts cannot
all pass a check that each made before any of them was counted. A successful sign-in gives
its place back. Only commands Redis 6.2 has (the embedded engine) are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.accounts.keys import AccountKeys
from server.errors import TooManyRequests

if TYPE_CHECKING:
    from server.services import Services

# KEYS: the counters. ARGV: their limits, then the window in seconds. Returns 0 when the
# attempt was counted, else the seconds until the full counter's window ends.
_RESERVE = """
local window = tonumber(ARGV[#KEYS + 1])
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i]) then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then ttl = 1 end
    return ttl
  end
end
for _, key in ipairs(KEYS) do
  -- The window starts at the first failure and later ones do not extend it.
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, window) end
end
return 0
"""
# KEYS: the counters. Takes one attempt back from each (never below zero).
_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""


class LoginThrottle:
    def __init__(self, services: Services) -> None:
        self.redis = services.redis
        self.keys = AccountKeys(services.settings.redis_prefix)
        self.settings = services.settings

    def _limits(self, email: str, address: str) -> list[tuple[str, int]]:
        s = self.settings
        return [
            (self.keys.login_failures_account(email), s.login_max_failures_account),
            (self.keys.login_failures_address(address), s.login_max_failures_address),
        ]

    async def attempt(self, email: str, address: str) -> None:
        """Count a sign-in attempt as failed until it succeeds; 429 while either counter is
        at its limit (and then the attempt is not counted)."""
        limits = self._limits(email, address)
        wait = int(await self.redis.eval(
            _RESERVE, len(limits), *[k for k, _ in limits], *[n for _, n in limits],
            self.settings.login_window_s))
        if wait:
            raise TooManyRequests("too many failed sign-in attempts; try again later", retry_after=wait)

    async def give_back(self, email: str, address: str) -> None:
        """The attempt did not fail on its password (it could not be checked): uncount it."""
        keys = [k for k, _ in self._limits(email, address)]
        await self.redis.eval(_GIVE_BACK, len(keys), *keys)

    async def succeeded(self, email: str, address: str) -> None:
        """The right password: the account's failures are forgotten, and this attempt is
        not one of the address's failures."""
        account, addr = (k for k, _ in self._limits(email, address))
        await self.redis.delete(account)
        await self.redis.eval(_GIVE_BACK, 1, addr)
