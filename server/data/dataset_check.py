"""A dry run of a dataset binding: what binding it would check and register, stored nowhere.

The wizard's Data step and a project's data section send the body of
PUT /api/v1/projects/{pid}/dataset here before anything is created or bound. The same
rules run (who may bind a folder on the server, the allowed roots, the pattern, the
outbound policy for Azure), then the datastore is listed through the pattern exactly as
the first registration would list it: a wrong folder, a bad SAS token or an absent
container fails here, with the error the real binding would give, and a good one says how
many files would become items and shows the first few.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from server.data.datastores.base import DatastoreError
from server.data.datastores.factory import open_datastore
from server.data.datastores.keys import accepted, compile_pattern, media_kind
from server.errors import field_error
from server.settings import Settings

SAMPLE_SIZE = 5


@dataclass
class CheckResult:
    """What the binding would register: counts, and the first keys in listing order."""

    matched: int = 0          # files the pattern and the accepted extensions take
    skipped: int = 0          # files listed but left out (pattern or extension)
    would_register: int = 0   # matched, up to the item cap
    over_cap: int = 0
    cap: int = 0
    sample: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=lambda: {"image": 0, "dicom": 0})
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def dry_run(settings: Settings, binding: dict[str, Any], project_id: int | None) -> CheckResult:
    """List the datastore of a validated `binding` through its pattern; 422 naming the
    datastore when it cannot be listed. `project_id` is needed for upload storage only."""
    if binding["datastore"]["kind"] == "upload" and project_id is None:
        raise field_error(
            "datastore.kind",
            "uploaded files are checked as they are sent; a new project has none to list yet",
            code="nothing_to_check",
        )
    started = time.monotonic()
    result = CheckResult(cap=settings.max_items_per_project)
    compiled = compile_pattern(binding["pattern"])
    store = open_datastore(settings, project_id or 0, binding)
    try:
        async for key in store.list_keys(compiled.list_prefix):
            if not (compiled.matches(key) and accepted(key)):
                result.skipped += 1
                continue
            result.matched += 1
            result.kinds[media_kind(key)] += 1
            if len(result.sample) < SAMPLE_SIZE:
                result.sample.append(key)
    except DatastoreError as exc:
        raise field_error("datastore", f"cannot read the datastore: {exc}",
                          code="datastore_error") from None
    finally:
        await store.close()
    result.would_register = min(result.matched, result.cap)
    result.over_cap = result.matched - result.would_register
    result.seconds = round(time.monotonic() - started, 3)
    return result
