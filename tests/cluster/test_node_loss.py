"""Losing a node behind nginx while a team works through it: one of three killed with
SIGKILL and started again, and a rolling restart of all three. Labelers lease and submit,
editors edit one room, all through nginx only; clients retry and reconnect as real ones do
(a submit is idempotent per lease, a y-websocket provider reconnects and resyncs)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from tests.cluster.stack import Stack
from tests.faults.cluster_kit import (
    Editor,
    Labeler,
    Person,
    Project,
    check_acknowledged,
    check_dispatch_invariants,
    converged,
    decide_reviews,
    leases_after_close,
    make_project,
    open_items,
    person,
    stored_keys,
    token_api,
    wait_until,
)
from tests.reliability import Measured

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CONSENSUS = {"enabled": True, "min": 2, "max": 3}


@dataclass
class Team:
    """Labelers and editors at work through nginx."""

    stack: Stack
    owner: Person
    project: Project
    room: str
    labelers: list[Labeler]
    editors: list[Editor]
    stop_editing: asyncio.Event
    editing: asyncio.Future[list[None]] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def at_work(cls, stack: Stack, *, labelers: int, items: int,
                      editors: int) -> AsyncIterator[Team]:
        admin = stack.cluster.admin(stack.front)
        owner = person(admin, "owner")
        people = [person(admin, f"labeler{i}") for i in range(labelers)]
        project = make_project(stack.cluster, owner, people, items=items, consensus=CONSENSUS,
                               via=stack.front)
        docs = make_project(stack.cluster, owner, [], items=1, task_type="bbox", start=False,
                            via=stack.front)
        room = f"{docs.pid}/{docs.items[0]}/{owner.id}"
        eds = [Editor(f"e{i}", room, owner.token, stack.through_front, stack.front)
               for i in range(editors)]
        for e in eds:
            await e.connect()
        workers = [Labeler(p, project.pid, project.labels, stack.through_front, seed=i)
                   for i, p in enumerate(people)]
        team = cls(stack, owner, project, room, workers, eds, asyncio.Event())
        try:
            for w in workers:
                w.start()
            team.editing = asyncio.gather(*(e.edit(team.stop_editing, 0.02) for e in eds))
            yield team
        finally:
            team.stop_editing.set()
            if team.editing is not None:
                with contextlib.suppress(Exception):
                    await team.editing
            for w in workers:
                w.join()
            for e in eds:
                await e.drop()

    async def stop_and_converge(self) -> tuple[set[str], float]:
        """Stop editing; every editor ends up with every edit. Returns (edits, seconds)."""
        self.stop_editing.set()
        assert self.editing is not None
        await self.editing
        expect = {k for e in self.editors for k in e.written}
        return expect, await converged(self.editors, expect, 30)

    def finish(self) -> Counter[str]:
        """Labelers run until nothing waits for one; reviews are decided; every acknowledged
        submit is stored and the dispatcher's invariants held. Returns the labelers' statuses."""
        db = self.stack.cluster.database_url
        wait_until(lambda: open_items(db, self.project.pid) == 0, 90, "items left undecided")
        for w in self.labelers:
            w.join()
        api = token_api(self.stack.front.base, self.owner)
        decide_reviews(api, self.project.pid, self.project.labels[0])
        assert api.get(f"/api/v1/projects/{self.project.pid}").json()["project"]["status"] == "completed"
        check_acknowledged(db, [a for w in self.labelers for a in w.acked])
        check_dispatch_invariants(db, self.project.pid, 2, 3)
        assert leases_after_close(db, self.project.pid) == 0
        statuses: Counter[str] = Counter()
        for w in self.labelers:
            statuses.update(w.statuses)
        # A submit that reached a node is never refused for a reason a retry would not fix.
        assert not [k for k in statuses if k.startswith("submit ")], statuses
        return statuses

    def stored(self, expect: set[str]) -> float:
        return wait_until(lambda: expect <= stored_keys(self.stack.cluster.database_url, self.room),
                          10, "every edit stored", 0.1)


@pytest.mark.reliability(
    area="Cluster",
    attack="One of three nodes behind nginx is killed with SIGKILL while four labelers lease and "
           "submit and six editors edit one room every 20 ms, all through nginx; then the node is "
           "started again.",
    promise="nginx stops sending to the dead node within a second; its editors reconnect through "
            "nginx by themselves; every acknowledged submit and every edit is stored and all "
            "editors converge; the restarted node takes traffic again.")
async def test_a_node_killed_under_load_behind_nginx(
        own_stack: Callable[..., Stack], measured: Measured) -> None:
    stack = own_stack(COLABEL_LEASE_TTL_S="3")
    doomed = stack.cluster.nodes[2]
    dead = Stack.address(doomed)
    async with Team.at_work(stack, labelers=4, items=300, editors=6) as team:
        await asyncio.sleep(2.5)
        doomed.proc.kill()
        doomed.proc.wait()
        killed_at = time.time()
        await asyncio.sleep(3)
        expect, converge_s = await team.stop_and_converge()
        movers = [e for e in team.editors if e.reconnects]
        restart_s = await asyncio.to_thread(stack.cluster.restart, doomed, graceful=False)
        back_at = time.time()

        def served_again() -> bool:
            return any(p.node == dead and p.at > back_at and p.status < 500
                       for p in stack.balancer.passed())

        again_s = await asyncio.to_thread(wait_until, served_again, 20, "the node served again")
        statuses = await asyncio.to_thread(team.finish)
        stored_s = await asyncio.to_thread(team.stored, expect)
    passed = stack.balancer.passed()
    # After a second, nothing a client sent was answered by nginx for the dead node: at most
    # nginx tried it, was refused, and passed the request on.
    late_errors = [p for p in passed if killed_at + 1 < p.at < back_at and p.status >= 502]
    assert not late_errors, late_errors[:5]
    cut = [p for p in passed if killed_at <= p.at <= killed_at + 1 and p.status >= 502]
    passed_on = [p for p in passed if killed_at < p.at < back_at and len(p.upstreams) > 1]
    survivors = Counter(p.node for p in passed if killed_at + 1 < p.at < back_at)
    # (least_conn counts the editors' sockets too: the node holding fewer takes the requests)
    assert dead not in survivors and sum(survivors.values()) > 0, survivors
    acked = [a for w in team.labelers for a in w.acked]
    assert movers, "no editor was on the killed node"
    measured(f"{len(cut)} requests in flight on the dead node answered 502 and were sent again by "
             f"their clients, none after the first second; nginx passed {len(passed_on)} more on "
             f"from it to another node, and the other two served {sum(survivors.values())} requests "
             f"until it was back; {len(movers)} editors reconnected through nginx; "
             f"{len(expect)} edits converged {converge_s:.1f} s after the last and were stored "
             f"within {stored_s:.1f} s; {len(acked)} submits acknowledged, all stored "
             f"({statuses['submitted']} in all); the node was back {restart_s:.1f} s after its "
             f"restart began and served again {again_s:.1f} s later")


@pytest.mark.reliability(
    area="Cluster",
    attack="The three nodes behind nginx are restarted one after another (SIGTERM, then started "
           "again) while four labelers lease and submit and six editors edit one room, all "
           "through nginx.",
    promise="No submit fails for good and no update is lost: clients retry through nginx, every "
            "acknowledged submit and every edit is stored, the editors converge and the project "
            "completes.")
async def test_a_rolling_restart_behind_nginx(
        own_stack: Callable[..., Stack], measured: Measured) -> None:
    stack = own_stack(COLABEL_LEASE_TTL_S="5")
    async with Team.at_work(stack, labelers=4, items=300, editors=6) as team:
        await asyncio.sleep(2)
        began = time.time()
        took = []
        for node in stack.cluster.nodes:
            took.append(await asyncio.to_thread(stack.cluster.restart, node))
            await asyncio.sleep(1)
        rolled_s = time.time() - began
        expect, converge_s = await team.stop_and_converge()
        statuses = await asyncio.to_thread(team.finish)
        stored_s = await asyncio.to_thread(team.stored, expect)
    errors = [p for p in stack.balancer.passed() if began <= p.at and p.status >= 500]
    retried = sum(v for k, v in statuses.items() if k == "transport" or k[:1] == "5")
    moved = sum(e.reconnects for e in team.editors)
    acked = [a for w in team.labelers for a in w.acked]
    measured(f"three nodes restarted in {rolled_s:.1f} s (each ready again in "
             f"{', '.join(f'{t:.1f}' for t in took)} s); {len(errors)} requests answered 5xx by "
             f"nginx meanwhile and {retried} calls retried by the labelers, none failed for good; "
             f"{len(acked)} submits acknowledged, all stored; editors reconnected {moved} times, "
             f"{len(expect)} edits converged {converge_s:.1f} s after the last and were stored "
             f"within {stored_s:.1f} s; project complete")
