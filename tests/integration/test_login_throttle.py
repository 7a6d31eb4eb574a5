"""Login throttling: failed attempts are counted per account and per client address, each
attempt before its password is checked, so guesses sent at once cannot pass the limit. Runs
on the embedded Redis too (`make test`'s second pass)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from server.accounts.keys import AccountKeys
from server.accounts.ratelimit import LoginThrottle
from server.errors import TooManyRequests
from server.services import Services
from tests.conftest import PASSWORD
from tests.infra import Api
from tests.reliability import Measured

ACCOUNT_LIMIT = 5  # COLABEL_LOGIN_MAX_FAILURES_ACCOUNT of the test server


async def test_address_limit_spans_accounts_and_account_limit_spans_addresses(
    services: Services,
) -> None:
    services.settings = replace(
        services.settings, login_max_failures_account=3, login_max_failures_address=5, login_window_s=60,
    )
    throttle = LoginThrottle(services)
    for i in range(5):
        await throttle.attempt(f"user{i}@x.test", "10.9.9.9")
    with pytest.raises(TooManyRequests) as exc:
        await throttle.attempt("fresh@x.test", "10.9.9.9")
    assert 0 < exc.value.retry_after <= 60
    await throttle.attempt("fresh@x.test", "10.1.1.1")
    for addr in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        await throttle.attempt("target@x.test", addr)
    with pytest.raises(TooManyRequests):
        await throttle.attempt("target@x.test", "10.0.0.4")
    # A refused attempt was not counted: the address it came from has room still.
    await throttle.attempt("other@x.test", "10.0.0.4")
    # A successful sign-in clears the account counter and is not an address failure.
    await throttle.succeeded("target@x.test", "10.0.0.4")
    await throttle.attempt("target@x.test", "10.0.0.4")
    key = AccountKeys(services.settings.redis_prefix).login_failures_address("10.0.0.4")
    before = int(await services.redis.get(key) or 0)
    await throttle.succeeded("target@x.test", "10.0.0.4")
    assert int(await services.redis.get(key) or 0) == before - 1
    # An attempt that could not be checked (the database failed) is given back.
    await throttle.attempt("other@x.test", "10.0.0.4")
    assert int(await services.redis.get(key) or 0) == before
    await throttle.give_back("other@x.test", "10.0.0.4")
    assert int(await services.redis.get(key) or 0) == before - 1
    assert 0 < await services.redis.ttl(key) <= 60


@pytest.mark.reliability(
    area="Sign-in",
    attack="25 wrong passwords for one account sent at once, then the right one.",
    promise="No more guesses are checked than the account's limit, whatever the concurrency; "
            "the rest answer 429 with Retry-After, and so does the right password until the window ends.")
def test_guesses_sent_at_once_cannot_pass_the_limit(anon: Api, make_user: Callable[..., Api],
                                                    measured: Measured) -> None:
    email = make_user().user["email"]

    def guess(i: int) -> int:
        return anon.post("/api/v1/auth/login", {"email": email, "password": f"guess-{i}"}).status_code

    with ThreadPoolExecutor(25) as pool:
        codes = Counter(pool.map(guess, range(25)))
    assert codes == {401: ACCOUNT_LIMIT, 429: 25 - ACCOUNT_LIMIT}, codes
    right = anon.post("/api/v1/auth/login", {"email": email, "password": PASSWORD})
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0
    assert right.json()["error"]["code"] == "rate_limited"
    measured(f"{codes[401]} answered 401, {codes[429]} answered 429; the right password then 429")
