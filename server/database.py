"""The Postgres pool: a deadline on every statement, every wait for a connection, every connect.

A stalled Postgres (a frozen host, a storage hang) answers nothing and closes nothing, so
without deadlines each request would wait until it came back. Here a statement may run
for `db_timeout_s`: Postgres itself cancels it then (`statement_timeout`, so no query
outlives its caller), and should Postgres not answer at all the client gives up half a
second later. Waiting for a pooled connection and connecting have the same deadline.

A statement that ran out of time leaves its connection in doubt: asyncpg would wait for
the server to acknowledge the cancel before using it again, which a stalled server never
does. Such a connection is closed instead, at once, and the pool opens a new one when
Postgres answers again, so service resumes by itself. Every failure to reach Postgres in
time surfaces as `DatabaseUnavailable`, which the edge answers with 503 and Retry-After.

Bulk work (ingest, imports, exports, queue rebuilds) runs statements that legitimately
take long; it asks for a connection with `Database.bulk()`, whose statements may run for
`db_bulk_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

import asyncpg
from asyncpg.pool import PoolAcquireContext

log = logging.getLogger(__name__)

# How much longer than Postgres's own statement_timeout the client waits for an answer:
# long enough for a server that cancels on time to say so (keeping the connection), short
# enough that a request on a stalled server still fails within a second of its deadline.
CLIENT_GRACE_S = 0.5

# Errors that mean "Postgres is out of reach or gave up", not "this statement is wrong":
# timeouts and socket errors (TimeoutError is an OSError), dropped or refused connections,
# shutdowns and cancels (class 57: admin shutdown, cannot connect now, statement timeout),
# and a full connection table.
_UNREACHABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)


class DatabaseUnavailable(ConnectionError):
    """Postgres did not answer within its deadline, or refused or dropped the connection."""


def _after_unavailable(exc: BaseException | None) -> bool:
    """Whether `exc` is asyncpg refusing a connection that an earlier DatabaseUnavailable
    closed (a transaction block's rollback, say): it is that same outage."""
    while isinstance(exc, asyncpg.InterfaceError):
        exc = exc.__context__
        if isinstance(exc, DatabaseUnavailable):
            return True
    return False


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    detail = "no answer in time" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
    return DatabaseUnavailable(f"the database is unavailable ({detail})")


class Connection(asyncpg.Connection):  # type: ignore[misc]
    """A connection that closes itself once a statement on it has run out of time."""

    # Set when a statement timed out or was cancelled: the server may still be running
    # it, or be stalled.
    _in_doubt = False
    # The client's deadline per statement while doing bulk work (None: the pool's default).
    _bulk_timeout_s: float | None = None

    async def _run(self, method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        if self._in_doubt:
            # Only the ROLLBACK of a transaction block or the pool's reset come here; both
            # would wait for a cancel a stalled server never acknowledges. Closing the
            # connection rolls back whatever it had open.
            self.terminate()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # the rollback must not swallow a cancellation
            raise DatabaseUnavailable("the database is unavailable (connection dropped "
                                      "after a statement ran out of time)")
        if self._bulk_timeout_s is not None and kwargs.get("timeout") is None:
            kwargs["timeout"] = self._bulk_timeout_s
        try:
            return await method(self, *args, **kwargs)
        except asyncio.CancelledError:
            self._in_doubt = True
            raise
        except DatabaseUnavailable:
            raise
        except _UNREACHABLE as exc:
            if isinstance(exc, TimeoutError):
                self._in_doubt = True
            raise _unavailable(exc) from exc

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run(asyncpg.Connection.execute, *args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run(asyncpg.Connection.executemany, *args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run(asyncpg.Connection.fetch, *args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run(asyncpg.Connection.fetchrow, *args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run(asyncpg.Connection.fetchval, *args, **kwargs)

    async def fetchmany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run(asyncpg.Connection.fetchmany, *args, **kwargs)

    async def copy_records_to_table(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run(asyncpg.Connection.copy_records_to_table, *args, **kwargs)

    async def copy_to_table(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run(asyncpg.Connection.copy_to_table, *args, **kwargs)

    async def copy_from_query(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run(asyncpg.Connection.copy_from_query, *args, **kwargs)

    async def copy_from_table(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run(asyncpg.Connection.copy_from_table, *args, **kwargs)

    async def reset(self, *, timeout: float | None = None) -> None:
        # The pool's reset (RESET ALL) also restores the short statement_timeout.
        await self._run(asyncpg.Connection.reset, timeout=timeout)
        self._bulk_timeout_s = None

    def get_reset_query(self) -> str:
        if self._bulk_timeout_s is None:
            # The only session state this application changes is the statement timeout of
            # `allow_long_statements` (locks, temporary tables and settings are all
            # transaction-scoped, and nothing LISTENs on a pooled connection): with it
            # untouched, RESET ALL and friends would restore nothing and cost every release
            # a round trip. An open transaction is still rolled back (asyncpg does that
            # whatever this returns).
            return ""
        query: str = super().get_reset_query()
        return query

    async def allow_long_statements(self, timeout_s: float) -> None:
        """Let this connection's statements run for `timeout_s` until it goes back to the pool."""
        await self.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
        self._bulk_timeout_s = timeout_s + CLIENT_GRACE_S


def _doubtful(proxy: Any) -> bool:
    """Whether a statement on this pooled connection timed out or was cancelled."""
    try:
        return bool(proxy._in_doubt)  # the pool's proxy forwards it to the connection
    except AttributeError:
        return False  # already closed and detached from its proxy


class _Acquire(PoolAcquireContext):  # type: ignore[misc]
    """`async with pool.acquire()`: failing to get a connection is DatabaseUnavailable too,
    and a connection in doubt is dropped rather than reset."""

    __slots__ = ()

    async def __aenter__(self) -> Any:
        try:
            return await super().__aenter__()
        except DatabaseUnavailable:
            raise
        except _UNREACHABLE as exc:
            raise _unavailable(exc) from exc

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if _doubtful(self.connection):
            # Resetting it would first wait for the server to acknowledge the cancel of
            # what ran on it, which a stalled server never does. Drop it instead.
            with contextlib.suppress(asyncpg.InterfaceError):
                self.connection.terminate()
        await super().__aexit__(exc_type, exc, tb)
        if _after_unavailable(exc):
            assert exc is not None
            raise DatabaseUnavailable(str(exc.__context__)) from exc


class Database(asyncpg.Pool):  # type: ignore[misc]
    """asyncpg's pool with the deadlines above; open it with `Database.open`."""

    __slots__ = ("_timeout_s", "_bulk_timeout_s")

    def __init__(self, dsn: str, *, timeout_s: float, bulk_timeout_s: float, min_size: int,
                 max_size: int, init: Callable[[Any], Awaitable[None]] | None = None) -> None:
        super().__init__(
            dsn, min_size=min_size, max_size=max_size, max_queries=50_000,
            max_inactive_connection_lifetime=300.0, init=init, loop=None,
            connection_class=Connection, record_class=asyncpg.Record,
            command_timeout=timeout_s + CLIENT_GRACE_S,  # the client's deadline per statement
            timeout=timeout_s,                            # connecting, startup included
            server_settings={"statement_timeout": str(int(timeout_s * 1000))},
        )
        self._timeout_s = timeout_s
        self._bulk_timeout_s = bulk_timeout_s

    @classmethod
    async def open(cls, dsn: str, **kwargs: Any) -> Database:
        """Create the pool and its first connections."""
        pool: Database = await cls(dsn, **kwargs)
        return pool

    def acquire(self, *, timeout: float | None = None) -> _Acquire:
        return _Acquire(self, self._timeout_s if timeout is None else timeout)

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        try:
            await super().release(connection, timeout=timeout)
        except (OSError, asyncpg.PostgresError) as exc:
            # The pool has already closed the connection; what the caller did stands.
            log.warning("dropped a database connection that could not be reset: %s", exc)

    @contextlib.asynccontextmanager
    async def bulk(self) -> AsyncIterator[Any]:
        """A pooled connection for bulk work, whose statements may run for the bulk deadline."""
        async with self.acquire() as conn:
            await conn.allow_long_statements(self._bulk_timeout_s)
            yield conn
