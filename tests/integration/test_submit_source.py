"""A submit takes the live document: the browser says how far its copy goes (a Yjs state
vector) and the server waits until its own copy holds that much; scripts without a live
document post plain JSON instead. Never both."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

from pycrdt import Doc

from collab import protocol, schema
from collab.names import document_name
from tests.infra import Api
from tests.work_setup import MakeUser, item, next_, setup_project
from tests.yclient import py_client


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _submit(api: Api, lease: dict[str, Any], body: dict[str, Any]) -> Any:
    return api.post(f"/api/v1/leases/{lease['lease_id']}/submit", body)


async def test_a_submit_waits_for_the_edits_still_on_their_way(
        server: str, make_user: MakeUser, data_dir: Path) -> None:
    """The edit travels on the WebSocket, the submit on its own request: the submit arrives
    first, and the server waits for the edit rather than storing an empty annotation."""
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=2, labelers=1)
    labeler = p.labelers[0]
    token = (await asyncio.to_thread(labeler.post, "/api/v1/tokens", {"name": "ws"})).json()["token"]
    [lease] = await asyncio.to_thread(next_, labeler, p.pid)
    room = document_name(p.pid, lease["item"]["id"], labeler.id)
    assert lease["document"] == room
    ws_base = server.replace("http://", "ws://")
    async with py_client(ws_base, room, token) as py:
        # The labeler's copy moves ahead of what the server has seen.
        local: Doc[Any] = Doc()
        local.apply_update(py.doc.get_update())
        schema.write_annotation(local, {"classes": [p.labels["dog"]]}, "multiclass",
                                origin="human", author=str(labeler.id))
        held_back = local.get_update(py.doc.get_state())
        started = time.monotonic()
        answer = asyncio.create_task(asyncio.to_thread(
            _submit, labeler, lease, {"state_vector": _b64(local.get_state()), "duration_ms": 900}))
        await asyncio.sleep(0.6)
        assert not answer.done(), "the submit did not wait for the labeler's edit"
        await py.ws.send(protocol.sync_update(held_back))
        r = await answer
    assert r.status_code == 200, r.text
    assert time.monotonic() - started >= 0.6
    assert r.json()["item_status"] == "labeled"
    final = await asyncio.to_thread(item, p.owner, p.pid, lease["item"]["id"])
    assert final["final"]["classes"] == [p.labels["dog"]]


async def test_a_state_vector_the_document_never_reaches_is_refused(
        server: str, make_user: MakeUser, data_dir: Path) -> None:
    p = await asyncio.to_thread(setup_project, make_user, data_dir, items=1, labelers=1)
    labeler = p.labelers[0]
    [lease] = await asyncio.to_thread(next_, labeler, p.pid)
    # One client (id 12345) at clock 7, which no copy of this document has.
    ahead = protocol.write_varuint(1) + protocol.write_varuint(12345) + protocol.write_varuint(7)
    r = await asyncio.to_thread(_submit, labeler, lease, {"state_vector": _b64(ahead)})
    assert r.status_code == 409 and r.json()["error"]["code"] == "document_behind"
    # Nothing was stored: the lease can still be submitted.
    again = await asyncio.to_thread(_submit, labeler, lease,
                                    {"annotation": {"classes": [p.labels["cat"]]}})
    assert again.status_code == 200 and again.json()["repeated"] is False


def test_a_submit_names_one_source(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=1, labelers=1)
    labeler = p.labelers[0]
    [lease] = next_(labeler, p.pid)
    empty_state = _b64(Doc().get_state())
    both = _submit(labeler, lease, {"annotation": {"classes": [p.labels["cat"]]},
                                    "state_vector": empty_state})
    assert both.status_code == 422
    for bad in ("not base64!", _b64(b"\x05\x01"), _b64(b"\x01\x02\x03\x04")):
        r = _submit(labeler, lease, {"state_vector": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["details"][0]["loc"][-1] == "state_vector"
    # The lease is untouched by the refusals; the plain JSON submit of scripts still works.
    ok = _submit(labeler, lease, {"annotation": {"classes": [p.labels["cat"]]}})
    assert ok.status_code == 200 and ok.json()["item_status"] == "labeled"
