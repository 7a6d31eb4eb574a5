"""Submits recorded together: those of concurrent requests (a page of a grid, several
labelers at the same moment) go into one transaction and one commit (group commit), and
each caller is answered once that commit is done, with each lease's own outcome.

A batch is one transaction on one connection: the decisions (`decisions.record_submits`,
three statements for the whole batch), the prelabel outcomes, and the documents the submits
write (a script's plain-JSON annotation into its labeler's document, a decided item's final
into its final document) all commit together, so an acknowledged submit has everything it
wrote. A lease the rules refuse writes nothing and does not hold back the others. If
Postgres refuses the batch as a whole (something the rules did not foresee), the batch runs
again with a savepoint per caller, so only the caller whose submits caused it gets the
error. Batches lock their items in item order, so two in flight (here or on another node)
wait for each other rather than deadlock; a deadlock all the same is retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from collab import schema
from collab.manager import RoomManager
from collab.names import final_document
from server.database import Database
from server.ml import prelabels
from server.work import decisions
from server.work.errors import WorkError
from server.work.group_commit import GroupCommit, retrying

log = logging.getLogger(__name__)

Outcome = decisions.Recorded | WorkError
# Batches in flight at once (see group_commit.py).
WRITERS = 2
# Errors that say nothing about the batch's content: the whole batch is tried again.
_TRANSIENT = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


@dataclass(frozen=True)
class Entry:
    """One lease's submission. `document`: the labeler's document to write the annotation
    into (a plain-JSON submit), or None when the annotation was read from it."""

    submit: decisions.Submit
    document: str | None = None
    author: str = ""


def _writer(annotation: dict[str, Any], task_type: str, origin: str,
            author: str) -> Callable[[Any], None]:
    return lambda doc: schema.write_annotation(doc, annotation, task_type,  # type: ignore[arg-type]
                                               origin=origin, author=author)  # type: ignore[arg-type]


class SubmitLog:
    """Records the submits of concurrent callers in one transaction, so one commit."""

    def __init__(self, db: Database | asyncpg.Pool, rooms: RoomManager, writers: int = WRITERS) -> None:
        self.db = db
        self.rooms = rooms
        self._group: GroupCommit[list[Entry], list[Outcome]] = GroupCommit(self._commit_batch, writers)

    async def record(self, entries: list[Entry]) -> list[Outcome]:
        """Record `entries` (in this order); return each one's outcome once committed."""
        return await self._group.run(entries) if entries else []

    async def _commit_batch(self, groups: list[list[Entry]]) -> list[list[Outcome] | BaseException]:
        try:
            return await retrying(lambda: self._commit(groups, isolate=False), _TRANSIENT)
        except asyncpg.PostgresError as exc:
            if isinstance(exc, asyncpg.PostgresConnectionError) or len(groups) == 1:
                raise
            log.warning("a batch of %d submits failed (%s); isolating each caller", len(groups), exc)
            return await retrying(lambda: self._commit(groups, isolate=True), _TRANSIENT)

    async def _commit(self, groups: list[list[Entry]], *, isolate: bool,
                      ) -> list[list[Outcome] | BaseException]:
        """One transaction for every group; with `isolate`, each group in a savepoint of its
        own, a failing group reported as its error."""
        results: list[list[Outcome] | BaseException] = []
        after: list[Callable[[], None]] = []
        async with self.db.acquire() as conn, conn.transaction():
            if not isolate:
                flat = [e for entries in groups for e in entries]
                outcomes, done = await self._record(conn, flat)
                after.append(done)
                at = 0
                for entries in groups:
                    results.append(outcomes[at:at + len(entries)])
                    at += len(entries)
            else:
                for entries in groups:
                    try:
                        async with conn.transaction():
                            outcomes, done = await self._record(conn, entries)
                    except asyncpg.PostgresError as exc:
                        if isinstance(exc, (asyncpg.PostgresConnectionError, *_TRANSIENT)):
                            raise
                        results.append(exc)
                        continue
                    results.append(outcomes)
                    after.append(done)
        for done in after:
            done()
        return results

    async def _record(self, conn: asyncpg.Connection, entries: list[Entry],
                      ) -> tuple[list[Outcome], Callable[[], None]]:
        outcomes = await decisions.record_submits(conn, [e.submit for e in entries])
        accepted = [(e, o) for e, o in zip(entries, outcomes, strict=True)
                    if isinstance(o, decisions.Recorded)]
        await prelabels.record_outcomes(conn, [
            (e.submit.project["id"], o.lease["item_id"], o.lease["prelabel_version"],
             e.submit.annotation) for e, o in accepted])
        edits: list[tuple[str, Callable[[Any], None], str]] = []
        for e, o in accepted:
            task_type = e.submit.project["task_type"]
            if e.document is not None:
                edits.append((e.document, _writer(e.submit.annotation, task_type, "api", e.author),
                              "api"))
            if o.final is not None:
                edits.append((final_document(e.submit.project["id"], o.lease["item_id"]),
                              _writer(o.final, task_type, "consensus", "colabel"), "consensus"))
        done = await self.rooms.edit_in(conn, edits) if edits else (lambda: None)
        return outcomes, done
