"""Why an item is in review: the one-item review endpoint carries the consensus rules' reason,
with labelers named by user id (the queue's pages leave it out)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.infra import Api
from tests.work_setup import next_, setup_project, submit

MakeUser = Callable[..., Api]


def _box(label: int, x: float, y: float) -> dict[str, Any]:
    return {"id": f"b{label}{x}", "kind": "box", "label": label, "x": x, "y": y, "w": 0.3, "h": 0.3}


def test_bbox_reason_in_queue_and_item(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=1, task_type="bbox", labelers=2,
                      consensus={"enabled": True, "min": 2, "max": 2})
    a, b = p.labelers
    la, lb = next_(a, p.pid)[0], next_(b, p.pid)[0]
    iid = la["item"]["id"]
    assert submit(a, la, {"shapes": [_box(p.labels["cat"], 0.1, 0.1)]}).status_code == 200
    r = submit(b, lb, {"shapes": [_box(p.labels["dog"], 0.12, 0.1), _box(p.labels["cat"], 0.6, 0.6)]})
    assert r.json()["item_status"] == "needs_review"

    queued = p.owner.get(f"/api/v1/projects/{p.pid}/review").json()["items"][0]
    assert queued["id"] == iid and "reason" not in queued
    one = p.owner.get(f"/api/v1/projects/{p.pid}/review/{iid}")
    assert one.status_code == 200, one.text
    got = one.json()["item"]
    reason = got["reason"]
    assert reason["kind"] == "places" and reason["agreed"] is False
    assert reason["detail"].startswith("tie on 1 box")
    places = reason["places"]
    assert [x["verdict"] for x in places] == ["no_label", "tied"]
    assert sorted((x["labeler"], x["label"]) for x in places[0]["boxes"]) == sorted(
        [(a.id, p.labels["cat"]), (b.id, p.labels["dog"])])
    assert places[1]["boxes"][0]["labeler"] == b.id

    assert got["key"] == "000.png"
    assert got["final_document"] == f"{p.pid}/{iid}/final"
    assert sorted(x["user"]["id"] for x in got["annotations"]) == sorted([a.id, b.id])


def test_review_item_access_and_unknown_items(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=2, labelers=1)
    a = p.labelers[0]
    lease = next_(a, p.pid)[0]
    iid = lease["item"]["id"]
    # Not yet labeled: no annotation, nothing to compare.
    fresh = p.owner.get(f"/api/v1/projects/{p.pid}/review/{iid}").json()["item"]
    assert fresh["annotations"] == [] and fresh["reason"] is None
    assert [(x["user"]["id"], x["state"]) for x in fresh["labelers"]] == [(a.id, "active")]
    submit(a, lease, {"classes": [p.labels["bird"]]})
    done = p.owner.get(f"/api/v1/projects/{p.pid}/review/{iid}").json()["item"]
    assert done["status"] == "labeled"
    assert done["reason"]["votes"] == [{"label": p.labels["bird"], "count": 1, "labelers": [a.id]}]
    assert a.get(f"/api/v1/projects/{p.pid}/review/{iid}").status_code == 403
    missing = p.owner.get(f"/api/v1/projects/{p.pid}/review/999999999")
    assert missing.status_code == 404 and missing.json()["error"]["code"]
    other = setup_project(make_user, data_dir, items=1, labelers=1)
    assert other.owner.get(f"/api/v1/projects/{other.pid}/review/{iid}").status_code == 404
