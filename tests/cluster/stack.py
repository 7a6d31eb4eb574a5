"""A Colabel cluster as an operator runs it, on this machine: `colabel serve` nodes sharing
one Postgres and one Redis, behind nginx from Debian's package configured from the template
docker/nginx.conf is rendered from (docker/nginx_conf.py). Clients talk to nginx only."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import redis

from tests.faults.cluster_kit import Cluster, Node
from tests.infra import ROOT, free_port, stop_process

# Each request nginx passed on: when it ended, method, path, status, and the node(s) tried
# ("127.0.0.1:5001, 127.0.0.1:5002" when the first refused the connection).
LOG_FORMAT = ("log_format upstreams '$msec $request_method $uri $status \"$upstream_addr\" "
              "\"$upstream_status\"';")


def renderer() -> ModuleType:
    """docker/nginx_conf.py (a stand-alone script, not a package module)."""
    spec = importlib.util.spec_from_file_location("nginx_conf", ROOT / "docker" / "nginx_conf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find_nginx() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def nginx_executable() -> str:
    """Debian's nginx; the cluster tests are skipped without it unless CI requires them."""
    found = find_nginx()
    if found is None:
        if os.environ.get("COLABEL_CLUSTER_REQUIRED"):
            pytest.fail("nginx is not installed (apt-get install nginx-light)")
        pytest.skip("nginx is not installed")
    return found


@dataclass(frozen=True)
class Passed:
    """One request in nginx's access log."""

    at: float  # time.time() when it ended (a socket: when it closed)
    method: str
    path: str
    status: int
    upstreams: tuple[str, ...]  # the nodes tried, in order: the last one answered

    @property
    def node(self) -> str:
        return self.upstreams[-1] if self.upstreams else ""


class Balancer:
    """An nginx process in front of the nodes; `front` is it as the node clients talk to."""

    def __init__(self, folder: Path, node_ports: Sequence[int], port: int) -> None:
        self.folder = folder
        self.state = folder / "nginx"
        for kind in ("", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.state / kind).mkdir(parents=True, exist_ok=True)
        self.access_log = self.state / "access.log"
        self.conf = self.state / "nginx.conf"
        self.conf.write_text(renderer().render(
            [f"127.0.0.1:{p}" for p in node_ports], listen=f"127.0.0.1:{port}",
            access_log=f"{self.access_log} upstreams", error_log=str(self.state / "error.log"),
            state_dir=str(self.state), run_as_root=os.geteuid() == 0, http_extra=LOG_FORMAT))
        self.base = f"http://127.0.0.1:{port}"
        self.front: Node | None = None

    def start(self, timeout_s: float = 20) -> Node:
        exe = find_nginx()
        if exe is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
        check = subprocess.run([exe, "-t", "-e", str(self.state / "startup.log"), "-c", str(self.conf)],
                               check=False, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        with open(self.state / "stdout.log", "wb") as out:
            proc = subprocess.Popen([exe, "-e", str(self.state / "startup.log"), "-c", str(self.conf),
                                     "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
        self.front = Node(self.base, proc, self.state / "error.log")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, (self.state / "startup.log").read_text()
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return self.front
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"nginx did not answer within {timeout_s} s")

    def stop(self) -> None:
        if self.front is not None:
            stop_process(self.front.proc, 10)

    def passed(self) -> list[Passed]:
        """Every request logged so far (a WebSocket is logged when it closes)."""
        out = []
        for line in self.access_log.read_text().splitlines():
            at, method, path, status, rest = line.split(" ", 4)
            addrs, _ = rest.split('" "', 1)
            upstreams = tuple(a.strip() for a in addrs.strip('"').replace(" : ", ", ").split(",")
                              if a.strip() not in ("", "-"))
            out.append(Passed(float(at), method, path, int(status), upstreams))
        return out


@dataclass
class Stack:
    """Nodes behind nginx; tests reach Colabel through `front` only."""

    cluster: Cluster
    balancer: Balancer
    front: Node

    def nodes_of(self, ports: Sequence[int]) -> list[Node]:
        return [n for n in self.cluster.nodes if int(n.base.rsplit(":", 1)[1]) in ports]

    @property
    def through_front(self) -> Callable[[], list[Node]]:
        """What clients connect to: nginx, whichever nodes are alive behind it."""
        return lambda: [self.front]

    @staticmethod
    def address(node: Node) -> str:
        return node.base.removeprefix("http://")

    def stop(self) -> None:
        self.balancer.stop()
        self.cluster.stop()
        # The stack shares the session's Redis: its keys go with it.
        client = redis.Redis.from_url(self.cluster.env["COLABEL_REDIS_URL"])
        try:
            prefix = self.cluster.env["COLABEL_REDIS_PREFIX"]
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.unlink(key)
        finally:
            client.close()


def start_stack(database_url: str, redis_url: str, folder: Path, nodes: int = 3,
                env: Mapping[str, str] | None = None) -> Stack:
    """`nodes` Colabel nodes on fixed ports (with settings `env`) and nginx in front of them."""
    ports = [free_port() for _ in range(nodes)]
    front_port = free_port()
    cluster = Cluster(database_url, redis_url, folder,
                      **{"COLABEL_PUBLIC_URL": f"http://127.0.0.1:{front_port}", **(env or {})})
    balancer = Balancer(folder, ports, front_port)
    try:
        cluster.start(nodes, ports=ports)
        front = balancer.start()
    except BaseException:
        balancer.stop()
        cluster.stop()
        raise
    return Stack(cluster, balancer, front)
