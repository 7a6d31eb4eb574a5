from __future__ import annotations

from dataclasses import replace

import pytest

from server.errors import TooManyRequests
from server.ratelimit import LoginThrottle
from server.services import Services


async def test_address_limit_spans_accounts_and_account_limit_spans_addresses(
    services: Services,
) -> None:
    services.settings = replace(
        services.settings, login_max_failures_account=3, login_max_failures_address=5, login_window_s=60,
    )
    throttle = LoginThrottle(services)
    for i in range(5):
        await throttle.check(f"user{i}@x.test", "10.9.9.9")
        await throttle.failed(f"user{i}@x.test", "10.9.9.9")
    with pytest.raises(TooManyRequests) as exc:
        await throttle.check("fresh@x.test", "10.9.9.9")
    assert 0 < exc.value.retry_after <= 60
    await throttle.check("fresh@x.test", "10.1.1.1")
    for addr in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        await throttle.failed("target@x.test", addr)
    with pytest.raises(TooManyRequests):
        await throttle.check("target@x.test", "10.0.0.4")
    # A successful sign-in clears the account counter (the address counter stays).
    await throttle.succeeded("target@x.test")
    await throttle.check("target@x.test", "10.0.0.4")
