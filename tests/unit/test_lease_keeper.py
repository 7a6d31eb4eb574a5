"""The lease keeper on its own: which leases it extends, when, and that it stops."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.live import lease_keeper
from server.live.lease_keeper import LeaseKeeper


async def test_open_documents_keep_their_leases_alive_and_only_while_open(
        monkeypatch: pytest.MonkeyPatch) -> None:
    extended: list[tuple[int, int, int]] = []

    async def record(dispatcher: Any, db: Any, project: int, item: int, user: int) -> None:
        extended.append((project, item, user))

    monkeypatch.setattr(lease_keeper, "keep_alive_once", record)
    keeper = LeaseKeeper(None, None, 0.05)  # type: ignore[arg-type]
    with keeper.holding(1, 2, 3), keeper.holding(1, 2, 3):  # two sockets, one lease
        await asyncio.sleep(0)
        assert extended == [(1, 2, 3)]  # at once, when the first opens
        with keeper.holding(1, 5, 3):
            await asyncio.sleep(0.12)
        assert extended.count((1, 2, 3)) >= 3 and extended.count((1, 5, 3)) >= 2
    gone = len(extended)
    await asyncio.sleep(0.12)
    assert len(extended) == gone  # nothing open: nothing extended, and the loop ended
    assert keeper._loop is not None and keeper._loop.done()  # noqa: SLF001
    await keeper.stop()
