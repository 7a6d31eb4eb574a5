"""The work path's events go out in batches (server/monitoring/events.py Outbox): emitting
never waits for Redis or fails the caller, events arrive in the order they were emitted, and
what several callers emit in one loop turn costs one command."""

from __future__ import annotations

import asyncio
import json
import uuid

import redis.asyncio as aioredis

from server.monitoring import events
from server.monitoring.keys import events_channel


async def _received(pubsub: aioredis.client.PubSub, n: int) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    while len(got) < n:
        message = await asyncio.wait_for(pubsub.get_message(ignore_subscribe_messages=True,
                                                            timeout=5), 10)
        if message is not None:
            got.append(json.loads(message["data"]))
    return got


async def test_events_emitted_together_arrive_in_order_in_one_command(redis_url: str) -> None:
    prefix = f"outbox-{uuid.uuid4().hex[:8]}:"
    client = aioredis.Redis.from_url(redis_url)
    watcher = aioredis.Redis.from_url(redis_url)
    pubsub = watcher.pubsub()
    await pubsub.subscribe(events_channel(prefix, 1), events_channel(prefix, 2))
    outbox = events.Outbox(client, prefix)
    sent: list[int] = []
    real = events.publish_all

    async def counting(c: aioredis.Redis, messages: list[tuple[str, str]]) -> list[int]:
        sent.append(len(messages))
        return await real(c, messages)

    events.publish_all = counting  # type: ignore[assignment]
    try:
        outbox.emit(1, "leased", user_id=7, items=[10, 11])
        outbox.emit_many([(2, "submitted", {"item_id": 20}), (1, "submitted", {"item_id": 10})])
        outbox.emit(1, "released", user_id=7, leases=1)
        await outbox.drain()
        got = await _received(pubsub, 4)
    finally:
        events.publish_all = real  # type: ignore[assignment]
        await pubsub.aclose()
        await watcher.aclose()
        await client.aclose()
    assert [(e["project_id"], e["type"]) for e in got] == [
        (1, "leased"), (2, "submitted"), (1, "submitted"), (1, "released")]
    assert got[0]["items"] == [10, 11] and got[1]["item_id"] == 20 and "at" in got[3]
    assert sent == [4], f"four events emitted in one loop turn went out as {sent}"


async def test_an_unreachable_redis_neither_blocks_nor_fails_the_caller() -> None:
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    outbox = events.Outbox(client, "nowhere:")
    try:
        began = asyncio.get_running_loop().time()
        outbox.emit(1, "leased", user_id=1, items=[1])  # returns at once, raises nothing
        assert asyncio.get_running_loop().time() - began < 0.05
        await asyncio.wait_for(outbox.drain(), 10)
        outbox.emit(1, "submitted", item_id=1)  # and the next event is tried again
        await asyncio.wait_for(outbox.drain(), 10)
    finally:
        await client.aclose()
