"""A Ray cluster of two Ray nodes on this machine, started the way an operator starts one:
`ray start --head` and `ray start --address` (each kept in the foreground with --block so
the test owns its processes and can kill a node outright). Token authentication is on, with
a token of the cluster's own that the servers are given too.

The head offers no CPU, as a head node coordinating GPU workers does: training and the
model's replicas run on the worker node, so losing it is certain to take them down."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.infra import free_port

RAY = str(Path(sys.executable).with_name("ray"))


class RayCluster:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.head: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    @property
    def client_env(self) -> dict[str, str]:
        """What a server needs to connect to this cluster."""
        return {"RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": self.env["RAY_AUTH_TOKEN"]}

    def _start(self, name: str, cpus: int, *args: str) -> subprocess.Popen[bytes]:
        with open(self.folder / f"{name}.log", "ab") as out:
            return subprocess.Popen(
                [RAY, "start", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
                 "--disable-usage-stats", "--block", *args],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, timeout_s: float = 90) -> None:
        self.head = self._start("head", 0, "--head", "--port", str(self.port),
                                "--include-dashboard=false")
        deadline = time.monotonic() + timeout_s
        while not self._listening():
            assert self.head.poll() is None, (self.folder / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.2)
        self.start_worker(timeout_s)

    def start_worker(self, timeout_s: float = 90) -> None:
        self.worker = self._start("worker", 2, "--address", self.address)
        deadline = time.monotonic() + timeout_s
        while self.alive_nodes() < 2:
            assert self.worker.poll() is None, (self.folder / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray worker node did not join"
            time.sleep(0.5)

    def _listening(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def alive_nodes(self) -> int:
        """How many nodes the cluster counts as alive (`ray status`)."""
        out = subprocess.run([RAY, "status", "--address", self.address], env=self.env,
                             capture_output=True, text=True, timeout=30, check=False).stdout
        active = out.split("Active:", 1)[-1].split("Pending:", 1)[0] if "Active:" in out else ""
        return sum(1 for line in active.splitlines() if "node_" in line)

    @staticmethod
    def _kill_tree(proc: subprocess.Popen[bytes] | None) -> None:
        """SIGKILL a Ray node: its `ray start` process and everything under it, at once."""
        if proc is None or proc.poll() is not None:
            return
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in tree:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        proc.wait()

    def kill_worker(self) -> None:
        """The worker node is lost as a machine is: every process of it killed at once."""
        self._kill_tree(self.worker)

    def stop(self) -> None:
        for proc in (self.worker, self.head):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops its node
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    self._kill_tree(proc)
        # Workers Ray started for drivers may outlive their raylet by a moment.
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or ())
            if str(self.port) in cmd and ("raylet" in cmd or "gcs_server" in cmd):
                p.kill()
