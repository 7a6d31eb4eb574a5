"""A minimal y-websocket client in Python (pycrdt + websockets) for the tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import websockets
from pycrdt import Doc, Map, TransactionEvent

from collab import protocol
from tests.infra import ROOT

NODE_CLIENT = ROOT / "tests" / "node" / "yclient.mjs"


class PyClient:
    """Speaks the protocol by hand: STEP1/STEP2 on connect, updates both ways."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.doc: Doc[Any] = Doc()
        self.map = self.doc.get("m", type=Map)
        self.synced = asyncio.Event()
        self.denied = False
        self._remote = False
        self._sub = self.doc.observe(self._on_change)
        self._reader = asyncio.create_task(self._read())

    def _on_change(self, event: TransactionEvent) -> None:
        if not self._remote:
            asyncio.get_running_loop().create_task(self._send(protocol.sync_update(event.update)))

    async def _send(self, frame: bytes) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(frame)

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                assert isinstance(raw, bytes)
                kind, pos = protocol.read_varuint(raw, 0)
                if kind == protocol.MSG_AUTH:
                    self.denied = True
                    continue
                if kind != protocol.MSG_SYNC:
                    continue
                sub, pos = protocol.read_varuint(raw, pos)
                payload, _ = protocol.read_varbytes(raw, pos)
                if sub == protocol.SYNC_STEP1:
                    await self.ws.send(protocol.sync_step2(self.doc.get_update(payload)))
                else:
                    self._remote = True
                    try:
                        self.doc.apply_update(payload)
                    finally:
                        self._remote = False
                    if sub == protocol.SYNC_STEP2:
                        self.synced.set()

    async def start(self) -> None:
        await self.ws.send(protocol.sync_step1(self.doc.get_state()))
        await asyncio.wait_for(self.synced.wait(), 10)

    async def wait_for(self, keys: list[str], timeout_s: float = 10) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not all(k in self.map for k in keys):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"missing {keys}; have {dict(self.map)}")
            await asyncio.sleep(0.02)
        return dict(self.map)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def py_client(base_ws: str, room: str, token: str) -> AsyncIterator[PyClient]:
    async with websockets.connect(f"{base_ws}/collab/{room}?token={token}",
                                  max_size=None) as ws:
        client = PyClient(ws)
        await client.start()
        try:
            yield client
        finally:
            await client.close()


def node_client(server: str, room: str, token: str, *, key: str | None = None,
                value: Any = None, expect: list[str] | None = None, timeout_ms: int = 10000,
                hold_ms: int = 0, offline_first: bool = False) -> subprocess.Popen[str]:
    """Start the stock y-websocket provider in Node; read its JSON line with `result`."""
    opts = {"serverUrl": server.replace("http://", "ws://") + "/collab", "room": room,
            "params": {"token": token}, "key": key, "value": value,
            "expectKeys": expect or [], "timeoutMs": timeout_ms, "holdMs": hold_ms,
            "offlineFirst": offline_first}
    return subprocess.Popen(["node", str(NODE_CLIENT), json.dumps(opts)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen[str], timeout_s: float = 30) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout_s)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"node client printed nothing; stderr: {err[-2000:]}"
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed



