"""Live documents under bad input and failures: garbage frames, a Postgres outage,
compaction while other nodes write."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pycrdt import Doc, Map

from collab.store import DocumentStore, Held
from migrations.runner import migrate
from server.embedded import EmbeddedPostgres
from tests.conftest import PASSWORD, bind_folder
from tests.infra import ROOT, Api, run_server, server_env, unique
from tests.infra import bound as registered
from tests.yclient import node_client, py_client, result

ALLOWED_CLOSES = {1002, 1003, 1008, 1009}


async def stored_rows(url: str, room: str, at_least: int, timeout_s: float = 30) -> None:
    """Wait until the room's update log in Postgres has `at_least` rows."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        conn = await asyncpg.connect(url)
        try:
            n = await conn.fetchval("SELECT count(*) FROM doc_updates WHERE room = $1", room)
        finally:
            await conn.close()
        if n >= at_least:
            return
        assert asyncio.get_running_loop().time() < deadline, f"only {n} rows stored"
        await asyncio.sleep(0.2)


def prepare(api: Api, data_dir: Path) -> tuple[str, str]:
    """A project with one item owned by `api`; returns (room, token)."""
    pid = api.post("/api/v1/projects", {"name": unique("faults"), "task_type": "bbox",
                                        "labels": [{"name": "x"}]}).json()["project"]["id"]
    folder = data_dir / "datasets" / unique("faults")
    folder.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "a.png")
    # Only instance admins bind a folder on the server: an admin of its own server binds it
    # itself, a user of the session's server has that server's admin do it.
    assert api.user is not None
    bound = (registered(api, api.put(f"/api/v1/projects/{pid}/dataset",
                                            {"datastore": {"kind": "local", "path": str(folder)}}))
             if api.user["is_admin"] else bind_folder(api, pid, folder))
    assert bound.ok, bound.text
    iid = api.get(f"/api/v1/projects/{pid}/items").json()["items"][0]["id"]
    token = api.post("/api/v1/tokens", {"name": "t"}).json()["token"]
    return f"{pid}/{iid}/{api.id}", token


