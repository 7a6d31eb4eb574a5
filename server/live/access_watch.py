"""Open sockets lose what their user loses: access is checked again after the handshake.

Every `/collab` and `/events` socket of a process holds a `Ticket`: who opened it (user,
session or API token), on which project and item, and the rule that admitted it. Whatever
ends an identity (logout, token revoked, user deactivated, password changed), changes a
user's place in a project (membership removed or role changed, admin flag, project
deleted) or takes items out of labeling from the data manager (deleted, skipped, sent to
review) announces the user or project on one Redis channel after its commit. Each process
then holds the named sockets' incoming frames, acknowledges, re-checks them against
Postgres in one query and closes those no longer allowed: 4401 when the identity is gone,
4403 when the rule now refuses, 4404 when the item whose document is open was deleted.
The request that made the change answers only once every process has acknowledged (or
after a second), so a frame sent after that answer is never applied on any node. A
message can be lost (Redis down, a change made outside the API, an item decided by its
labelers), so every process also re-checks all its sockets, again in one query, every
`access_check_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection

from collab.fanout import pubsub_messages
from server.accounts.auth import Identity
from server.accounts.roles import Role
from server.errors import ApiError, Forbidden, NotFound

log = logging.getLogger(__name__)

CLOSE_SIGNED_OUT = 4401
CLOSE_NOT_ALLOWED = 4403
CLOSE_GONE = 4404

# One round trip for every socket of the process: which of their sessions and tokens still
# stand, who is an admin, which projects are live (and run with consensus), and the roles
# of the users concerned (socket owners and the annotators whose documents are open).
_FACTS = """
SELECT
  ARRAY(SELECT s.id_hash FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.id_hash = ANY($1::bytea[]) AND s.expires_at > now() AND u.is_active) AS sessions,
  ARRAY(SELECT t.id FROM api_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.id = ANY($2::bigint[]) AND u.is_active) AS tokens,
  ARRAY(SELECT id FROM users WHERE id = ANY($3::bigint[]) AND is_admin AND is_active) AS admins,
  (SELECT coalesce(jsonb_agg(jsonb_build_array(
            id, coalesce((consensus ->> 'enabled')::boolean, false),
            archived_at IS NOT NULL)), '[]'::jsonb)
   FROM projects WHERE id = ANY($4::bigint[]) AND deleted_at IS NULL) AS projects,
  (SELECT coalesce(jsonb_agg(jsonb_build_array(project_id, user_id, role)), '[]'::jsonb)
   FROM memberships WHERE project_id = ANY($4::bigint[]) AND user_id = ANY($3::bigint[])) AS members,
  (SELECT coalesce(jsonb_agg(jsonb_build_array(project_id, id, status)), '[]'::jsonb)
   FROM items WHERE id = ANY($5::bigint[])) AS items
"""


@dataclass(frozen=True)
class ProjectFacts:
    """One project as the access rules read it, for the users concerned."""

    id: int
    exists: bool
    consensus: bool
    members: Mapping[int, Role]
    admins: frozenset[int]
    # Archived projects are read-only: their documents open, but nobody writes to them.
    archived: bool = False
    # The status of each of the project's items whose documents are open (deleted: absent).
    items: Mapping[int, str] = field(default_factory=dict)

    def require(self, user_id: int, need: Role) -> Role:
        """The user's effective role; NotFound/Forbidden exactly as `projects.access`."""
        if not self.exists or (user_id not in self.members and user_id not in self.admins):
            raise NotFound(f"project {self.id} not found")
        role = Role.OWNER if user_id in self.admins else self.members[user_id]
        if role < need:
            raise Forbidden(f"this needs the {need.label} role in project {self.id}")
        return role

    def is_member(self, user_id: int) -> bool:
        return user_id in self.members


Rule = Callable[[ProjectFacts], None]
"""Raises ApiError when the socket would now be refused (Gone when what it shows was
deleted); may narrow its rights in place."""


class Gone(NotFound):
    """What an open socket shows no longer exists (an item deleted): it closes 4404."""


