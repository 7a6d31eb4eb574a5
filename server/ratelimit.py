"""Login throttling: failed attempts are counted per account and per client address."""

from __future__ import annotations

from .errors import TooManyRequests
from .services import Services


class LoginThrottle:
    def __init__(self, services: Services) -> None:
        self.redis = services.redis
        self.keys = services.keys
        self.settings = services.settings

    def _limits(self, email: str, address: str) -> list[tuple[str, int]]:
        s = self.settings
        return [
            (self.keys.login_failures_account(email), s.login_max_failures_account),
            (self.keys.login_failures_address(address), s.login_max_failures_address),
        ]

    async def check(self, email: str, address: str) -> None:
        """Refuse with 429 while either counter is at its limit."""
        for key, limit in self._limits(email, address):
            count = await self.redis.get(key)
            if count is not None and int(count) >= limit:
                ttl = await self.redis.ttl(key)
                raise TooManyRequests(
                    "too many failed sign-in attempts; try again later",
                    retry_after=max(int(ttl), 1),
                )

    async def failed(self, email: str, address: str) -> None:
        window = self.settings.login_window_s
        async with self.redis.pipeline(transaction=True) as pipe:
            for key, _ in self._limits(email, address):
                # The window starts at the first failure and is not extended by later ones:
                # the counter is created with its expiry, and INCR keeps an existing TTL.
                # (Not `EXPIRE … NX`: Redis 6.2, the embedded engine, does not have it.)
                pipe.set(key, 0, ex=window, nx=True)
                pipe.incr(key)
            await pipe.execute()

    async def succeeded(self, email: str) -> None:
        await self.redis.delete(self.keys.login_failures_account(email))
