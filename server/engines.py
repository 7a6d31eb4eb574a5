"""Resolve where Postgres and Redis are: the configured URLs, or embedded engines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from server.embedded import EmbeddedPostgres, EmbeddedRedis
from server.settings import Settings


@contextlib.contextmanager
def engines(settings: Settings, *, need_redis: bool = True) -> Iterator[Settings]:
    """Yield settings whose URLs point at running servers; stop what we started on exit."""
    stack = contextlib.ExitStack()
    with stack:
        if settings.database_url is None:
            pg = EmbeddedPostgres(settings.data_dir / "postgres")
            settings = replace(settings, database_url=pg.start())
            stack.callback(pg.stop)
        if need_redis and settings.redis_url is None:
            rd = EmbeddedRedis(settings.data_dir / "redis")
            settings = replace(settings, redis_url=rd.start())
            stack.callback(rd.stop)
        yield settings
