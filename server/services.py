"""The long-lived connections one server process holds, built from Settings at start-up."""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from .database import Database
from .redis_keys import RedisKeys
from .settings import Settings


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb columns read and write as Python objects."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


@dataclass
class Services:
    settings: Settings
    db: Database
    redis: aioredis.Redis
    keys: RedisKeys

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        assert settings.database_url and settings.redis_url, "URLs are resolved before start-up"
        db = await Database.open(
            settings.database_url,
            timeout_s=settings.db_timeout_s,
            bulk_timeout_s=settings.db_bulk_timeout_s,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            init=init_connection,
        )
        client = aioredis.Redis.from_url(settings.redis_url)
        return cls(settings=settings, db=db, redis=client, keys=RedisKeys(settings.redis_prefix))

    async def close(self) -> None:
        await self.redis.aclose()
        await self.db.close()