frames = st.one_of(
    st.binary(max_size=80),
    st.tuples(st.sampled_from([b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x01", b"\x03"]),
              st.binary(max_size=60)).map(lambda t: t[0] + t[1]),
    st.tuples(st.sampled_from([b"\x00\x02", b"\x01"]), st.integers(0, 300),
              st.binary(max_size=40)).map(lambda t: t[0] + bytes([min(t[1], 127)]) + t[2]),
)


@pytest.mark.reliability(
    area='Collaboration',
    attack='Sent generated malformed frames (truncated, wrong types, junk) on live document sockets.',
    promise='Only the offending connection is closed (1002/1003); other clients on the room keep '
            'working.')
def test_generated_garbage_never_hurts_other_connections(
    make_user: Callable[..., Api], server: str, data_dir: Path,
) -> None:
    owner = make_user("garbage")
    room, token = prepare(owner, data_dir)
    url = f"{server.replace('http://', 'ws://')}/collab/{room}?token={token}"
    seen_closes: set[int] = set()

    async def send(frame: bytes) -> None:
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(frame)
            try:
                for _ in range(4):
                    await asyncio.wait_for(ws.recv(), 0.3)
            except TimeoutError:
                return  # still open: the frame was acceptable
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None, "closed without a close frame"
                assert closed.rcvd.code in ALLOWED_CLOSES, closed.rcvd.code
                seen_closes.add(closed.rcvd.code)

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frames)
    def fuzz(frame: bytes) -> None:
        asyncio.run(send(frame))

    async def healthy_before_and_after() -> dict[str, object]:
        async with py_client(server.replace("http://", "ws://"), room, token) as client:
            client.map["alive"] = 1
            await asyncio.sleep(0.2)
            await asyncio.to_thread(fuzz)
            client.map["after"] = 2
            await asyncio.sleep(0.5)  # let the edit leave before the socket closes
            return await client.wait_for(["alive", "after"])

    seen = asyncio.run(healthy_before_and_after())
    assert seen["alive"] == 1 and seen["after"] == 2
    assert seen_closes & {1002, 1003}
    check = result(node_client(server, room, token, expect=["alive", "after"]))
    assert check["ok"], check


@pytest.mark.reliability(
    area='Faults',
    attack='Stopped Postgres while a client edited a live document, then started it again.',
    promise='Edits made during the outage are kept and written when Postgres returns; none is lost '
            'across a restart.')
def test_postgres_outage_loses_no_acknowledged_edit(tmp_path: Path, redis_url: str) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    env = server_env(pg.start(), redis_url, f"colabel-outage-{uuid.uuid4().hex[:8]}:",
                     tmp_path / "data")
    subprocess.run([sys.executable, "-m", "server", "createuser", "--email", "o@colabel.test",
                    "--password", PASSWORD, "--admin"], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    try:
        with run_server(env, [], tmp_path / "one.log") as (base, _p, _t):
            api = Api(base).login("o@colabel.test", PASSWORD)
            room, token = prepare(api, tmp_path / "data")

            async def edit_through_outage() -> None:
                async with py_client(base.replace("http://", "ws://"), room, token) as client:
                    client.map["before"] = 1
                    await asyncio.sleep(0.5)
                    await asyncio.to_thread(pg.stop)
                    client.map["during"] = 2  # held in memory while Postgres is down
                    await asyncio.sleep(1.5)
                    url = await asyncio.to_thread(pg.start)
                    await stored_rows(url, room, at_least=2)  # the writer retried
                    client.map["after"] = 3
                    await stored_rows(url, room, at_least=3)

            asyncio.run(edit_through_outage())
        log = (tmp_path / "one.log").read_text()
        assert "retrying" in log  # the outage was really seen by the writer
        with run_server(env, [], tmp_path / "two.log") as (base, _p, _t):
            back = result(node_client(base, room, token, expect=["before", "during", "after"]))
        assert back["ok"] and back["map"] == {"before": 1, "during": 2, "after": 3}
    finally:
        pg.stop()


async def test_compaction_folds_the_log_without_losing_concurrent_appends(database_url: str) -> None:
    await migrate(database_url)  # run alone, no server has migrated it yet
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    store = DocumentStore(pool)
    room = f"compaction/{uuid.uuid4().hex}"
    writer: Doc = Doc()
    m = writer.get("m", type=Map)
    updates: list[bytes] = []
    sub = writer.observe(lambda ev: updates.append(ev.update))
    for i in range(600):
        m[f"k{i % 50}"] = i
    await store.append([(room, u) for u in updates])
    late: Doc = Doc()
    late.apply_update(writer.get_update())
    late_m = late.get("m", type=Map)
    late_updates: list[bytes] = []
    late_sub = late.observe(lambda ev: late_updates.append(ev.update))
    late_m["late"] = "x"

    async def append_late() -> None:
        await store.append([(room, u) for u in late_updates])

    folded, _ = await asyncio.gather(store.compact(room), append_late())
    assert folded >= 600
    loaded = await store.load(room)
    assert len(loaded) <= 2  # the snapshot, and the late row if it landed after the read
    check: Doc = Doc()
    for u in loaded:
        check.apply_update(u)
    got = check.get("m", type=Map).to_py()
    assert got["late"] == "x" and got["k49"] == 599 and len(got) == 51
    assert await store.compact(room) in (0, 1)
    del sub, late_sub
    await pool.close()


def _updates_of(doc: Doc, change: Callable[[Map], None]) -> list[bytes]:
    out: list[bytes] = []
    sub = doc.observe(lambda ev: out.append(ev.update))
    change(doc.get("m", type=Map))
    del sub
    return out


async def test_compaction_from_memory_keeps_the_old_snapshot_and_never_folds_others_rows(
        database_url: str) -> None:
    """A room's own rows fold from its memory, merged with the stored snapshot (which may
    hold what another node folded); a row another node appended makes it fold from the
    stored rows instead, so neither is lost although memory lacks both."""
    await migrate(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    store = DocumentStore(pool)
    room = f"compaction/{uuid.uuid4().hex}"
    other: Doc = Doc()
    await store.append([(room, u) for u in _updates_of(other, lambda m: m.__setitem__("old", 1))])
    assert await store.compact(room) == 1  # a snapshot this process never held in memory

    mine: Doc = Doc()
    own = await store.append([(room, u) for u in _updates_of(
        mine, lambda m: [m.__setitem__(f"k{i}", i) for i in range(5)])])
    held = Held(mine.get_update(), frozenset(seq for _, seq in own))
    assert await store.compact(room, held) == 5
    folded: Doc = Doc()
    for u in await store.load(room):
        folded.apply_update(u)
    assert folded.get("m", type=Map).to_py() == {"old": 1, **{f"k{i}": i for i in range(5)}}

    own = await store.append([(room, u) for u in _updates_of(mine, lambda m: m.__setitem__("k9", 9))])
    await store.append([(room, u) for u in _updates_of(other, lambda m: m.__setitem__("theirs", 2))])
    held = Held(mine.get_update(), frozenset(seq for _, seq in own))
    assert await store.compact(room, held) == 2  # from the rows: one is not ours
    check: Doc = Doc()
    for u in await store.load(room):
        check.apply_update(u)
    assert check.get("m", type=Map).to_py() == {
        "old": 1, "theirs": 2, "k9": 9, **{f"k{i}": i for i in range(5)}}
    await pool.close()
