"""Project statistics for reviewers and owners: progress, throughput, labelers, agreement, queue."""

from __future__ import annotations

from typing import Any

from server.accounts.roles import Role
from server.monitoring import stats
from server.projects import projects
from server.routing import Call, Endpoint


async def project_stats(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    pa = await projects.access(call.services.db, call.me, pid, Role.REVIEWER)
    # Out-of-window asks are held to 1..MAX_HOURS by collect().
    hours = call.query_int("hours", stats.DEFAULT_HOURS, -2**63, 2**63 - 1, what="a whole number of hours")
    return await stats.collect(call.services.db, pid, pa.row["task_type"], hours)


ENDPOINTS = [
    Endpoint("GET", "/api/v1/projects/{pid:int}/stats", project_stats,
             "Counts, hourly throughput (?hours=, default 24, at most 720), labelers, agreement, queue "
             "(reviewers, owners)", tag="stats", errors=(401, 403, 404, 422)),
]
