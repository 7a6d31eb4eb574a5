"""Which handler runs each kind of job."""

from __future__ import annotations

from server.data import import_jobs, ingest_jobs
from server.jobs.runner import Handler

HANDLERS: dict[str, Handler] = {
    "bind": ingest_jobs.run_bind,
    "refresh": ingest_jobs.run_refresh,
    "label_import": import_jobs.run_label_import,
    "table_import": import_jobs.run_table_import,
}
