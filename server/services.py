"""The long-lived parts one server process holds, built from Settings at start-up: the
Postgres pool, the Redis client, the live documents' rooms, the access watch over open
sockets and the work of labeling. Handlers reach them through `call.services`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from collab.fanout import Fanout
from collab.manager import CollabLimits, RoomManager
from collab.store import DocumentStore
from server.database import Database
from server.live.access_watch import AccessWatch
from server.live.channel import binary_frame
from server.live.keys import LiveKeys
from server.live.lease_keeper import LeaseKeeper
from server.settings import Settings
from server.work.queue import Dispatcher
from server.work.service import WorkService


def _jsonb_out(value: Any) -> bytes:
    # jsonb's binary form: a version byte, then the JSON text. Keys that are not strings
    # (ids in a dict) become strings, as json.dumps would make them.
    return b"\x01" + orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _jsonb_in(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb columns read and write as Python objects (orjson, in jsonb's binary form: the
    submit and export paths move a lot of it)."""
    await conn.set_type_codec("jsonb", encoder=_jsonb_out, decoder=_jsonb_in, schema="pg_catalog",
                              format="binary")


def collab_limits(settings: Settings) -> CollabLimits:
    """The live documents' limits, as configured."""
    return CollabLimits(max_message_bytes=settings.collab_max_message_bytes,
                        messages_per_s=settings.collab_messages_per_s,
                        burst=settings.collab_burst,
                        queue_bytes=settings.collab_queue_bytes)


@dataclass
class Services:
    settings: Settings
    db: Database
    redis: aioredis.Redis
    rooms: RoomManager
    access: AccessWatch
    dispatcher: Dispatcher
    work: WorkService
    # Leases kept alive by labelers' open documents (one loop for all of them).
    keeper: LeaseKeeper
    # The model service's client (inference.client.ModelService) when this process runs
    # ML assistance; set at start-up, so importing this module loads neither torch nor Ray.
    models: Any = None
    # True when another worker process of this machine runs the model service instead
    # (`colabel serve --workers N`, see ml/service_owner.py).
    models_elsewhere: bool = False
    _started: bool = field(default=False, repr=False)

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        """Connect to Postgres and build everything else; `start` sets the live parts going."""
        assert settings.database_url and settings.redis_url, "URLs are resolved before start-up"
        db = await Database.open(
            settings.database_url,
            timeout_s=settings.db_timeout_s,
            bulk_timeout_s=settings.db_bulk_timeout_s,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            init=init_connection,
        )
        # from_pool: the client owns the pool, and closing it closes the connections.
        client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=settings.redis_pool_max,
            timeout=settings.db_timeout_s))
        prefix = settings.redis_prefix
        rooms = RoomManager(DocumentStore(db), Fanout(client, prefix), collab_limits(settings),
                            frame=binary_frame)
        access = AccessWatch(db, client, LiveKeys(prefix).access_changes, settings.access_check_s)
        dispatcher = Dispatcher(client, prefix, settings.lease_ttl_s)
        work = WorkService(db, client, prefix, dispatcher, rooms)
        keeper = LeaseKeeper(dispatcher, db, max(settings.lease_ttl_s / 3, 1.0))
        return cls(settings=settings, db=db, redis=client, rooms=rooms, access=access,
                   dispatcher=dispatcher, work=work, keeper=keeper)

    async def start(self) -> None:
        """Start the rooms' writer and fan-out, and the access watch."""
        await self.rooms.start()
        await self.access.start()
        self._started = True

    async def close(self) -> None:
        await self.keeper.stop()
        if self._started:
            await self.access.stop()
        # Even never started, the rooms may hold work that outlives the caller: an edit
        # applied after its commit loads a room (a pub/sub connection of its own) and queues
        # fan-out; stopping flushes it and closes that connection with the rest.
        await self.rooms.stop()
        await self.work.events.drain()
        await self.redis.aclose()
        await self.db.close()