@dataclass(eq=False)
class Ticket:
    """One open socket as the access checks see it."""

    identity: Identity
    project_id: int
    rule: Rule
    close: Callable[[int, str], None]
    # Users whose changes concern this socket: its owner, and the annotator of its document.
    users: frozenset[int] = frozenset()
    # The item whose document the socket has open (None for /events).
    item_id: int | None = None
    # Cleared while a re-check announced for this socket is running: frames wait for it.
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    holds: int = 0
    closed: bool = False

    def __post_init__(self) -> None:
        self.settled.set()
        assert self.identity.user is not None
        self.users = self.users | {self.identity.user.id}

    @property
    def user_id(self) -> int:
        assert self.identity.user is not None
        return self.identity.user.id

    async def wait_settled(self) -> None:
        if not self.settled.is_set():
            await self.settled.wait()

    def end(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close(code, reason)


@dataclass(frozen=True)
class Facts:
    sessions: frozenset[bytes]
    tokens: frozenset[int]
    projects: Mapping[int, ProjectFacts]


async def load_facts(db: asyncpg.Pool, tickets: Iterable[Ticket]) -> Facts:
    tickets = list(tickets)
    sessions = sorted({t.identity.session_hash for t in tickets if t.identity.session_hash})
    tokens = sorted({t.identity.token_id for t in tickets if t.identity.token_id is not None})
    users = sorted({u for t in tickets for u in t.users})
    pids = sorted({t.project_id for t in tickets})
    iids = sorted({t.item_id for t in tickets if t.item_id is not None})
    row = await db.fetchrow(_FACTS, sessions, tokens, users, pids, iids)
    assert row is not None
    admins = frozenset(row["admins"])
    members: dict[int, dict[int, Role]] = {pid: {} for pid in pids}
    for pid, uid, role in row["members"]:
        members[pid][uid] = Role.parse(role)
    live = {pid: consensus for pid, consensus, _ in row["projects"]}
    archived = {pid for pid, _, is_archived in row["projects"] if is_archived}
    items: dict[int, dict[int, str]] = {pid: {} for pid in pids}
    for pid, iid, status in row["items"]:
        if pid in items:
            items[pid][iid] = status
    projects = {pid: ProjectFacts(pid, pid in live, live.get(pid, False), members[pid], admins,
                                  pid in archived, items[pid])
                for pid in pids}
    return Facts(frozenset(row["sessions"]), frozenset(row["tokens"]), projects)


def verdict(ticket: Ticket, facts: Facts) -> tuple[int, str] | None:
    """Why this socket must close now, or None while it is still allowed."""
    identity = ticket.identity
    if identity.session_hash is not None and identity.session_hash not in facts.sessions:
        return CLOSE_SIGNED_OUT, "signed out: the session has ended"
    if identity.token_id is not None and identity.token_id not in facts.tokens:
        return CLOSE_SIGNED_OUT, "signed out: the API token was revoked"
    try:
        ticket.rule(facts.projects[ticket.project_id])
    except Gone as exc:
        return CLOSE_GONE, exc.message[:120]
    except ApiError as exc:
        return CLOSE_NOT_ALLOWED, f"no longer allowed: {exc.message}"[:120]
    return None


async def announce(conn: HTTPConnection, *, user: int | None = None,
                   project: int | None = None) -> None:
    """Tell every process that a user's or a project's access changed (after the commit)."""
    watch: AccessWatch = conn.app.state.services.access
    await watch.announce(user=user, project=project)


class _Acks:
    """Acknowledgements of one announcement, until every process that got it has answered."""

    def __init__(self) -> None:
        self.expected: int | None = None
        self.received = 0
        self.all_in = asyncio.Event()

    def add(self) -> None:
        self.received += 1
        self._update()

    def expect(self, count: int) -> None:
        self.expected = count
        self._update()

    def _update(self) -> None:
        if self.expected is not None and self.received >= self.expected:
            self.all_in.set()


class AccessWatch:
    """The open sockets of one process and the checks that close them once refused."""

    def __init__(self, db: asyncpg.Pool, client: aioredis.Redis, channel: str,
                 interval_s: float, ack_timeout_s: float = 1.0) -> None:
        self.db = db
        self.client = client
        self.channel = channel
        self.interval_s = interval_s
        self.ack_timeout_s = ack_timeout_s
        # Each process answers announcements on its own channel.
        self.acks_channel = f"{channel}:ack:{uuid.uuid4().hex}"
        self.tickets: set[Ticket] = set()
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[str, _Acks] = {}

    async def start(self) -> None:
        await self._pubsub.subscribe(self.channel, self.acks_channel)
        self._own(self._listen())
        self._own(self._sweep())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._pubsub.aclose()

    def _own(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.contextmanager
    def watching(self, ticket: Ticket) -> Iterator[Ticket]:
        """Keep `ticket` under watch while its socket is open."""
        self.tickets.add(ticket)
        try:
            yield ticket
        finally:
            self.tickets.discard(ticket)

    async def announce(self, *, user: int | None = None, project: int | None = None) -> None:
        """Publish an access change and wait (up to `ack_timeout_s`) until every process
        has held the sockets it names: a request answered after this cannot race a frame
        past the re-check on any node. Best effort: without Redis, this process holds its
        own sockets and the others catch up at their next periodic re-check."""
        key = uuid.uuid4().hex
        message = json.dumps({"user": user, "project": project, "ack": [self.acks_channel, key]})
        acks = self._waiting[key] = _Acks()
        try:
            async with asyncio.timeout(self.ack_timeout_s):
                acks.expect(await self.client.publish(self.channel, message))
                await acks.all_in.wait()
        except (RedisError, TimeoutError) as exc:
            if acks.expected is None:
                log.warning("could not announce an access change (%s): %r", message, exc)
                self._hold_and_check(user, project)
            else:
                log.warning("%d of %d processes acknowledged an access change within %.1fs",
                            acks.received, acks.expected, self.ack_timeout_s)
        finally:
            del self._waiting[key]

    async def check(self, tickets: Iterable[Ticket]) -> None:
        """Re-check `tickets` in one query and close those no longer allowed."""
        tickets = [t for t in tickets if not t.closed]
        if not tickets:
            return
        facts = await load_facts(self.db, tickets)
        for ticket in tickets:
            why = verdict(ticket, facts)
            if why is not None:
                log.info("closing a socket of user %s on project %s: %s",
                         ticket.user_id, ticket.project_id, why[1])
                ticket.end(*why)

    async def _sweep(self) -> None:
        """The safety net: every socket, every `interval_s`, in case a message was lost."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check(list(self.tickets))
            except Exception as exc:  # noqa: BLE001 - the safety net must outlive any failure
                # Sockets stay open while Postgres is away; the next pass decides.
                log.warning("re-checking socket access failed: %s", exc)

    async def _listen(self) -> None:
        async for message in pubsub_messages(self._pubsub, "access change channel"):
            if message["type"] != "message":
                continue
            data = message["data"]
            if message["channel"].decode() == self.acks_channel:
                acks = self._waiting.get(data.decode())
                if acks is not None:
                    acks.add()
                continue
            try:
                change = json.loads(data)
                user, project = change["user"], change["project"]
                reply, key = change["ack"]
                if not all(isinstance(v, int | None) for v in (user, project)):
                    raise TypeError("user and project are ids")
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring a malformed access change %r: %s", data, exc)
                continue
            self._hold_and_check(user, project)
            self._own(self._acknowledge(str(reply), str(key)))

    def _hold_and_check(self, user: int | None, project: int | None) -> None:
        named = [t for t in self.tickets
                 if (user is not None and user in t.users) or t.project_id == project]
        if named:
            # Held synchronously, before any frame that arrives after this message is
            # handled, so nothing they send meanwhile is applied before the verdict.
            for ticket in named:
                ticket.holds += 1
                ticket.settled.clear()
            self._own(self._recheck(named))

    async def _acknowledge(self, reply: str, key: str) -> None:
        with contextlib.suppress(RedisError):
            await self.client.publish(reply, key)

    async def _recheck(self, tickets: list[Ticket]) -> None:
        try:
            await self.check(tickets)
        except Exception as exc:  # noqa: BLE001 - the periodic pass checks them again
            log.warning("re-checking socket access failed: %s", exc)
        finally:
            for ticket in tickets:
                ticket.holds -= 1
                if ticket.holds == 0:
                    ticket.settled.set()
