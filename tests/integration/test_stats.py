"""Project statistics: counts, throughput, labelers' agreement and speed, agreement spread, queue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.services import Services
from tests.infra import Api
from tests.work_setup import next_, setup_project

MakeUser = Callable[..., Api]
BOX = {"kind": "box", "x": 0.1, "y": 0.1, "w": 0.3, "h": 0.2}


def lease(api: Api, pid: int) -> dict[str, Any]:
    r = api.post(f"/api/v1/projects/{pid}/tasks/next", {"count": 1})
    assert r.status_code == 200, r.text
    leases: list[dict[str, Any]] = r.json()["leases"]
    assert len(leases) == 1
    return leases[0]


def submit(api: Api, held: dict[str, Any], annotation: dict[str, Any],
           duration_ms: int | None = None) -> str:
    body: dict[str, Any] = {"annotation": annotation}
    if duration_ms is not None:
        body["duration_ms"] = duration_ms
    r = api.post(f"/api/v1/leases/{held['lease_id']}/submit", body)
    assert r.status_code == 200, r.text
    status: str = r.json()["item_status"]
    return status


def stats(api: Api, pid: int, query: str = "") -> dict[str, Any]:
    r = api.get(f"/api/v1/projects/{pid}/stats{query}")
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    return got


def hour_now() -> str:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0).isoformat()


def by_user(got: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["user"]["id"]: row for row in got["labelers"]}


def buckets(got: dict[str, Any]) -> dict[float, int]:
    return {b["from"]: b["count"] for b in got["agreement"]}


def test_stats_of_a_two_labeler_consensus_project(make_user: MakeUser, data_dir: Path) -> None:
    before = hour_now()
    p = setup_project(make_user, data_dir, items=5, labelers=3,
                      consensus={"enabled": True, "min": 2, "max": 2})
    a, b, c = p.labelers
    cat, dog = {"classes": [p.labels["cat"]]}, {"classes": [p.labels["dog"]]}
    empty = stats(p.owner, p.pid)
    assert empty["counts"] == {"unlabeled": 5, "in_progress": 0, "labeled": 0, "needs_review": 0,
                               "missing": 0, "skipped": 0, "total": 5}
    assert empty["throughput"] == [] and empty["queue"]["active_leases"] == 0
    # x: a and b agree on cat.
    la, lb = lease(a, p.pid), lease(b, p.pid)
    assert la["item"]["id"] == lb["item"]["id"]
    assert submit(a, la, cat, 2000) == "in_progress" and submit(b, lb, cat, 4000) == "labeled"
    # y: a and c disagree; with max 2 the item goes to review, undecided.
    la, lc = lease(a, p.pid), lease(c, p.pid)
    assert la["item"]["id"] == lc["item"]["id"]
    assert submit(a, la, cat, 6000) == "in_progress" and submit(c, lc, dog, 1000) == "needs_review"
    # z: a and b agree on dog; b gives no duration, which the median must ignore.
    la, lb = lease(a, p.pid), lease(b, p.pid)
    assert la["item"]["id"] == lb["item"]["id"]
    assert submit(a, la, dog, 10000) == "in_progress" and submit(b, lb, dog) == "labeled"
    held = lease(b, p.pid)  # w: leased, not submitted; v stays unlabeled

    got = stats(p.owner, p.pid)
    after = hour_now()
    assert got["counts"] == {"unlabeled": 1, "in_progress": 1, "labeled": 2, "needs_review": 1,
                             "missing": 0, "skipped": 0, "total": 5}
    assert got["queue"] == {"depth": 2, "active_leases": 1, "active_labelers": 3}
    people = by_user(got)
    assert set(people) == {a.id, b.id, c.id}
    assert people[a.id]["user"]["name"] == "labeler0"
    assert [people[u.id]["submitted"] for u in (a, b, c)] == [3, 2, 1]
    # c's only annotation is on an undecided item: no rate.
    assert [people[u.id]["agreement_rate"] for u in (a, b, c)] == [1.0, 1.0, None]
    assert [people[u.id]["median_seconds"] for u in (a, b, c)] == [6.0, 4.0, 1.0]
    assert [row["user"]["id"] for row in got["labelers"]][0] == a.id  # most submitted first
    # Only the two decided items count, both at full agreement; y's 0.5 is not decided.
    spread = buckets(got)
    assert len(spread) == 10 and spread[0.9] == 2 and sum(spread.values()) == 2
    assert got["agreement"][-1] == {"from": 0.9, "to": 1.0, "count": 2}
    assert {row["hour"] for row in got["throughput"]} <= {before, after}
    assert sum(row["annotations"] for row in got["throughput"]) == 6
    assert sum(row["decided"] for row in got["throughput"]) == 2
    assert datetime.fromisoformat(got["generated_at"]).tzinfo is not None

    # Skipping the held item ends the lease; it no longer counts as active.
    assert b.post(f"/api/v1/leases/{held['lease_id']}/skip").status_code == 200
    assert stats(p.owner, p.pid)["queue"]["active_leases"] == 0


def test_agreement_rates_with_a_tie_breaker(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=2, labelers=4,
                      consensus={"enabled": True, "min": 2, "max": 3})
    a, b, c, idle = p.labelers
    cat, dog = {"classes": [p.labels["cat"]]}, {"classes": [p.labels["dog"]]}
    la, lb = lease(a, p.pid), lease(b, p.pid)
    first = la["item"]["id"]
    assert lb["item"]["id"] == first
    assert submit(a, la, cat) == "in_progress" and submit(b, lb, dog) == "in_progress"
    lc = lease(c, p.pid)
    assert lc["item"]["id"] == first  # the tie raised the target to three
    assert submit(c, lc, cat) == "labeled"  # 2 of 3: agreement 0.67
    la, lb = lease(a, p.pid), lease(b, p.pid)
    assert la["item"]["id"] == lb["item"]["id"] != first
    assert submit(a, la, dog) == "in_progress" and submit(b, lb, dog) == "labeled"

    got = stats(p.owner, p.pid)
    people = by_user(got)
    assert [people[u.id]["agreement_rate"] for u in (a, b, c)] == [1.0, 0.5, 1.0]
    assert people[idle.id] == {"user": {"id": idle.id, "name": "labeler3"}, "submitted": 0,
                               "agreement_rate": None, "median_seconds": None}
    spread = buckets(got)
    assert spread[0.6] == 1 and spread[0.9] == 1 and sum(spread.values()) == 2
    assert got["queue"]["depth"] == 0 and got["counts"]["labeled"] == 2


def test_boxes_are_compared_by_their_labels(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=1, labelers=3, task_type="bbox",
                      consensus={"enabled": True, "min": 2, "max": 3})
    a, b, c = p.labelers
    cat = {"shapes": [{"id": "s1", "label": p.labels["cat"], **BOX}]}
    # c's cat box is shifted: geometry is not compared, so c still matches the final label.
    moved = {"shapes": [{"id": "s1", "label": p.labels["cat"], **BOX, "x": 0.12}]}
    dog = {"shapes": [{"id": "s1", "label": p.labels["dog"], **BOX}]}
    la, lb = lease(a, p.pid), lease(b, p.pid)
    assert submit(a, la, cat) == "in_progress" and submit(b, lb, dog) == "in_progress"
    assert submit(c, lease(c, p.pid), moved) == "labeled"
    people = by_user(stats(p.owner, p.pid))
    assert [people[u.id]["agreement_rate"] for u in (a, b, c)] == [1.0, 0.0, 1.0]


async def test_throughput_window_and_hours_parameter(
    services: Services, make_user: MakeUser, data_dir: Path,
) -> None:
    p = setup_project(make_user, data_dir, items=2, labelers=1, consensus=None)
    (a,) = p.labelers
    held = next_(a, p.pid, 4)
    assert len(held) == 2
    for one in held:
        assert submit(a, one, {"classes": [p.labels["cat"]]}) == "labeled"
    old = held[0]["item"]["id"]
    await services.db.execute(
        "UPDATE annotations SET created_at = now() - interval '5 hours' WHERE item_id = $1", old)
    await services.db.execute(
        "UPDATE items SET decided_at = now() - interval '5 hours' WHERE id = $1", old)
    recent = stats(p.owner, p.pid, "?hours=2")["throughput"]
    assert [(row["annotations"], row["decided"]) for row in recent] == [(1, 1)]
    day = stats(p.owner, p.pid)["throughput"]
    assert [(row["annotations"], row["decided"]) for row in day] == [(1, 1), (1, 1)]
    first, second = (datetime.fromisoformat(row["hour"]) for row in day)
    assert first < second and first.minute == 0 and first.utcoffset() is not None
    assert len(stats(p.owner, p.pid, "?hours=100000")["throughput"]) == 2  # clamped to 720
    r = p.owner.get(f"/api/v1/projects/{p.pid}/stats?hours=bad")
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == ["hours"]


def test_labelers_are_refused_and_strangers_see_nothing(make_user: MakeUser, data_dir: Path) -> None:
    p = setup_project(make_user, data_dir, items=1, labelers=1, consensus=None)
    assert p.labelers[0].get(f"/api/v1/projects/{p.pid}/stats").status_code == 403
    assert make_user("stranger").get(f"/api/v1/projects/{p.pid}/stats").status_code == 404
    reviewer = make_user("reviewer")
    p.owner.put(f"/api/v1/projects/{p.pid}/members", {"email": reviewer.email, "role": "reviewer"})
    assert stats(reviewer, p.pid)["counts"]["total"] == 1
