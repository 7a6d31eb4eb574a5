"""Project statistics for reviewers and owners: progress, throughput, labelers, agreement, queue."""

from __future__ import annotations

from typing import Any

from .. import projects, stats
from ..errors import field_error
from ..roles import Role
from ..routing import Call, Endpoint


async def project_stats(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    pa = await projects.access(call.services.db, call.me, pid, Role.REVIEWER)
    raw = call.request.query_params.get("hours", str(stats.DEFAULT_HOURS))
    try:
        hours = int(raw)
    except ValueError:
        raise field_error("hours", f"must be a whole number of hours (1 to {stats.MAX_HOURS})") from None
    return await stats.collect(call.services.db, pid, pa.row["task_type"], hours)


ENDPOINTS = [
    Endpoint("GET", "/api/v1/projects/{pid:int}/stats", project_stats,
             "Counts, hourly throughput (?hours=, default 24, at most 720), labelers, agreement, queue "
             "(reviewers, owners)", tag="stats", errors=(401, 403, 404, 422)),
]
