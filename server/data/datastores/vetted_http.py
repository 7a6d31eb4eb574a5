"""The Azure SDK's aiohttp transport, held to the outbound policy at connect time.

Every request's URL is checked before it is sent, and host names go through a resolver
that refuses the whole answer when any address in it is not allowed: aiohttp connects
only to the addresses its resolver returns, so the address vetted is the address used
and a name that re-resolves elsewhere (DNS rebinding) is caught on every new connection.
Redirects are never followed (the transport sends with `allow_redirects=False`, and the
datastore turns the SDK's redirect policy off). Proxies from the environment are not
used: a proxy would resolve the name itself, out of the policy's sight.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from azure.core.pipeline.transport import AioHttpTransport

from server.outbound import AddressRefused, OutboundPolicy


class VettedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses any answer the policy forbids."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner: AbstractResolver | None = None

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = DefaultResolver()  # needs the running loop, so made on first use
        try:
            answers = await self._inner.resolve(host, port, family)
        except OSError:
            # Not an OSError, so aiohttp passes it on as is and the SDK does not retry it.
            raise AddressRefused("the host name does not resolve") from None
        if not answers:
            raise AddressRefused("the host name does not resolve")
        for answer in answers:
            self._policy.check_address(ipaddress.ip_address(answer["host"].split("%", 1)[0]))
        return answers

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


# The package exports the transport lazily (module __getattr__), so mypy sees Any.
class VettedTransport(AioHttpTransport):  # type: ignore[misc]
    """AioHttpTransport whose session connects only where `policy` allows."""

    session: aiohttp.ClientSession | None

    def __init__(self, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._policy = policy

    async def open(self) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=VettedResolver(self._policy)),
                trust_env=False, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            )
        await super().open()

    async def send(self, request: Any, **config: Any) -> Any:
        # Literal addresses never reach the resolver: judge them (and the scheme) here.
        self._policy.check_url(str(request.url))
        config.pop("proxies", None)
        config.pop("proxy", None)
        return await super().send(request, **config)
