"""The jobs that import a file: `label_import` (COCO or JSON Lines labels onto the items)
and `table_import` (a table of images and labels). The request keeps the uploaded file in
the job's folder (runner.files_dir) and answers at once; the job reads it in a worker
process, streaming, and the runner deletes it when the job ends."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg

from server.data import label_import, table_import
from server.data.import_transaction import Check
from server.data.uploads import UploadBatch
from server.errors import Conflict
from server.jobs import store as jobs
from server.jobs.runner import JobRun, files_dir
from server.settings import Settings
from server.work.queue_state import forget_queue

FILE_NAME = "upload"
_PROJECT = "SELECT task_type, dataset, archived_at FROM projects WHERE id = $1 AND deleted_at IS NULL"


async def queue(conn: asyncpg.Connection, settings: Settings, pid: int, kind: jobs.Kind,
                batch: UploadBatch, options: dict[str, Any], user_id: int) -> dict[str, Any]:
    """Queue an import of the request's file (inside the caller's transaction: the job runs
    only once that commits) and move the file where the job will read it."""
    staged = batch.files[0]
    job = await jobs.queue(conn, pid, kind, {"file_name": staged.key, "options": options}, user_id)
    folder = files_dir(settings, job["id"])
    folder.mkdir(parents=True, exist_ok=True)
    os.replace(staged.path, folder / FILE_NAME)  # the staging folder is in the data dir too
    return job


async def _project(run: JobRun) -> asyncpg.Record:
    row: asyncpg.Record | None = await run.services.db.fetchrow(_PROJECT, run.project_id)
    if row is None:
        raise Conflict("the project was deleted", code="project_deleted")
    return row


def _check(run: JobRun) -> Check:
    """Run inside the import's transaction, under the project lock: the project must still
    take changes, and the job's commit marker goes in with the import's changes."""

    async def check(conn: asyncpg.Connection) -> None:
        archived = await conn.fetchval("SELECT archived_at FROM projects WHERE id = $1", run.project_id)
        if archived is not None:
            raise Conflict("the project was archived before the import ran", code="project_archived")
        await run.mark(conn)

    return check


def _file(run: JobRun) -> Path:
    return files_dir(run.services.settings, run.id) / FILE_NAME


async def run_label_import(run: JobRun) -> dict[str, Any]:
    project = await _project(run)
    settings = run.services.settings
    result = await label_import.import_label_file(
        run.services.db, run.project_id, run.row["created_by"], project["task_type"], _file(run),
        run.params["file_name"], label_import.LabelImportOptions(**run.params["options"]),
        settings.media_max_pixels, run.progress, check=_check(run))
    if result["labeled"]:
        await forget_queue(run.services.redis, settings.redis_prefix, run.project_id)
    return result


async def run_table_import(run: JobRun) -> dict[str, Any]:
    project = await _project(run)
    settings = run.services.settings
    if project["dataset"] is None:
        raise Conflict("bind a dataset first: imported rows name files in it", code="no_dataset")
    result = await table_import.import_table_file(
        run.services.db, settings, run.project_id, run.row["created_by"], project["dataset"],
        project["task_type"], _file(run), run.params["file_name"],
        table_import.ImportOptions(**run.params["options"]), run.progress, check=_check(run))
    ingest = result["ingest"]
    if result["labeled"] or ingest["added"] or ingest["missing"] or ingest["restored"]:
        await forget_queue(run.services.redis, settings.redis_prefix, run.project_id)
    return result
