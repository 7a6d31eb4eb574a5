"""Cross-node fan-out of document updates and presence through Redis pub/sub.

Each room has a channel. A message is `node id (16 bytes) + kind (1 byte) + payload`.
A node drops messages carrying its own id (its own echoes) and never republishes what
it received, so there are no loops. One pub/sub connection serves every room of the
process; `subscribe` returns only once Redis has confirmed the subscription, so a room
that subscribes before loading cannot miss an update published during its load.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from .keys import FanoutKeys
from .tasks import stop_task

log = logging.getLogger(__name__)

KIND_UPDATE = 0
KIND_AWARENESS = 1
# A node that just loaded a room sends its state vector; nodes holding the room answer
# with what it lacks (an update published before it subscribed and not yet stored when
# it loaded), with their own state vector (STATE) and with their clients' presence.
# A node also says HELLO for every room it holds when its pub/sub connection comes back
# (Redis restarted, or the link dropped): whatever was published meanwhile is lost.
KIND_HELLO = 2
# A state vector: answered with what its sender lacks, if anything, and never asked back.
KIND_STATE = 3
Handler = Callable[[int, bytes], Awaitable[None] | None]


async def pubsub_messages(pubsub: PubSub, what: str) -> AsyncIterator[dict[str, Any]]:
    """Every message `pubsub` receives, for ever: a lost connection is retried (redis-py
    subscribes every channel anew), and a confused one (a reply out of turn when a
    subscribe reconnected at the same moment) is started afresh rather than given up."""
    while True:
        try:
            message = await pubsub.get_message(timeout=1.0)
        except RedisConnectionError as exc:
            log.warning("%s connection lost: %s; retrying", what, exc)
            await asyncio.sleep(0.5)
            continue
        except (RedisError, RuntimeError) as exc:
            log.warning("%s connection confused (%s); reconnecting", what, exc)
            connection = pubsub.connection
            if connection is not None:
                with contextlib.suppress(RedisError, OSError):
                    await connection.disconnect()
            await asyncio.sleep(0.5)
            continue
        if message is not None:
            yield message


# ARGV: channel, message, channel, message, ...: each published in order, by one command (a
# pipeline of PUBLISH costs the client a command and a reply each). Returns the subscriber
# counts. Channels are arguments, not keys: PUBLISH goes to every node of a cluster anyway.
PUBLISH_ALL = """
local counts = {}
for i = 1, #ARGV, 2 do counts[#counts + 1] = redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end
return counts
"""
_PUBLISH_ALL_SHA = hashlib.sha1(PUBLISH_ALL.encode()).hexdigest()


async def publish_all(client: aioredis.Redis,
                      messages: Sequence[tuple[str | bytes, str | bytes]]) -> list[int]:
    """Publish (channel, message) pairs in order with one command; each one's subscriber count."""
    if not messages:
        return []
    args = [part for message in messages for part in message]
    try:
        counts = await client.evalsha(_PUBLISH_ALL_SHA, 0, *args)
    except NoScriptError:
        counts = await client.eval(PUBLISH_ALL, 0, *args)
    return [int(c) for c in counts]


class Fanout:
    """Publishes and receives room messages for one server process (one node id)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.node_id = uuid.uuid4().bytes
        self._pubsub = client.pubsub(ignore_subscribe_messages=False)
        self._handlers: dict[bytes, Handler] = {}
        # Called when the pub/sub connection is back after a loss (see _read).
        self.on_resubscribed: Callable[[], None] | None = None
        self._pending: dict[bytes, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._keys = FanoutKeys(prefix)
        self._control = self._keys.node(self.node_id)

    def channel(self, room: str) -> bytes:
        return self._keys.room(room)

    async def start(self) -> None:
        # A private channel keeps the connection subscribed even with no rooms open.
        await self._subscribe(self._control)
        self._reader = asyncio.create_task(self._read())
        await self._wait_confirmed(self._control)

    async def stop(self) -> None:
        await stop_task(self._reader)
        self._reader = None
        await self._pubsub.aclose()

    async def _subscribe(self, channel: bytes) -> None:
        connection = self._pubsub.connection
        if connection is not None and not connection.is_connected:
            # The reader re-establishes the connection (and subscribes everything again):
            # a second connect on it from here would interleave the two handshakes.
            raise RedisConnectionError("redis pub/sub connection is being re-established")
        self._pending[channel] = asyncio.get_running_loop().create_future()
        await self._pubsub.subscribe(channel)

    async def _wait_confirmed(self, channel: bytes, timeout_s: float = 10.0) -> None:
        future = self._pending.get(channel)
        if future is not None:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)

    async def subscribe(self, room: str, handler: Handler) -> None:
        """Receive other nodes' messages for `room`; returns once Redis confirmed (raises
        a Redis error or TimeoutError if it cannot)."""
        channel = self.channel(room)
        self._handlers[channel] = handler
        try:
            await self._subscribe(channel)
            await self._wait_confirmed(channel)
        except BaseException:
            self._handlers.pop(channel, None)
            self._pending.pop(channel, None)
            raise

    async def unsubscribe(self, room: str) -> None:
        channel = self.channel(room)
        self._handlers.pop(channel, None)
        with contextlib.suppress(RedisConnectionError):
            await self._pubsub.unsubscribe(channel)

    async def publish(self, room: str, kind: int, payload: bytes) -> int:
        """Publish one message; return how many subscribers got it (this node included)."""
        count: int = await self.client.publish(self.channel(room), self._frame(kind, payload))
        return count

    def _frame(self, kind: int, payload: bytes) -> bytes:
        return self.node_id + bytes((kind,)) + payload

    async def publish_many(self, messages: list[tuple[str, int, bytes]]) -> list[int]:
        """Publish a batch with one command; return each message's subscriber count."""
        return await publish_all(self.client, [(self.channel(room), self._frame(kind, payload))
                                               for room, kind, payload in messages])

    async def _read(self) -> None:
        async for message in pubsub_messages(self._pubsub, "redis pub/sub"):
            channel = message["channel"]
            if message["type"] == "subscribe":
                future = self._pending.pop(channel, None)
                if future is not None and not future.done():
                    future.set_result(None)
                elif channel == self._control and self.on_resubscribed is not None:
                    # The private channel is subscribed once; confirmed again, it means the
                    # connection was lost and redis-py subscribed every channel anew.
                    log.warning("redis pub/sub connection re-established; resyncing rooms")
                    self.on_resubscribed()
                continue
            if message["type"] != "message":
                continue
            data: bytes = message["data"]
            if len(data) < 17 or data[:16] == self.node_id:
                continue
            handler = self._handlers.get(channel)
            if handler is None:
                continue
            try:
                result = handler(data[16], data[17:])
                if result is not None:
                    await result
            except Exception:  # noqa: BLE001 - one bad message must not stop fan-out
                log.exception("fan-out handler failed for %r", channel)
